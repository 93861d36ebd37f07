"""The reads of this checkout against an earlier revision of it, runs interleaved: what a
change costs or gains each GET (`--baseline <the commit before it>`).

`.venv/bin/python bench/compare.py --baseline REVISION [--paths store item ...]` (needs
`wrk`): checks the revision out into a temporary git worktree, serves both on one throwaway
PostgreSQL (psycopg2, 2 workers each) and prints, for each path, the medians of two figures
and their ratios: requests per second, and the CPU time a request costs the API's workers and
PostgreSQL's backends (from /proc; steadier than the rate on a shared machine).
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.read_timeout import measured
from bench.run import JWT_SECRET, admin_token_maker, dsn, seed_store
from tools.gunicorn_server import API, ROOT, gunicorn
from tools.throwaway_postgres import throwaway_postgres

# Every public GET that reads the database, of a store of 10 items and 3 tags.
PATHS = {
    "store": "/store/{store}",
    "stores": "/store",
    "item": "/item/{item}",
    "tag": "/tag/{tag}",
    "store items": "/store/{store}/item",
    "store tags": "/store/{store}/tag",
    "items": "/item?store_id={store}",
    "item tags": "/item/{item}/tag",
    "tag items": "/tag/{tag}/item",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--baseline", required=True, help="the git revision to compare with")
    parser.add_argument("--paths", nargs="+", choices=PATHS, default=["store"])
    parser.add_argument("--runs", type=int, default=7, help="wrk runs per checkout and path")
    parser.add_argument("--seconds", type=int, default=8, help="length of one wrk run")
    arguments = parser.parse_args()
    checkouts = ("this checkout", arguments.baseline)

    with tempfile.TemporaryDirectory() as baseline, throwaway_postgres() as cluster:
        subprocess.run(
            ["git", "worktree", "add", "--detach", baseline, arguments.baseline],
            cwd=ROOT, check=True, capture_output=True,
        )  # fmt: skip
        try:
            url = cluster.url("psycopg2")
            admin_token_maker(url)  # migrates
            with psycopg.connect(dsn(url), autocommit=True) as connection:
                store = seed_store(connection, "compared", 10, 3)
                ids = connection.execute(
                    "SELECT min(items.id), min(tags.id) FROM items, tags"
                    " WHERE items.store_id = %s AND tags.store_id = %s",
                    (store, store),
                ).fetchone()
            paths = {
                name: PATHS[name].format(store=store, item=ids[0], tag=ids[1])
                for name in arguments.paths
            }
            postmaster = cluster.postmaster_pid()
            runs = {(name, checkout): [] for name in paths for checkout in checkouts}
            env = {"DATABASE_URL": url, "JWT_SECRET_KEY": JWT_SECRET}
            for _ in range(arguments.runs):
                for checkout, root in zip(checkouts, (ROOT, Path(baseline)), strict=True):
                    with gunicorn(
                        API, env, "--workers", "2", stderr=subprocess.DEVNULL, root=root
                    ) as server:
                        for name, path in paths.items():
                            runs[name, checkout].append(
                                measured(
                                    server.url, path, arguments.seconds, server.pid, postmaster
                                )
                            )
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", baseline], cwd=ROOT)
    medians = {
        key: [statistics.median(column) for column in zip(*each, strict=True)]
        for key, each in runs.items()
    }
    print(f"This checkout against {arguments.baseline}, medians of {arguments.runs} runs:")
    for name, path in paths.items():
        (rate, cpu), (baseline_rate, baseline_cpu) = (medians[name, each] for each in checkouts)
        print(
            f"  GET {path}: {rate:.0f} req/s and {cpu:.0f} µs of CPU a request, against "
            f"{baseline_rate:.0f} req/s and {baseline_cpu:.0f} µs: throughput ratio "
            f"{rate / baseline_rate:.3f}, CPU-time ratio {baseline_cpu / cpu:.3f}"
        )


if __name__ == "__main__":
    main()
