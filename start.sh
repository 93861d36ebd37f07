#!/bin/sh
# The container's command: migrate, then hand the process over to gunicorn (settings in
# gunicorn.conf.py) so that it gets the signals.
set -e
flask db upgrade
exec gunicorn 'app:create_app()'
