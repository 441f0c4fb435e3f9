"""A real CLI search in which a code generator hands the local runner hostile code for some
trials: the search completes, each hostile trial is recorded as failed with a clear reason, and
nothing outside the run's trial directories changes."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from neuromosaic_core.sandbox import bubblewrap_available
from neuromosaic_core.testing.hostile import CASES_BY_NAME, Canaries

pytestmark = pytest.mark.e2e

#: Hostile cases that pass validation (so they reach the runner), in the order trials get them.
HOSTILE = ["infinite_loop", "memory_bomb_at_once", "system_exit", "output_flood"]

PLUGIN = '''
"""A test plugin: a code generator that writes hostile code for some trials."""
import json
import os

from neuromosaic_core import hookimpl
from neuromosaic_core.interfaces import CodeGenProvider

CASES = json.loads(os.environ["HOSTILE_CASES"])


class HostileCodeGen(CodeGenProvider):
    trusted = True  # skip the probe: the point is what the runner does with this code
    cache = False

    def __init__(self):
        self.calls = 0

    def generate_code(self, request):
        self.calls += 1
        if self.calls <= len(CASES):  # the first trials are hostile, then good ones complete the search
            return CASES[self.calls - 1]
        width = 1
        for n in request.input_shape:
            width *= n
        return (
            "import torch\\nfrom torch import nn\\n\\n\\nclass Net(nn.Module):\\n"
            "    def __init__(self):\\n        super().__init__()\\n"
            f"        self.body = nn.Sequential(nn.Flatten(), nn.Linear({width}, 32), nn.ReLU(), nn.Linear(32, {request.num_classes}))\\n\\n"
            "    def forward(self, x):\\n        return self.body(x)\\n"
        )


@hookimpl
def register_codegen_providers(register):
    register("hostile", lambda settings=None: HostileCodeGen(), description="hostile code for tests")
'''


def install_plugin(directory: Path) -> None:
    (directory / "hostile_codegen.py").write_text(PLUGIN)
    info = directory / "hostile_codegen-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: hostile-codegen\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[neuromosaic]\nhostile = hostile_codegen\n")


def test_a_search_with_hostile_trials_completes_and_records_each_reason(tmp_path):
    if not bubblewrap_available():
        pytest.skip("bubblewrap (bwrap) is not installed (Debian: apt-get install bubblewrap)")
    plugin_dir = tmp_path / "plugin"
    plugin_dir.mkdir()
    install_plugin(plugin_dir)
    work = tmp_path / "work"
    work.mkdir()
    with Canaries(tmp_path / "outside") as canaries:
        env = {k: v for k, v in os.environ.items() if not k.startswith("NEUROMOSAIC_")}
        env.update(PYTHONPATH=os.pathsep.join(filter(None, [str(plugin_dir), os.environ.get("PYTHONPATH")])),
                   HOSTILE_CASES=json.dumps([CASES_BY_NAME[n].render(canaries) for n in HOSTILE]))
        env["NEUROMOSAIC_HOSTILE_SECRET"] = canaries.secret
        args = ["task=digits", "training.epochs=2", "training.patience=1", "visualizers=[]", "codegen=hostile",
                "search.trials=3", "search.max_failures=10", "search.reuse=none", "runner.workers=1",
                "runner.timeout=20", "runner.memory_mb=2048", f"hydra.run.dir={work / 'run'}"]
        code = "import sys; from neuromosaic_core.cli import main; sys.argv[0] = 'neuromosaic'; main()"
        proc = subprocess.run([sys.executable, "-c", code, *args], cwd=work, capture_output=True, text=True,
                              env=env, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "Traceback" not in proc.stderr
        for trial_dir in (work / "run" / "trials").iterdir():
            assert canaries.violations(trial_dir) == [], trial_dir

    with sqlite3.connect(work / "neuromosaic.db") as conn:
        rows = conn.execute("select number, status, error_class, error_message from trials order by number").fetchall()
    statuses = [r[1] for r in rows]
    assert statuses.count("completed") == 3
    failed = {r[0]: (r[2], r[3]) for r in rows if r[1] == "failed"}
    assert len(failed) == len(HOSTILE), rows
    reasons = [f"{cls}: {msg}" for _, (cls, msg) in sorted(failed.items())]
    for name, reason in zip(HOSTILE, reasons, strict=True):
        assert re.search(CASES_BY_NAME[name].reason, reason, re.I | re.S), (name, reason[:300])


def test_an_llm_search_without_bubblewrap_refuses_to_start_in_one_line(tmp_path):
    """Where bubblewrap is missing (here: not on PATH), code an LLM writes would run unsandboxed:
    the search refuses to start, before any request to the model, and says what to do."""
    no_bwrap = tmp_path / "bin"
    no_bwrap.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEUROMOSAIC_")}
    env["PATH"] = str(no_bwrap)
    args = ["task=digits", "codegen=openai", "codegen.base_url=http://127.0.0.1:9/v1", "codegen.model=x",
            "search.trials=1", "visualizers=[]", f"hydra.run.dir={tmp_path / 'run'}"]
    code = "import sys; from neuromosaic_core.cli import main; sys.argv[0] = 'neuromosaic'; main()"
    proc = subprocess.run([sys.executable, "-c", code, *args], cwd=tmp_path, capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "bubblewrap" in line]
    assert len(errors) == 1 and "apt-get install bubblewrap" in errors[0] and "runner.isolation=process-group" in errors[0], proc.stderr[-2000:]
