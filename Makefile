# The two commands a newcomer needs: `make run` and `make test`. Each sets up .venv itself.
VENV := .venv
BIN := $(VENV)/bin
export FLASK_APP := app:create_app

.PHONY: run test test-quick format openapi bench

$(VENV)/installed: requirements.txt requirements-dev.txt
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

# This checkout's own token-signing secret, made once, so tokens survive restarts of `make run`.
SECRET := instance/jwt-secret
WITH_SECRET := JWT_SECRET_KEY="$${JWT_SECRET_KEY:-$$(cat $(SECRET))}"

$(SECRET):
	mkdir -p instance
	(umask 077 && python3 -c 'import secrets; print(secrets.token_hex(32))' > $@)

## Start the API on the SQLite default: http://127.0.0.1:5000/swagger-ui
## Beside it, deleted stores are purged once they expire (every 10 minutes, it looks).
run: $(VENV)/installed $(SECRET)
	export $(WITH_SECRET) && $(BIN)/flask db upgrade \
	  && $(BIN)/flask seed --stores 3 --items-per-store 10 --tags-per-store 3 --only-if-empty \
	  && { $(BIN)/flask purge-deleted --every 600 >/dev/null & trap 'kill $$!' EXIT INT TERM; } \
	  && $(BIN)/flask run --port 5000

## Run the whole suite: PostgreSQL (a throwaway cluster, or $$TEST_DATABASE_URL) with psycopg 3
## and psycopg2, directly and through PgBouncer, and SQLite. Installs the Debian packages it
## drives when they are missing (tools/system-packages).
test: $(VENV)/installed
	tools/system-packages
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

## Under a minute: the unit tests, the in-process ones on SQLite, and once each the paths only
## PostgreSQL takes (a throwaway cluster, psycopg 3); no test marked slow.
test-quick: $(VENV)/installed
	TEST_POSTGRES_DRIVERS=psycopg $(BIN)/python -m pytest \
	  -m "unit or ((api or database) and (sqlite or postgres_path) and not pgbouncer and not slow)"

format: $(VENV)/installed
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## Write the OpenAPI spec to openapi.json (a test fails while the committed file is stale).
openapi: $(VENV)/installed $(SECRET)
	$(WITH_SECRET) DATABASE_URL=sqlite:// $(BIN)/flask openapi write openapi.json

## Measure read throughput and reads at scale (bench/run.py), the hot read against its floor
## (bench/hot_read.py), deleting and purging a store
## against the seed's cascade and raw SQL (bench/deletion.py, which draws
## docs/deletion-times.png), what the reads' statement timeout costs, writes beside
## logins on SQLite, catalogue import and export against COPY (bench/import_export.py), and
## reads and writes with a hot standby, and its lag during a purge (bench/replicas.py); backups
## with pgBackRest and Barman (bench/backups.py), restore-store against COPY (bench/restore_store.py),
## the runbook's restores at a million items (bench/runbook.py);
## what archiving and the zero-loss option cost a write (bench/archiving_cost.py);
## wrk comes from Debian.
bench: $(VENV)/installed
	command -v wrk >/dev/null || (apt-get update -q && apt-get install -y -q wrk)
	$(BIN)/python bench/run.py
	$(BIN)/python bench/hot_read.py
	$(BIN)/python bench/deletion.py
	$(BIN)/python bench/read_timeout.py
	$(BIN)/python bench/login_contention.py
	$(BIN)/python bench/import_export.py
	$(BIN)/python bench/import_export.py --driver psycopg --pgbouncer
	$(BIN)/python bench/replicas.py
	command -v barman >/dev/null || (apt-get update -q && apt-get install -y -q barman)
	$(BIN)/python bench/backups.py
	$(BIN)/python bench/restore_store.py
	$(BIN)/python bench/runbook.py
	$(BIN)/python bench/archiving_cost.py
