"""How the job worker connects: procrastinate's psycopg 3 connector takes a libpq
connection string, not a SQLAlchemy URL."""

from psycopg.conninfo import make_conninfo
from sqlalchemy import make_url


def libpq_conninfo(url: str) -> str:
    """The libpq connection string of a SQLAlchemy URL, several hosts included: SQLAlchemy
    names them `?host=a:5432&host=b:5433`, libpq wants `host=a,b port=5432,5433` (it would
    take `host=a:5433` for a host name), and libpq then tries them in turn."""
    parsed = make_url(url)
    options = {name: value for name, value in parsed.query.items() if name != "host"}
    listed = parsed.query.get("host", ())
    listed = (listed,) if isinstance(listed, str) else listed
    hosts = [entry.rpartition(":")[::2] if ":" in entry else (entry, "") for entry in listed]
    return make_conninfo(
        dbname=parsed.database,
        user=parsed.username,
        password=parsed.password,
        host=",".join(name for name, _ in hosts) if hosts else parsed.host,
        port=",".join(port for _, port in hosts) if hosts else parsed.port,
        **options,
    )
