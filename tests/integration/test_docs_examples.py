"""The runnable examples in docs/ run, and say what the docs say they say."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_strategy_library_example_runs_and_hill_climbing_beats_random():
    proc = subprocess.run([sys.executable, str(ROOT / "docs/examples/strategy_library.py"), "random", "hillclimb"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    scores = dict(re.findall(r"^(\w+)\s+best score after 40 trials: ([\d.]+)$", proc.stdout, re.M))
    assert set(scores) == {"random", "hillclimb"}
    assert float(scores["hillclimb"]) > float(scores["random"])
