"""Performance checks: reads against raw psycopg, the drivers, and reads at scale (the
cascading delete: bench/deletion.py).

Run after the README's set-up: `.venv/bin/python bench/run.py` (needs `wrk` for the
throughput part). It starts its own PostgreSQL and prints medians and ratios.
"""

import argparse
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import flask_migrate
import psycopg
from sqlalchemy import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app import create_app  # noqa: E402
from bench.scale import bench_reads_at_scale  # noqa: E402
from config.settings import DEFAULT_POSTGRES_DRIVER, Settings  # noqa: E402
from db import db  # noqa: E402
from models import UserModel  # noqa: E402
from security.tokens import issue_tokens  # noqa: E402
from tools.gunicorn_server import API, gunicorn  # noqa: E402
from tools.throwaway_postgres import ThrowawayPostgres, throwaway_postgres  # noqa: E402

DRIVERS = ("psycopg", "psycopg2")

# Raw psycopg apps serving GET /store/<id>: the three obvious queries, and the API's statement.
THREE_QUERIES = "bench.raw_app:three_queries"
ONE_STATEMENT = "bench.raw_app:one_statement"
ONE_STATEMENT_PSYCOPG2 = "bench.raw_app:one_statement_psycopg2"
FLASK_ONE_STATEMENT = "bench.raw_app:flask_one_statement"


def seed_store(connection: psycopg.Connection, name: str, items: int, tags: int) -> int:
    """A store with `items` items and `tags` tags, each item linked to one tag."""
    store_id = connection.execute(
        "INSERT INTO stores (name) VALUES (%s) RETURNING id", (name,)
    ).fetchone()[0]
    connection.execute(
        "INSERT INTO items (name, price, store_id)"
        " SELECT 'item ' || n, n %% 1000 + 0.99, %s FROM generate_series(1, %s) n",
        (store_id, items),
    )
    connection.execute(
        "INSERT INTO tags (name, store_id) SELECT 'tag ' || n, %s FROM generate_series(1, %s) n",
        (store_id, tags),
    )
    connection.execute(
        """
        INSERT INTO items_tags (item_id, tag_id)
        SELECT item.id, tag.id
          FROM (SELECT id, row_number() OVER (ORDER BY id) %% %(tags)s AS slot
                  FROM items WHERE store_id = %(store)s) item
          JOIN (SELECT id, row_number() OVER (ORDER BY id) - 1 AS slot
                  FROM tags WHERE store_id = %(store)s) tag USING (slot)
        """,
        {"store": store_id, "tags": tags},
    )
    connection.execute("ANALYZE")
    return store_id


def store_to_read(cluster: ThrowawayPostgres, name: str) -> int:
    """Migrate the cluster's database and seed the store every benchmark of GET /store/<id>
    reads: 10 items and 3 tags."""
    admin_token_maker(cluster.url())
    with psycopg.connect(dsn(cluster.url()), autocommit=True) as connection:
        return seed_store(connection, name, 10, 3)


# Signs the admin's tokens here and checks them in the server.
JWT_SECRET = secrets.token_hex(32)


def serve(app: str, database_url: str, *options: str, **variables: str):
    env = {
        "DATABASE_URL": database_url,
        "BENCH_DSN": dsn(database_url),
        "JWT_SECRET_KEY": JWT_SECRET,
        **variables,
    }
    return gunicorn(app, env, *options, stderr=subprocess.DEVNULL)


def admin_token_maker(database_url: str) -> Callable[[], dict[str, str]]:
    """Make an admin; the returned function gives headers with a fresh token of theirs."""
    app = create_app(Settings(database_url=database_url, jwt_secret_key=JWT_SECRET))
    with app.app_context():
        flask_migrate.upgrade(directory=str(ROOT / "migrations"))
        admin = UserModel(
            username="bench", email="bench@example.com", password_hash="!", role="admin"
        )
        db.session.add(admin)
        db.session.commit()

    def headers() -> dict[str, str]:
        with app.test_request_context():
            return {"Authorization": f"Bearer {issue_tokens(admin, fresh=True)['access_token']}"}

    return headers


