"""The job worker (procrastinate, on psycopg 3) reaches PostgreSQL with whatever
DATABASE_URL names: one host, or several for libpq to try in turn."""

import psycopg

from connections.options import libpq_conninfo, libpq_timeouts
from tools.throwaway_postgres import free_port


def test_one_host_keeps_every_part_of_the_url_and_gains_the_timeouts():
    conninfo = libpq_conninfo("postgresql+psycopg2://u:p@h:5433/db?sslmode=require", 3)
    assert psycopg.conninfo.conninfo_to_dict(conninfo) == {
        "dbname": "db", "user": "u", "password": "p", "host": "h", "port": "5433",
        "sslmode": "require",
        **{name: str(value) for name, value in libpq_timeouts(3).items()},
    }  # fmt: skip


def test_a_timeout_the_url_names_wins():
    url = "postgresql://u@h/db?keepalives_idle=30"
    parts = psycopg.conninfo.conninfo_to_dict(libpq_conninfo(url, 3))
    assert (parts["keepalives_idle"], parts["tcp_user_timeout"]) == ("30", "4000")


def test_several_hosts_become_libpq_lists():
    url = "postgresql://u@/db?host=a:5432&host=b:5433&target_session_attrs=read-write"
    parts = psycopg.conninfo.conninfo_to_dict(libpq_conninfo(url, 3))
    assert (parts["host"], parts["port"]) == ("a,b", "5432,5433")
    assert parts["target_session_attrs"] == "read-write"


def test_the_worker_finds_the_server_past_a_dead_host(backends):
    server = backends.postgres
    dead = f"127.0.0.1:{free_port()}"
    url = server.set(host=None, port=None, query={"host": (dead, f"{server.host}:{server.port}")})
    conninfo = libpq_conninfo(url.render_as_string(hide_password=False), 3)
    with psycopg.connect(conninfo, connect_timeout=3) as connection:
        assert connection.execute("SELECT 1").fetchone() == (1,)
