"""The job worker (procrastinate, on psycopg 3) reaches PostgreSQL with whatever
DATABASE_URL names: one host, or several for libpq to try in turn."""

import psycopg

from jobs.connection import libpq_conninfo
from tools.throwaway_postgres import free_port


def test_one_host_keeps_every_part_of_the_url():
    conninfo = libpq_conninfo("postgresql+psycopg2://u:p@h:5433/db?sslmode=require")
    assert psycopg.conninfo.conninfo_to_dict(conninfo) == {
        "dbname": "db", "user": "u", "password": "p", "host": "h", "port": "5433",
        "sslmode": "require",
    }  # fmt: skip


def test_several_hosts_become_libpq_lists():
    url = "postgresql://u@/db?host=a:5432&host=b:5433&target_session_attrs=read-write"
    parts = psycopg.conninfo.conninfo_to_dict(libpq_conninfo(url))
    assert (parts["host"], parts["port"]) == ("a,b", "5432,5433")
    assert parts["target_session_attrs"] == "read-write"


def test_the_worker_finds_the_server_past_a_dead_host(backends):
    server = backends.postgres
    dead = f"127.0.0.1:{free_port()}"
    url = server.set(host=None, port=None, query={"host": (dead, f"{server.host}:{server.port}")})
    conninfo = libpq_conninfo(url.render_as_string(hide_password=False))
    with psycopg.connect(conninfo, connect_timeout=3) as connection:
        assert connection.execute("SELECT 1").fetchone() == (1,)