def dsn(url: str) -> str:
    """The libpq connection string of a SQLAlchemy URL."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


# wrk's request, for a write: POST an item with a token.
POST_ITEM_SCRIPT = """
wrk.method = "POST"
wrk.body = '{{"name": "Bench", "price": 1.5, "store_id": {store_id}}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "{authorization}"
"""


def requests_per_second(
    base_url: str, path: str, seconds: int, script: str = "", connections: int = 16
) -> float:
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as lua:
        lua.write(script)
        lua.flush()
        threads = min(2, connections)
        report = subprocess.run(
            ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "-s", lua.name,
             f"{base_url}{path}"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
    if "Non-2xx" in report:
        raise RuntimeError(report)
    return float(re.search(r"Requests/sec:\s+([\d.]+)", report)[1])


def bench_throughput(database_url: str, runs: int, seconds: int) -> float:
    """GET /store/<id> on the API and the raw apps; the API's share of the three-query app's
    requests per second."""
    with psycopg.connect(dsn(database_url), autocommit=True) as connection:
        store_id = seed_store(connection, "throughput", 10, 3)
    rates = {API: [], THREE_QUERIES: [], ONE_STATEMENT: []}
    # Interleaved: the machine's speed drifts, and each app gets its share of every phase.
    for _ in range(runs):
        for app in rates:
            with serve(app, database_url) as (base_url, _master):
                rates[app].append(requests_per_second(base_url, f"/store/{store_id}", seconds))
    api, three, one = (statistics.median(rates[app]) for app in rates)
    print(
        f"  GET /store/<id> (10 items, 3 tags): API {api:.0f} req/s; raw psycopg, three queries "
        f"{three:.0f} req/s (ratio {api / three:.2f}), one statement {one:.0f} req/s (ratio "
        f"{api / one:.2f})\n  (runs: {rates})"
    )
    return api / three


def bench_drivers(
    cluster: ThrowawayPostgres, admin_headers: Callable[[], dict[str, str]], runs: int, seconds: int
) -> dict[str, dict[str, float]]:
    """The API's throughput with each PostgreSQL driver, reads and writes, runs interleaved."""
    with psycopg.connect(dsn(cluster.url()), autocommit=True) as connection:
        store_id = seed_store(connection, "drivers", 10, 3)
        # Writes go to a store of their own: the store read keeps its 10 items.
        written_store_id = seed_store(connection, "drivers: written", 0, 0)
    post_item = POST_ITEM_SCRIPT.format(
        store_id=written_store_id, authorization=admin_headers()["Authorization"]
    )
    rates = {driver: {"read": [], "write": []} for driver in DRIVERS}
    # All reads first: the writes grow the items table, and with it the cost of a read.
    for kind, path, script in (("read", f"/store/{store_id}", ""), ("write", "/item", post_item)):
        for _ in range(runs):
            for driver in DRIVERS:
                with serve(API, cluster.url(driver)) as (base_url, _master):
                    rates[driver][kind].append(requests_per_second(base_url, path, seconds, script))
    medians = {
        driver: {kind: statistics.median(runs) for kind, runs in kinds.items()}
        for driver, kinds in rates.items()
    }
    for driver, kinds in medians.items():
        print(
            f"  {driver:>8}: GET /store/<id> {kinds['read']:.0f} req/s, POST /item "
            f"{kinds['write']:.0f} req/s   (runs: {rates[driver]})"
        )
    return medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--repeats", type=int, default=5, help="reads at scale: 4 x this many per path"
    )
    parser.add_argument("--runs", type=int, default=3, help="wrk runs per app")
    parser.add_argument("--seconds", type=int, default=10, help="length of one wrk run")
    arguments = parser.parse_args()

    with throwaway_postgres() as cluster:
        # What users get from a postgresql:// URL.
        database_url = cluster.url(DEFAULT_POSTGRES_DRIVER)
        admin_headers = admin_token_maker(database_url)
        print("Drivers (medians):")
        drivers = bench_drivers(cluster, admin_headers, arguments.runs, arguments.seconds)
        print("Throughput (medians):")
        reads_ratio = bench_throughput(database_url, arguments.runs, arguments.seconds)
        print("Reads on the small and the big database (medians):")
        scale = bench_reads_at_scale(
            cluster, lambda url: serve(API, url, "--workers", "2"), arguments.repeats * 4
        )

    goals = {
        "GET /store/<id> >= 0.6 x raw psycopg (three queries) req/s": reads_ratio >= 0.6,
        "every read: big <= 2 x small + 10 ms, body < 512 KiB": scale["reads_met"],
        "workers' memory does not grow with the data (< 10 MB)": scale["memory_growth_mb"] < 10,
    }
    faster = max(DRIVERS, key=lambda driver: sum(drivers[driver].values()))
    goals[f"postgresql:// selects the faster driver ({faster})"] = faster == DEFAULT_POSTGRES_DRIVER
    print("Goals:")
    for goal, met in goals.items():
        print(f"  [{'met' if met else 'NOT MET'}] {goal}")


if __name__ == "__main__":
    main()
