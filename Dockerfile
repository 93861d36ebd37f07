FROM python:3.11-slim AS app

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    FLASK_APP=app:create_app

WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY . .
# The erasure log's directory, the api's: docker gives a new volume mounted there its owner.
RUN useradd --create-home api && chown api /app \
    && mkdir /var/lib/stores-erasures && chown api /var/lib/stores-erasures

# The restore service (docker-compose.yml): the code with PostgreSQL 15's binaries and
# pgBackRest (Debian's, as deploy/postgres's image has them), postgres with that image's uid.
FROM app AS restore
RUN groupadd --system --gid 999 postgres \
    && useradd --system --uid 999 --gid postgres --home-dir /var/lib/postgresql postgres \
    && mkdir -p /etc/postgresql-common/createcluster.d \
    && echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.d/none.conf \
    && apt-get update \
    && apt-get install -y --no-install-recommends postgresql-15 pgbackrest zstd \
    && rm -rf /var/lib/apt/lists/* \
    && install -d -o postgres -g postgres -m 700 /etc/pgbackrest /var/lib/pgbackrest

# The api and worker (the default target).
FROM app
USER api

EXPOSE 8000
CMD ["deploy/start.sh"]
