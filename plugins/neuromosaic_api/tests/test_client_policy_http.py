"""Issue 14's attacks on the write scope, through raw HTTP to a real ``neuromosaic-api`` server.

The server is the real command in its own process, with canary secrets in its environment
(``POSTGRES_PASSWORD``, ``OPENAI_API_KEY``) and, beside it, a listener socket the attacks point the
server at: it must receive nothing. Its database holds an experiment a command-line run made
(``unmanaged``), and its runs folder a definition as version 0.1.0 stored it, never checked.
Every attack asks for ``start: true``; each must be refused at creation (422 naming the key, or
409 for the unmanaged experiment), leave no definition and start no search.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from neuromosaic_api.testing import bearer, fill, free_port, token

CANARY = "canary-" + secrets.token_hex(16)
#: An experiment of the database that a command-line run made.
UNMANAGED = "cli-run"
#: What a permitted search looks like (the refused attacks add one setting to it).
BASE = ["task=digits", "search.trials=2", "training.epochs=1", "runner.workers=1", "visualizers=[]"]


class Listener:
    """A TCP socket on 127.0.0.1 that records every connection and every byte sent to it."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.received = b""
        self.sock.settimeout(0.2)
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while self.running:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.settimeout(2)
            try:
                self.received += conn.recv(65536)
            except OSError:
                pass
            conn.close()

    def close(self) -> None:
        self.running = False
        self.thread.join(timeout=5)
        self.sock.close()


class Server:
    """``neuromosaic-api`` in a subprocess, talked to with http.client (nothing rewrites the request)."""

    def __init__(self, tmp: Path, listener: Listener) -> None:
        self.secret = secrets.token_urlsafe(48)
        self.url = f"sqlite:///{tmp / 'results.db'}"
        self.runs = tmp / "runs"
        self.port = free_port()
        env = {**os.environ, "NEUROMOSAIC_API_SECRET": self.secret, "POSTGRES_PASSWORD": CANARY, "OPENAI_API_KEY": CANARY,
               "CANARY_URL": f"http://127.0.0.1:{listener.port}/v1"}
        self.log = (tmp / "server.log").open("wb")
        self.proc = subprocess.Popen([sys.executable, "-c", "from neuromosaic_api.cli import main; main()",
                                      "--port", str(self.port), "--url", self.url, "--runs", str(self.runs), "--rate", "0"],
                                     env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.write = bearer(token("write", secret=self.secret, subject="attacker"))
        deadline = time.monotonic() + 60
        while True:
            try:
                if self.request("GET", "/health")[0] == 200:
                    break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"neuromosaic-api did not start: {(tmp / 'server.log').read_text()[-2000:]}")
            time.sleep(0.1)

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any, str]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            payload = None if body is None else json.dumps(body)
            connection.request(method, path, body=payload, headers={"Content-Type": "application/json", **(headers or {})})
            response = connection.getresponse()
            text = response.read().decode("utf-8", "replace")
        finally:
            connection.close()
        try:
            return response.status, json.loads(text), text
        except ValueError:
            return response.status, None, text

    def create(self, overrides: list[str], start: bool = True) -> tuple[int, Any, str]:
        return self.request("POST", "/api/experiments", {"overrides": overrides, "start": start}, self.write)

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture(scope="module")
def listener() -> Any:
    found = Listener()
    yield found
    found.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, listener: Listener) -> Any:
    from neuromosaic_core.results import open_results

    tmp = tmp_path_factory.mktemp("api-attacks")
    db = open_results(f"sqlite:///{tmp / 'results.db'}", create=True)
    fill(db, UNMANAGED, n=4)  # as a command-line run leaves it: the API did not create it
    db.close()
    (tmp / "runs").mkdir()
    legacy = {"legacy": {"overrides": [*BASE, "experiment.name=legacy", "runner.python=/bin/sh"], "created_by": "old"}}
    (tmp / "runs" / "api-experiments.json").write_text(json.dumps(legacy))  # stored by 0.1.0, never checked
    running = Server(tmp, listener)
    yield running
    running.close()
    assert CANARY not in (tmp / "server.log").read_text()


def assert_refused(server: Server, overrides: list[str], key: str, index: int = len(BASE)) -> dict[str, Any]:
    """422 naming ``key``, the setting at ``index`` (by default the first after BASE)."""
    status, body, text = server.create(overrides)
    assert status == 422, text
    assert body["message"].startswith(f"body.overrides.{index}: "), body
    assert key in body["message"], body
    assert CANARY not in text
    return body


