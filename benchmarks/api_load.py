"""Load benchmark of the REST API's trial list: 10,000 stored trials (SQLite, the sql plugin),
the real ``neuromosaic-api`` command on a loopback port, N concurrent clients.

    .venv/bin/python benchmarks/api_load.py --trials 10000 --clients 8 --requests 2000

Prints requests per second and latency percentiles for ``GET /api/experiments/<name>/trials``
(pages of 50 at offsets spread over the whole experiment), the error count (must be 0), and
checks that paging returns every trial exactly once. The server runs with ``--rate 0`` (no rate
limit: the point is the server's capacity, not the limiter's). Results: docs/plugins/api.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import subprocess
import sys
import tempfile
import time

import httpx
from neuromosaic_api.testing import bearer, fill_many, free_port, load, page_through, token

from neuromosaic_core.results import open_results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--limit", type=int, default=50, help="page size")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="nm-api-load-") as tmp:
        url = f"sqlite:///{tmp}/results.db"
        started = time.perf_counter()
        db = open_results(url, create=True)
        fill_many(db, "big", args.trials)
        db.close()
        print(f"stored {args.trials} trials in {time.perf_counter() - started:.1f} s")

        secret = secrets.token_urlsafe(48)
        port = free_port()
        env = {**os.environ, "NEUROMOSAIC_API_SECRET": secret}
        server = subprocess.Popen([sys.executable, "-c", "from neuromosaic_api.cli import main; main()", "--port", str(port),
                                   "--url", url, "--runs", f"{tmp}/runs", "--rate", "0"], env=env)
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(200):
                try:
                    if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            headers = bearer(token("read", secret=secret, subject="load"))
            path = "/api/experiments/big/trials"
            pages = max(1, args.trials // args.limit)
            asyncio.run(load(base, path, headers, clients=2, requests=20, pages=pages, limit=args.limit))  # warm-up
            stats = asyncio.run(load(base, path, headers, clients=args.clients, requests=args.requests,
                                     pages=pages, limit=args.limit))
            numbers = page_through(base, path, headers, limit=500)
        finally:
            server.terminate()
            server.wait(timeout=30)

    exactly_once = sorted(numbers) == list(range(1, args.trials + 1))
    report = {k: (round(v, 1) if isinstance(v, float) else v) for k, v in stats.items() if k != "errors"}
    report.update(errors=len(stats["errors"]), trials=args.trials, page=args.limit, paging_exactly_once=exactly_once,
                  python=platform.python_version(), cpus=os.cpu_count(), load_average=os.getloadavg()[0])
    print(json.dumps(report, indent=2))
    for error in stats["errors"][:5]:
        print("error:", error)
    if stats["errors"] or not exactly_once:
        sys.exit(1)


if __name__ == "__main__":
    main()
