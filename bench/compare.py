"""GET /store/<id> on this checkout against an earlier revision of it, runs interleaved:
what a change costs the hottest read (metrics, say: `--baseline <the commit before them>`).

`.venv/bin/python bench/compare.py --baseline REVISION` (needs `wrk`): checks the revision
out into a temporary git worktree, serves both on one throwaway PostgreSQL (psycopg2, 2
workers each) and prints the medians of two figures and their ratios: requests per second,
and the CPU time a request costs the API's workers and PostgreSQL's backends (from /proc;
steadier than the rate on a shared machine, see bench/read_timeout.py).
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--baseline", required=True, help="the git revision to compare with")
    parser.add_argument("--runs", type=int, default=7, help="wrk runs per checkout")
    parser.add_argument("--seconds", type=int, default=8, help="length of one wrk run")
    arguments = parser.parse_args()

    with tempfile.TemporaryDirectory() as baseline, throwaway_postgres() as cluster:
        subprocess.run(
            ["git", "worktree", "add", "--detach", baseline, arguments.baseline],
            cwd=ROOT, check=True, capture_output=True,
        )  # fmt: skip
        try:
            url = cluster.url("psycopg2")
            admin_token_maker(url)  # migrates
            with psycopg.connect(dsn(url), autocommit=True) as connection:
                path = f"/store/{seed_store(connection, 'compared', 10, 3)}"
            postmaster = cluster.postmaster_pid()
            runs: dict[str, list[tuple[float, float]]] = {
                "this checkout": [],
                arguments.baseline: [],
            }
            env = {"DATABASE_URL": url, "JWT_SECRET_KEY": JWT_SECRET}
            for _ in range(arguments.runs):
                for name, root in (("this checkout", ROOT), (arguments.baseline, baseline)):
                    with gunicorn(
                        API, env, "--workers", "2", stderr=subprocess.DEVNULL, root=Path(root)
                    ) as server:
                        runs[name].append(
                            measured(server.url, path, arguments.seconds, server.pid, postmaster)
                        )
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", baseline], cwd=ROOT)
    (rate, cpu), (baseline_rate, baseline_cpu) = (
        [statistics.median(column) for column in zip(*each, strict=True)] for each in runs.values()
    )
    print(
        f"GET /store/<id>: this checkout {rate:.0f} req/s and {cpu:.0f} µs of CPU a request, "
        f"{arguments.baseline} {baseline_rate:.0f} req/s and {baseline_cpu:.0f} µs\n"
        f"  throughput ratio {rate / baseline_rate:.3f}, CPU-time ratio {baseline_cpu / cpu:.3f}\n"
        f"  runs (req/s, µs): {runs}"
    )


if __name__ == "__main__":
    main()
