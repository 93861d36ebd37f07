"""How the API, its read engine, migrations and the job worker reach PostgreSQL (or SQLite),
and how their connections survive faults: options (what a connection is opened with) and
faults (what a pool does when a server is lost, refuses writes, or changes)."""
