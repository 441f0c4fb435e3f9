"""The ``neuromosaic`` command with ``codegen=llamacpp``, run as a user runs it (a subprocess).

Needs the default plugins beside this one (see conftest.py: not collected without them). The
end-to-end search (marked ``e2e``) uses the real model and skips, saying why, without it.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest


def neuromosaic(cwd: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("NEUROMOSAIC_")}
    code = "import sys; from neuromosaic_core.cli import main; sys.argv[0] = 'neuromosaic'; main()"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True, env=environ, timeout=timeout)


def assert_short_error(proc: subprocess.CompletedProcess, expected: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert expected in lines[0], lines[0]


def test_cli_composes_the_settings(tmp_path: Path) -> None:
    proc = neuromosaic(tmp_path, "--cfg", "job", "codegen=llamacpp", "codegen.model_path=/x.gguf", "codegen.n_threads=2")
    assert proc.returncode == 0, proc.stderr
    assert "name: llamacpp" in proc.stdout and "model_path: /x.gguf" in proc.stdout
    assert "n_ctx: 4096" in proc.stdout and "n_threads: 2" in proc.stdout and "chat_format: null" in proc.stdout
    proc = neuromosaic(tmp_path, "--cfg", "job", "codegen=llamacpp", "codegen.n_ctx=lots")
    assert_short_error(proc, "codegen.n_ctx: expected an integer, got 'lots'")


def test_cli_search_with_a_missing_or_broken_model_exits_2_with_one_line(tmp_path: Path) -> None:
    common = ["task=digits", "search.trials=1", f"hydra.run.dir={tmp_path / 'run'}", f"storage.url=sqlite:///{tmp_path / 'nm.db'}"]
    proc = neuromosaic(tmp_path, "codegen=llamacpp", *common)
    assert_short_error(proc, "codegen=llamacpp needs a model file: set codegen.model_path=/path/to/model.gguf")
    proc = neuromosaic(tmp_path, "codegen=llamacpp", f"codegen.model_path={tmp_path / 'nope.gguf'}", *common)
    assert_short_error(proc, f"codegen.model_path='{tmp_path / 'nope.gguf'}' does not exist")
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"not a model at all")
    proc = neuromosaic(tmp_path, "codegen=llamacpp", f"codegen.model_path={bad}", *common)
    assert_short_error(proc, f"llamacpp: cannot load codegen.model_path='{bad}'")
    proc = neuromosaic(tmp_path, "codegen=llamacpp", f"codegen.model_path={bad}", "codegen.chat_format=chatlm", *common)
    assert_short_error(proc, "codegen.chat_format='chatlm' is not a llama-cpp-python chat format")


@pytest.mark.e2e
def test_cli_search_with_the_real_model_stores_llamacpp_records(gguf: Path, tmp_path: Path) -> None:
    db = tmp_path / "nm.db"
    # One thread (see test_llamacpp.py's provider fixture); one model attempt per trial keeps it short.
    proc = neuromosaic(
        tmp_path, "codegen=llamacpp", f"codegen.model_path={gguf}", "codegen.temperature=0", "codegen.max_tokens=512",
        "codegen.n_threads=1", "task=digits", "search.trials=2", "search.codegen_attempts=1", "runner.workers=1",
        "training.epochs=2", "training.patience=2", "visualizers=[]", f"hydra.run.dir={tmp_path / 'run'}",
        f"storage.url=sqlite:///{db}", timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Best architectures of digits-mlp_conv1d-random (2 completed" in proc.stdout
    with sqlite3.connect(db) as conn:
        rows = conn.execute("select status, code, codegen from trials order by id").fetchall()
    assert [status for status, _, _ in rows] == ["completed", "completed"], proc.stderr[-3000:]
    for _, code, codegen in rows:
        assert "class Net" in code
        record = json.loads(codegen)
        assert record["provider"] == "llamacpp" and record["model"] == gguf.stem
        first = record["attempts"][0]
        assert first["provider"] == "llamacpp" and first["completion_tokens"] > 0 and first["latency_s"] > 0
        print(f"e2e trial: {'fallback (template)' if record['fallback'] else 'llamacpp'} after {len(record['attempts'])} attempt(s), "
              f"stages {[a['stage'] for a in record['attempts']]}")
