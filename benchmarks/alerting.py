"""Per-trial overhead of alerting: the search loop with ``alerts`` off, on, and on with a webhook
receiver that hangs.

The loop is :mod:`benchmarks.overhead`'s: the full orchestrator loop in-process (random strategy,
``nasbench201`` encoder, ``tabular`` runner, ``sql`` storage on a SQLite file, one worker), each
trial timed between consecutive ``trial_finished`` calls; loguru writes INFO to a log file,
as in a run. After a discarded warm-up run, the configurations, run in turn
``--rounds`` times (default 3) so that load on a shared machine hits all of them alike:

- ``off``: ``alerts.enabled=false`` (the default).
- ``on``: every rule on at its default, channels ``log`` and ``webhook``, the webhook posting to a
  receiver on 127.0.0.1 that answers 204; ``alerts.min_free_mb`` above the real free space, so a
  ``disk_space`` episode fires at the start and is delivered during the run.
- ``on, receiver hangs``: the same, the receiver holding every request open (webhook timeout 5 s,
  3 retries): the channel is stuck for the whole run.

Also printed: the cost of one ``AlertEngine.trial_finished`` call alone (the rules' work per
trial), timed over 100,000 calls.

Needs the ``nasbench201`` encoder, the ``tabular`` runner, the ``sql`` storage, the ``random``
strategy and the ``webhook`` alert channel plugins. Not run by CI.

    python benchmarks/alerting.py                 # 1,000 trials per run, 3 rounds
    python benchmarks/alerting.py --trials 300 --rounds 1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from loguru import logger

from neuromosaic_core.plugins import PluginSystem

sys.path.insert(0, str(Path(__file__).parent))
from overhead import Recorder, tabular_components  # noqa: E402 - the same search loop as the overhead benchmark


def receiver(hang: threading.Event | None) -> tuple[ThreadingHTTPServer, list[str]]:
    received: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"])))["rule"])
            if hang is not None:
                hang.wait(120)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, received


def run(mode: str, trials: int, workdir: Path) -> tuple[list[float], list[str]]:
    from neuromosaic_core.alerts import resolve_alerts, start_alerts, stop_alerts
    from neuromosaic_core.orchestrator import Orchestrator
    from neuromosaic_core.settings import CoreSettings, ExperimentSettings, SearchSettings

    recorder = Recorder()
    system = PluginSystem.load(extra_plugins=[("alerting_recorder", recorder)])
    components, runner_settings = tabular_components(system, "random", workdir)
    url = f"sqlite:///{workdir / 'neuromosaic.db'}"
    hang = threading.Event() if mode == "on, receiver hangs" else None
    server, received = receiver(hang) if mode != "off" else (None, [])
    engine = None
    if server is not None:
        free_mb = shutil.disk_usage(workdir).free / 2**20
        config = resolve_alerts({"enabled": True, "channels": ["log", "webhook"], "min_free_mb": free_mb * 2,
                                 "drain_seconds": 0 if hang else 10,
                                 "webhook": {"url": f"http://127.0.0.1:{server.server_address[1]}/hook", "timeout": 5.0}}, system)
        engine = start_alerts(config, system, components)
    name = "nasbench201-nasbench201-random"
    core = CoreSettings(experiment=ExperimentSettings(name=name), search=SearchSettings(trials=trials, max_failures=trials))
    orchestrator = Orchestrator(core, components, workdir / "runs" / name, hook=system.pm.hook, show_progress=False,
                                config={"storage": {"url": url}})
    try:
        asyncio.run(orchestrator.run(runner_settings))
    finally:
        stop_alerts(engine, system)
        components.storage.close()
        if server is not None:
            if hang is not None:
                hang.set()
            server.shutdown()
            server.server_close()
    return recorder.durations(), received


def per_call_cost() -> float:
    """Seconds per ``AlertEngine.trial_finished`` call (a completed trial, every rule on)."""
    from neuromosaic_core.alerts import AlertEngine, AlertSettings
    from neuromosaic_core.model import ArchitectureVector, Experiment, Trial, TrialResult, TrialStatus

    engine = AlertEngine(AlertSettings(enabled=True, check_seconds=3600), [])
    with tempfile.TemporaryDirectory() as tmp:
        engine.experiment_started(experiment=Experiment("x", "t", {}), config={}, run_dir=Path(tmp))
        trial = Trial("x", 1, ArchitectureVector({"a": 1}), status=TrialStatus.COMPLETED)
        trial.result = TrialResult({"val_accuracy": 0.5})
        n = 100_000
        start = time.perf_counter()
        for _ in range(n):
            engine.trial_finished(trial=trial)
        elapsed = time.perf_counter() - start
        engine.close()
    return elapsed / n


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    modes = ["off", "on", "on, receiver hangs"]
    results: dict[str, list[float]] = {m: [] for m in modes}
    delivered: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory(prefix="nm-alerting-") as tmp:
        # As in a run: every INFO line (the loop's and the log channel's) to a log file.
        logger.remove()
        logger.add(Path(tmp) / "neuromosaic.log", level="INFO")
        warm = Path(tmp) / "warm-up"
        warm.mkdir()
        run("on", min(args.trials, 100), warm)  # imports and first-use costs, discarded
        for r in range(args.rounds):
            for mode in modes:
                workdir = Path(tmp) / f"{r}-{mode.replace(' ', '_').replace(',', '')}"
                workdir.mkdir()
                durations, received = run(mode, args.trials, workdir)
                results[mode] += durations
                delivered[mode] = received
                print(f"round {r + 1}: {mode}: median {statistics.median(durations) * 1000:.3f} ms", file=sys.stderr)
    print(f"{args.trials} trials x {args.rounds} rounds per configuration; times per trial in ms\n")
    print("| alerts | median | p95 | receiver got (last round) |\n|---|---|---|---|")
    for mode in modes:
        ms = [d * 1000 for d in results[mode]]
        p95 = statistics.quantiles(ms, n=20, method="inclusive")[18]
        print(f"| {mode} | {statistics.median(ms):.3f} | {p95:.3f} | {', '.join(delivered[mode]) or '-'} |")
    print(f"\nAlertEngine.trial_finished alone: {per_call_cost() * 1e6:.2f} µs per call")


if __name__ == "__main__":
    main()
