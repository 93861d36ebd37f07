FROM python:3.11-slim

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
USER api

EXPOSE 8000
CMD ["deploy/start.sh"]
