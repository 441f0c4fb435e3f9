"""``neuromosaic codegen=openai`` as a user runs it: a subprocess, the installed plugins, SQLite,
real training on ``digits``. The configuration checks and the server-down search need no model; the
end-to-end search uses Qwen2.5-Coder-0.5B behind llama-cpp-python's OpenAI server (skipped, with
the reason, when it is missing). Needs the default strategy, encoder, runner, storage, the digits
task and the template fallback installed (``conftest.py`` leaves this module out otherwise).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from neuromosaic_core.testing.llm_servers import fault_server, llama_openai_server
from neuromosaic_core.testing.models import ModelUnavailable, qwen_coder_gguf

MODEL = "qwen2.5-coder-0.5b-instruct"
SECRET = "sk-e2e-never-stored-0123456789abcdef"
FAST = ["task=digits", "training.epochs=2", "training.patience=1", "visualizers=[]", "runner.workers=1", "search.trials=2"]


def neuromosaic(cwd: Path, *args: str, env: dict[str, str] | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("NEUROMOSAIC_", "OPENAI_"))}
    environ.update(env or {})
    code = "import sys; from neuromosaic_core.cli import main; sys.argv[0] = 'neuromosaic'; main()"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True, env=environ, timeout=timeout)


def codegen_records(db: Path) -> list[dict]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return [json.loads(row[0]) for row in conn.execute("select codegen from trials order by number")]


def test_cfg_job_shows_the_endpoint_settings(tmp_path: Path) -> None:
    proc = neuromosaic(tmp_path, "--cfg", "job", "codegen=openai", "codegen.base_url=http://127.0.0.1:8080/v1", "codegen.model=qwen")
    assert proc.returncode == 0, proc.stderr
    assert "name: openai" in proc.stdout and "base_url: http://127.0.0.1:8080/v1" in proc.stdout
    assert "model: qwen" in proc.stdout and "api_key_env: OPENAI_API_KEY" in proc.stdout


def test_a_key_on_the_command_line_is_refused_as_an_unknown_setting(tmp_path: Path) -> None:
    proc = neuromosaic(tmp_path, "codegen=openai", f"codegen.api_key={SECRET}")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown key 'codegen.api_key'" in lines[0] and "api_key_env" in lines[0]
    assert SECRET not in proc.stderr + proc.stdout
    assert list(tmp_path.iterdir()) == []  # no run directory, no database


@pytest.mark.e2e
@pytest.mark.parametrize("mode", ["refuse", "hang", "error500", "garbage", "drop"])
def test_a_search_completes_with_the_fallback_whatever_the_endpoint_does(tmp_path: Path, mode: str) -> None:
    with fault_server(mode) as down:
        proc = neuromosaic(tmp_path, "codegen=openai", f"codegen.base_url={down.url}/v1", "codegen.retries=0",
                           "codegen.timeout=1", "codegen.backoff=0.01", *FAST,
                           f"storage.url=sqlite:///{tmp_path}/nm.db", f"hydra.run.dir={tmp_path}/run")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert "is not reachable now" in proc.stderr  # the pre-flight warning
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["trials"]["completed"] == 2
    records = codegen_records(tmp_path / "nm.db")
    assert [(r["provider"], r["fallback"]) for r in records] == [("openai", True)] * 2
    assert all(r["attempts"][-1]["provider"] == "template" for r in records)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    stack = contextlib.ExitStack()
    try:
        base = stack.enter_context(llama_openai_server(qwen_coder_gguf()))
    except ModelUnavailable as exc:
        pytest.skip(f"no real model: {exc}")
    with stack:
        yield base


@pytest.mark.e2e
def test_a_real_search_records_who_wrote_the_code_and_stores_no_key(tmp_path: Path, server: str) -> None:
    db = tmp_path / "nm.db"
    proc = neuromosaic(
        tmp_path, "codegen=openai", f"codegen.base_url={server}", f"codegen.model={MODEL}", "codegen.temperature=0",
        "codegen.max_tokens=512", "codegen.timeout=300", "search.codegen_attempts=1", *FAST,
        f"storage.url=sqlite:///{db}", f"hydra.run.dir={tmp_path}/run", env={"OPENAI_API_KEY": SECRET},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["trials"]["completed"] == 2
    records = codegen_records(db)
    assert len(records) == 2
    for record in records:
        assert (record["provider"], record["model"]) == ("openai", MODEL)
        first = record["attempts"][0]
        assert first["provider"] == "openai" and "class Net" in first["prompt"] and first["response"]
        assert first["prompt_tokens"] > 0 and first["latency_s"] > 0
        assert record["fallback"] == (first["stage"] != "accepted")
    print(f"\nE2E openai: {[(r['attempts'][0]['stage'], 'fallback' if r['fallback'] else 'llm') for r in records]}")
    # The key was in the environment only: not in the database, the log, the run directory or the output.
    # a search whose models the real model wrote: the 0.5B model's code is accepted for ~93% of specs
    assert any(not record["fallback"] for record in records), [r["attempts"][0]["error"] for r in records]
    assert SECRET not in proc.stdout + proc.stderr
    for path in [*tmp_path.glob("nm.db*"), *(tmp_path / "run").rglob("*")]:
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    assert (tmp_path / "run" / "neuromosaic.log").is_file()
