#!/bin/sh
# The event streams' process (docker-compose.yml's stream service; nginx sends it
# /events/stream alone): the API's app, under gunicorn's threaded worker, one thread a stream.
# A stream waits on its process's one reader of the feed (web/event_stream.py), so it costs a
# thread asleep, no database connection; the API's sync workers, which one stream would hold
# for good, serve everything else. One process: one reader, one count of each user's streams
# (EVENT_STREAMS_PER_USER). 1000 threads, and as many connections (gunicorn's
# worker_connections): streams past them wait for a place. bench/event_streams.py measured
# this against the alternatives (docs/benchmarks.md). Migrations are the api service's.
set -e
# Empty in .env.example, and read by gunicorn as a number: unset.
[ -n "${WEB_CONCURRENCY:-}" ] || unset WEB_CONCURRENCY
exec gunicorn --worker-class web.gunicorn_worker.JsonErrorsThreadWorker --workers 1 \
  --threads 1000 --worker-connections 1000 'app:create_app()'