def assert_nothing_started(server: Server) -> None:
    status, rows, _ = server.request("GET", "/api/experiments", headers=server.write)
    assert status == 200
    states = {row["name"]: row["search"]["state"] for row in rows}
    assert set(states) <= {UNMANAGED, "legacy", "allowed"} and set(states.values()) <= {"unmanaged", "created"}, states
    assert not list(server.runs.glob("*/api-search.log")), "a search was started"


def test_secrets_cannot_be_sent_to_the_callers_listener(server, listener):
    # the request as it was, then each of its settings alone (as if the others were allowed)
    attack = ["task=digits", "codegen=openai", f"codegen.base_url=http://127.0.0.1:{listener.port}/v1", "codegen.model=x",
              "codegen.api_key_env=POSTGRES_PASSWORD"]
    body = assert_refused(server, attack, "codegen", index=1)
    assert "'codegen' is not a setting clients may set on this server" in body["message"]
    for item in attack[1:]:
        assert_refused(server, [*BASE, item], item.partition("=")[0])
    # the server's environment is never read on a client's behalf
    assert_refused(server, [*BASE, "experiment.name=${oc.env:POSTGRES_PASSWORD}"], "experiment.name")
    assert_refused(server, [*BASE, "search.metric='${oc.env:OPENAI_API_KEY}'"], "search.metric")
    assert_refused(server, [*BASE, "training.optimizer=${oc.env:CANARY_URL}"], "training.optimizer")
    assert_nothing_started(server)


@pytest.mark.parametrize("attack", [
    ["runner.python=/bin/sh"],                                                   # any executable
    ["runner.isolation=process-group", "runner.memory_mb=null", "runner.processes=null"],  # the sandbox off
    ["runner=podman"], ["runner.cpu_seconds=null"], ["debug=true"],
    ["+runner.python=/bin/sh"], ["++runner.python=/bin/sh"], ["~runner.memory_mb"], ["runner@codegen=local"],
    ["hydra.run.dir=/tmp/elsewhere"], ["storage.url=sqlite:////tmp/other.db"], ["hydra/launcher=basic"],
    ["search.trials=1000000"], ["training.epochs=100000"], ["runner.timeout=86400"], ["constraints.max_params=null"],
])
def test_runner_internals_hydra_tricks_and_unbounded_costs_are_refused_at_creation(server, attack):
    key = attack[0].lstrip("+~").partition("=")[0].split("@")[0]
    assert_refused(server, [*BASE, *attack], key)
    assert_nothing_started(server)


def test_an_experiment_run_from_the_command_line_is_not_taken_over(server):
    _, before, _ = server.request("GET", f"/api/experiments/{UNMANAGED}", headers=server.write)
    for start in (True, False):
        status, body, text = server.create([*BASE, f"experiment.name={UNMANAGED}"], start=start)
        assert status == 409, text
        assert body["detail"].startswith(f"experiment {UNMANAGED!r} is in the results database but was not started through this API")
    status, body, _ = server.request("POST", f"/api/experiments/{UNMANAGED}/start", headers=server.write)
    assert status == 404 and "was not created through the API" in body["detail"]
    _, after, _ = server.request("GET", f"/api/experiments/{UNMANAGED}", headers=server.write)
    assert after["trials"] == before["trials"] == 4 and after["definition"] is None
    assert after["search"]["state"] == "unmanaged"


def test_a_definition_stored_before_the_policy_is_checked_again_at_start(server):
    status, body, text = server.request("POST", "/api/experiments/legacy/start", headers=server.write)
    assert status == 422, text
    assert "'runner.python' is not a setting clients may set" in body["message"]
    assert_nothing_started(server)


def test_what_the_policy_allows_is_still_created(server):
    status, body, text = server.create([*BASE, "experiment.name=allowed", "strategy=evolution", "strategy.population=8"],
                                       start=False)
    assert status == 201, text
    assert body["search"]["state"] == "created"


def test_the_listener_received_nothing(server, listener):
    # last in the module, after every attack (pytest keeps file order); a search that was started
    # anyway would call the listener within seconds, so give any such search the time to do it
    deadline = time.monotonic() + 120
    while listener.connections == 0 and time.monotonic() < deadline:
        _, rows, _ = server.request("GET", "/api/experiments", headers=server.write)
        if not any(row["search"]["state"] in ("running", "stopping") for row in rows):
            break
        time.sleep(0.5)
    assert CANARY.encode() not in listener.received
    assert (listener.connections, listener.received) == (0, b"")
