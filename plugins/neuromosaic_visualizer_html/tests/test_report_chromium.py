"""The HTML report as a person sees it: rendered by a real headless Chromium, offline.

A report is built with ``neuromosaic-report`` from a real SQLite database (trials made with the
storage test helpers, plots by the installed matplotlib visualizer), then Chromium takes a
screenshot and dumps the DOM after the page's load event. The report's inline script marks each
image ``data-loaded="yes"`` once it has decoded, so the DOM dump says whether every plot showed.
A second test runs a small tabular search with ``visualizers=[html,matplotlib]`` and checks the
report the run itself wrote: the html visualizer, listed first, still embeds every plot.

Needs Debian's ``chromium`` (``apt-get install -y chromium``, listed in .ci/debian-packages.txt);
without it the tests skip with the reason, which CI's ``NEUROMOSAIC_STRICT_SKIPS=1`` makes a failure.
"""

from __future__ import annotations

import io
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from neuromosaic_core import results
from neuromosaic_core.model import ArchitectureVector, ErrorClass, Experiment, TrialResult, TrialStatus
from neuromosaic_core.testing.storage import make_trial

pytestmark = pytest.mark.e2e

EXPERIMENT = "digits-report-e2e"
WIDTH, HEIGHT = 1280, 2000
# The flags that keep headless Chromium working as root and off the network (ENVIRONMENT.md).
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
BEST_CODE_MARK = "best-architecture-marker"


def chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        reason = "Debian's chromium is not installed (apt-get install -y chromium)"
        print(reason)
        pytest.skip(reason)
    return found


