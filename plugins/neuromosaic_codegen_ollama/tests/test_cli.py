"""``neuromosaic codegen=ollama`` as a user runs it: a subprocess, the installed plugins, SQLite,
real training on ``digits``. The configuration checks and the server-down search need no model; the
end-to-end search uses Qwen2.5-Coder-0.5B behind :mod:`neuromosaic_core.testing.ollama_server`
(Ollama's API over real HTTP; skipped, with the reason, when the model is missing). Needs the
default strategy, encoder, runner, storage, the digits task and the template fallback installed
(``conftest.py`` leaves this module out otherwise).
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

from neuromosaic_core.testing.llm_servers import fault_server, ollama_test_server
from neuromosaic_core.testing.models import ModelUnavailable, qwen_coder_gguf

MODEL = "qwen2.5-coder:0.5b"
FAST = ["task=digits", "training.epochs=2", "training.patience=1", "visualizers=[]", "runner.workers=1", "search.trials=2"]


def neuromosaic(cwd: Path, *args: str, env: dict[str, str] | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("NEUROMOSAIC_", "OLLAMA_"))}
    environ.update(env or {})
    code = "import sys; from neuromosaic_core.cli import main; sys.argv[0] = 'neuromosaic'; main()"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True, env=environ, timeout=timeout)


def codegen_records(db: Path) -> list[dict]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return [json.loads(row[0]) for row in conn.execute("select codegen from trials order by number")]


def test_cfg_job_shows_the_ollama_settings(tmp_path: Path) -> None:
    proc = neuromosaic(tmp_path, "--cfg", "job", "codegen=ollama", "codegen.model=qwen2.5-coder:7b", "codegen.host=http://gpu-box:11434")
    assert proc.returncode == 0, proc.stderr
    assert "name: ollama" in proc.stdout and "model: qwen2.5-coder:7b" in proc.stdout
    assert "host: http://gpu-box:11434" in proc.stdout and "num_ctx: 4096" in proc.stdout


def test_a_misspelt_setting_is_one_line_listing_the_valid_ones(tmp_path: Path) -> None:
    proc = neuromosaic(tmp_path, "codegen=ollama", "codegen.hots=http://gpu-box:11434")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown key 'codegen.hots'" in lines[0] and "host" in lines[0] and "keep_alive" in lines[0]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.e2e
def test_a_search_completes_with_the_fallback_while_the_server_is_down(tmp_path: Path) -> None:
    with fault_server("refuse") as down:
        proc = neuromosaic(tmp_path, "codegen=ollama", f"codegen.host={down.url}", "codegen.retries=0", *FAST,
                           f"storage.url=sqlite:///{tmp_path}/nm.db", f"hydra.run.dir={tmp_path}/run")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "is not reachable now" in proc.stderr  # the pre-flight warning
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["trials"]["completed"] == 2
    records = codegen_records(tmp_path / "nm.db")
    assert [(r["provider"], r["fallback"]) for r in records] == [("ollama", True)] * 2
    assert all(r["attempts"][-1]["provider"] == "template" for r in records)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    stack = contextlib.ExitStack()
    try:
        host = stack.enter_context(ollama_test_server(qwen_coder_gguf(), name=MODEL))
    except ModelUnavailable as exc:
        pytest.skip(f"no real model: {exc}")
    with stack:
        yield host


@pytest.mark.e2e
def test_a_model_the_server_lacks_stops_the_run_before_any_trial(tmp_path: Path, server: str) -> None:
    proc = neuromosaic(tmp_path, "codegen=ollama", f"codegen.host={server}", "codegen.model=qwen2.5-coder:7b", *FAST,
                       f"storage.url=sqlite:///{tmp_path}/nm.db", f"hydra.run.dir={tmp_path}/run")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "run `ollama pull qwen2.5-coder:7b`" in proc.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "run" / "summary.json").exists()


@pytest.mark.e2e
def test_a_real_search_records_who_wrote_the_code(tmp_path: Path, server: str) -> None:
    db = tmp_path / "nm.db"
    proc = neuromosaic(
        tmp_path, "codegen=ollama", f"codegen.host={server}", f"codegen.model={MODEL}", "codegen.temperature=0",
        "codegen.max_tokens=512", "codegen.timeout=300", "search.codegen_attempts=1", *FAST,
        f"storage.url=sqlite:///{db}", f"hydra.run.dir={tmp_path}/run",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["trials"]["completed"] == 2
    records = codegen_records(db)
    assert len(records) == 2
    for record in records:
        assert (record["provider"], record["model"]) == ("ollama", MODEL)
        first = record["attempts"][0]
        assert first["provider"] == "ollama" and "class Net" in first["prompt"] and first["response"]
        assert first["prompt_tokens"] > 0 and first["latency_s"] > 0
        assert record["fallback"] == (first["stage"] != "accepted")
    print(f"\nE2E ollama: {[(r['attempts'][0]['stage'], 'fallback' if r['fallback'] else 'llm') for r in records]}")
