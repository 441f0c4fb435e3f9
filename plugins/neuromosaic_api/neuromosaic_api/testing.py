"""Helpers for testing against the API: a server on a loopback port, tokens good and bad, and
an experiment of known trials. Used by this plugin's tests and by ``benchmarks/api_load.py``.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

import jwt

from neuromosaic_api.auth import issue_token
from neuromosaic_api.settings import ApiSettings
from neuromosaic_core.model import ErrorClass, Experiment, ExperimentError, TrialResult, TrialStatus
from neuromosaic_core.testing.storage import make_trial

SECRET = "test-secret-" + "x" * 60  # 64+ bytes: PyJWT warns below that for the HS512 bad token
EXPERIMENT = "exp"
#: Generated code is untrusted; this one tries to be HTML.
CODE = "class Net:  # </pre><script>alert(1)</script>\n    pass\n"

def fill(db: Any, experiment: str = EXPERIMENT, n: int = 12) -> None:
    """``n`` trials: every fourth failed (NaN loss), the others completed with accuracy, params and
    the resource metrics the runners store."""
    db.create_experiment(Experiment(experiment, "digits", {"search": {"metric": "val_accuracy", "direction": "maximize"}}))
    for i in range(1, n + 1):
        if i % 4 == 0:
            result = TrialResult(metrics={"loss": float("nan")}, error=ExperimentError(ErrorClass.NAN_LOSS, f"nan at {i}"))
            trial = make_trial(experiment, i, status=TrialStatus.FAILED, result=result)
        else:
            result = TrialResult(metrics={"val_accuracy": i / 100, "params": float(1000 * (n - i)), "wall_seconds": 2.0,
                                          "cpu_seconds": 1.5, "peak_memory_mb": 100.0 + i})
            trial = make_trial(experiment, i, status=TrialStatus.COMPLETED, result=result)
        trial.code = CODE if i == 1 else trial.code
        db.save_trial(trial)


def token(scope: str = "read", ttl: int = 3600, subject: str = "tester", secret: str = SECRET) -> str:
    return issue_token(secret, scope, ttl, subject=subject)


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


READ = bearer(token("read"))
WRITE = bearer(token("write"))


def bad_tokens() -> dict[str, str]:
    """Tokens the API must refuse with 401: expired, tampered signature, ``alg: none``, another
    secret, another HMAC algorithm, a scope it does not know, no expiry."""
    now = int(time.time())
    good = token("write")
    head, body, signature = good.split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    return {
        "expired": issue_token(SECRET, "write", 60, now=now - 3600),
        "tampered": f"{head}.{body}.{flipped}",
        "alg-none": jwt.encode({"sub": "x", "scope": "write", "exp": now + 600}, None, algorithm="none"),
        "other-secret": token("write", secret="another-secret-" + "y" * 60),
        "hs512": jwt.encode({"sub": "x", "scope": "write", "exp": now + 600}, SECRET, algorithm="HS512"),
        "unknown-scope": jwt.encode({"sub": "x", "scope": "admin", "exp": now + 600}, SECRET, algorithm="HS256"),
        "no-expiry": jwt.encode({"sub": "x", "scope": "write"}, SECRET, algorithm="HS256"),
    }


def api_settings(tmp_path: Path, **changes: Any) -> ApiSettings:
    return ApiSettings(secret=SECRET, url=f"sqlite:///{tmp_path / 'results.db'}", runs=tmp_path / "runs", **changes)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """The app served by uvicorn on 127.0.0.1 in a thread (real HTTP, real sockets)."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the API server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)


def fill_many(db: Any, experiment: str, n: int, batch: int = 1000) -> None:
    """``experiment`` with ``n`` completed trials (numbers 1..n), saved in batches where the
    backend offers ``save_trials`` (the sql plugin), one by one otherwise."""
    db.create_experiment(Experiment(experiment, "digits", {"search": {"metric": "val_accuracy"}}))
    for start in range(1, n + 1, batch):
        trials = [make_trial(experiment, i, status=TrialStatus.COMPLETED,
                             result=TrialResult(metrics={"val_accuracy": (i % 997) / 997, "params": float(i), "wall_seconds": 1.0}))
                  for i in range(start, min(n, start + batch - 1) + 1)]
        save_many = getattr(db, "save_trials", None)
        if save_many is not None:
            save_many(trials)
        else:
            for trial in trials:
                db.save_trial(trial)


async def load(base_url: str, path: str, headers: dict[str, str], clients: int, requests: int,
               pages: int, limit: int) -> dict[str, Any]:
    """``requests`` GETs of ``path?offset=..&limit=..`` from ``clients`` concurrent connections,
    offsets cycling over ``pages`` pages: requests per second, latency percentiles, errors."""
    import asyncio

    import httpx

    latencies: list[float] = []
    errors: list[str] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(i)

    async def client() -> None:
        async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=60) as http:
            while not queue.empty():
                i = queue.get_nowait()
                started = time.perf_counter()
                try:
                    response = await http.get(path, params={"offset": (i % pages) * limit, "limit": limit})
                    if response.status_code != 200 or len(response.json()["items"]) == 0:
                        errors.append(f"{response.status_code}: {response.text[:200]}")
                except httpx.HTTPError as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                latencies.append(time.perf_counter() - started)

    began = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.perf_counter() - began
    ordered = sorted(latencies)

    def pct(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")

    return {"requests": len(latencies), "clients": clients, "seconds": elapsed, "rps": len(latencies) / elapsed,
            "p50_ms": pct(0.50) * 1000, "p95_ms": pct(0.95) * 1000, "max_ms": (ordered[-1] if ordered else 0) * 1000,
            "errors": errors}


def page_through(base_url: str, path: str, headers: dict[str, str], limit: int) -> list[int]:
    """Every trial number, by reading ``path`` page after page until ``total`` is reached."""
    import httpx

    numbers: list[int] = []
    with httpx.Client(base_url=base_url, headers=headers, timeout=60) as http:
        offset, total = 0, None
        while total is None or offset < total:
            page = http.get(path, params={"offset": offset, "limit": limit}).raise_for_status().json()
            total = page["total"]
            numbers.extend(t["number"] for t in page["items"])
            offset += limit
    return numbers