def render(html: Path, tmp: Path) -> tuple[bytes, str]:
    """``(screenshot PNG, DOM after load)`` of ``html`` in a fresh profile each."""
    browser = chromium()
    shot = tmp / "shot.png"
    common = [browser, *FLAGS, f"--window-size={WIDTH},{HEIGHT}"]
    subprocess.run([*common, f"--user-data-dir={tmp / 'profile-shot'}", f"--screenshot={shot}", html.as_uri()],
                   capture_output=True, timeout=120, check=True)
    dom = subprocess.run([*common, f"--user-data-dir={tmp / 'profile-dom'}", "--dump-dom", html.as_uri()],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    return shot.read_bytes(), dom


def check_screenshot(png: bytes) -> None:
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    assert image.size == (WIDTH, HEIGHT)
    colours = image.getcolors(maxcolors=WIDTH * HEIGHT)  # [(count, (r, g, b)), ...]
    assert len(colours) > 200, f"only {len(colours)} colours: the plots did not draw"
    most_common_share = max(count for count, _ in colours) / (WIDTH * HEIGHT)
    assert most_common_share < 0.8, f"{most_common_share:.0%} of the page is one colour: it is blank"
    # the header band is the report's dark blue, so the stylesheet applied
    assert image.getpixel((5, 5)) == (0x1F, 0x3A, 0x5F)


def fill_database(url: str) -> tuple[float, int]:
    """Twenty trials of a small search space, some failed; returns the best val_accuracy and its trial."""
    db = results.open_results(url, create=True)
    rng = random.Random(0)
    db.create_experiment(Experiment(EXPERIMENT, "digits", {"search": {"metric": "val_accuracy", "direction": "maximize"}}))
    best = 0.0
    for i in range(1, 21):
        depth, width = rng.randint(1, 6), rng.choice([16, 32, 64, 128, 256])
        vector = ArchitectureVector({"depth": depth, "width": width, "act": rng.choice(["relu", "gelu"])})
        if i % 7 == 0:
            trial = make_trial(EXPERIMENT, i, status=TrialStatus.FAILED,
                               result=TrialResult.failure(ErrorClass.NAN_LOSS, f"loss became nan at epoch {i}"))
        else:
            acc = round(0.6 + 0.05 * depth + 0.0005 * width + rng.uniform(0, 0.01), 4)
            best = max(best, acc)
            trial = make_trial(EXPERIMENT, i, status=TrialStatus.COMPLETED,
                               result=TrialResult(metrics={"val_accuracy": acc, "params": float(width * width * depth)}))
        trial.vector = vector
        trial.code = f"import torch.nn as nn\n\n\nclass Net(nn.Module):  # {BEST_CODE_MARK}-{i}\n    pass\n"
        db.save_trial(trial)
    top = db.get_best_architectures(EXPERIMENT, k=1)[0]
    db.close()
    assert top.result.metrics["val_accuracy"] == best
    return best, top.number


def test_the_report_renders_offline_with_every_plot(tmp_path):
    chromium()
    url = f"sqlite:///{tmp_path / 'results.db'}"
    best, best_number = fill_database(url)
    out = tmp_path / "report.html"
    code = "import sys; from neuromosaic_visualizer_html.report import main; sys.argv[0] = 'neuromosaic-report'; main()"
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEUROMOSAIC_")}
    proc = subprocess.run([sys.executable, "-c", code, "--url", url, EXPERIMENT, "-o", str(out)],
                          capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"wrote {out} (")
    html = out.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html), "a resource from the network"

    png, dom = render(out, tmp_path)
    check_screenshot(png)
    assert f'<h2 class="experiment-name">{EXPERIMENT}</h2>' in dom
    assert re.search(rf'<span class="best-value">{best:.4f}</span>', dom)
    assert f"(trial {best_number})" in dom
    images = re.findall(r"<img [^>]*>", dom)
    assert len(images) == 5, "history, pareto, landscape, importance, parallel"
    assert all('data-loaded="yes"' in img for img in images), [img[-120:] for img in images]
    assert 'data-images-loaded="5/5"' in dom
    assert f"class Net(nn.Module):  # {BEST_CODE_MARK}-{best_number}" in dom
    assert re.search(r"<td>failed</td><td>nan_loss</td><td class=\"num\">2</td><td>7, 14</td>", dom)
    # the interactive landscape: one mark per trial, the best one linking to its code
    assert re.search(r'<svg class="explore" data-kind="landscape" data-points="20"', dom)
    assert f'<a href="#code-0-{best_number}">' in dom
    # what a person reads off the page: round tick labels, and no importance ranked from 18 trials
    for kind in ("landscape", "history"):
        svg = re.search(rf'<svg class="explore" data-kind="{kind}".*?</svg>', dom).group(0)
        labels = re.findall(r'<text class="tick"[^>]*>([^<]*)</text>', svg)
        assert len(labels) >= 8 and all(re.fullmatch(r"-?\d[\d,]*(\.\d{1,2})?", label) for label in labels), labels
    assert re.search(r'data-plot="importance.png"[^>]*><figcaption>Parameter importance: <b class="importance-note">not ranked, '
                     r"too few trials to rank dimensions by importance: 18 completed", dom)


def test_a_search_writes_its_report_at_the_end(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEUROMOSAIC_")}
    code = "import sys; from neuromosaic_core.cli import main; sys.argv[0] = 'neuromosaic'; main()"
    proc = subprocess.run([sys.executable, "-c", code, "runner=tabular", "encoder=nasbench201", "task=nasbench201",
                           "search.trials=8", "visualizers=[html,matplotlib]"],
                          cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "html: wrote report.html" in proc.stderr and "html: wrote \n" not in proc.stderr
    run_dir = tmp_path / "runs" / "nasbench201-nasbench201-random"
    report = run_dir / "report.html"
    assert report.is_file(), f"no report.html in {sorted(p.name for p in run_dir.iterdir())}"
    html = report.read_text()
    embedded = re.findall(r'<img src="data:image/png;base64,[^"]+" alt="[^"]*" data-plot="([^"]+)"', html)
    assert embedded == ["history.png", "pareto.png", "landscape.png", "importance.png", "parallel.png"]
    assert "wall time" in html
    db = results.open_results(f"sqlite:///{tmp_path / 'neuromosaic.db'}")
    best = results.best_trials(db, "nasbench201-nasbench201-random", k=1)[0]
    db.close()
    png, dom = render(report, tmp_path)
    check_screenshot(png)
    assert f'<span class="best-value">{best.result.metrics["val_accuracy"]:.4f}</span>' in dom
    assert 'data-images-loaded="5/5"' in dom
