"""The HTML report: what it says about an experiment, that it needs nothing from the network, and
the ``neuromosaic-report`` command's errors."""

from __future__ import annotations

import base64
import math
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from neuromosaic_visualizer_html.report import build_report, collect

from neuromosaic_core.errors import NeuromosaicError
from neuromosaic_core.interfaces import Visualizer
from neuromosaic_core.model import ArchitectureVector, ErrorClass, Experiment, Trial, TrialResult, TrialStatus
from neuromosaic_core.results import ResultsError
from neuromosaic_core.testing.memory import InMemoryResultsDB
from neuromosaic_core.testing.storage import make_trial

# A 1x1 PNG, so a fake visualizer writes a real image without matplotlib.
PIXEL = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")
HOSTILE = '</code></pre><script>alert("pwned")</script><img src="https://evil.example/x.png">'


def database() -> InMemoryResultsDB:
    """Two experiments: ``alpha`` (6 completed, 3 failed by NaN, 1 timeout, 1 invalid) and
    ``beta`` (3 completed, minimising ``test_loss``)."""
    db = InMemoryResultsDB()
    db.create_experiment(Experiment("alpha", "digits", {"search": {"metric": "val_accuracy", "direction": "maximize"}}))
    for i in range(1, 12):
        if i in (3, 6, 9):
            t = make_trial("alpha", i, status=TrialStatus.FAILED, result=TrialResult.failure(ErrorClass.NAN_LOSS, f"nan at epoch {i}"))
        elif i == 10:
            t = make_trial("alpha", i, status=TrialStatus.FAILED, result=TrialResult.failure(ErrorClass.TIMEOUT, "over 600 s"))
        elif i == 11:
            t = make_trial("alpha", i, status=TrialStatus.INVALID,
                           result=TrialResult.failure(ErrorClass.CONSTRAINT, "params <2,000,000> over budget"))
        else:
            t = make_trial("alpha", i, status=TrialStatus.COMPLETED,
                           result=TrialResult(metrics={"val_accuracy": 0.5 + i / 100, "params": 1000.0 * i, "train_seconds": 30.0}))
        if i == 8:
            t.code = HOSTILE
        db.save_trial(t)
    db.create_experiment(Experiment("beta", "digits", {"search": {"metric": "test_loss", "direction": "minimize"}}))
    for i, loss in enumerate([0.3, 0.1, 0.2]):
        db.save_trial(make_trial("beta", i, status=TrialStatus.COMPLETED, result=TrialResult(metrics={"test_loss": loss})))
    return db


class TextOf(HTMLParser):
    """The page's visible text and its tags' attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.attrs: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.attrs.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def parse(path: Path) -> TextOf:
    parser = TextOf()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


class PixelVisualizer(Visualizer):
    """A visualizer of the 0.1 interface (no ``render``): writes one PNG, one SVG and a CSV."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, str]] = []

    def plot_performance_landscape(self, trials, out_dir, metric="val_accuracy"):
        self.calls.append((len(trials), metric))
        (out_dir / "history.png").write_bytes(PIXEL)
        (out_dir / "shape.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"/>')
        (out_dir / "data.csv").write_text("a,b\n")
        return [out_dir / "history.png", out_dir / "shape.svg", out_dir / "data.csv"]


class Broken(Visualizer):
    def plot_performance_landscape(self, trials, out_dir, metric="val_accuracy"):
        raise RuntimeError("no display")


def test_one_experiment_summary_top_architectures_and_failures(tmp_path):
    out = build_report(database(), ["alpha"], tmp_path / "r.html", top_k=3, visualizers=[])
    page = parse(out)
    text = " ".join(page.text)
    assert "alpha" in text and "beta" not in text
    assert "Comparison" not in text, "no comparison table for one experiment"
    assert "0.5800" in text and "(trial 8)" in text, "the best val_accuracy and its trial"
    cards = re.findall(r'<div class="value">([^<]*)</div><div class="label">([^<]*)</div>', out.read_text())
    assert {label: value for value, label in cards}.items() >= {"trials": "11", "completed": "6", "failed": "4",
                                                                "invalid": "1"}.items()
    assert "3m 00s" in text, "training time summed over the six completed trials"
    codes = [a for tag, a in page.attrs if tag == "details"]
    assert [a["id"] for a in codes] == ["code-0-8", "code-0-7", "code-0-5"], "top 3 by val_accuracy, best first"
    assert "open" in codes[0] and "open" not in codes[1], "the best one's code is shown unfolded"
    # failure reasons by count, most frequent first
    rows = re.findall(r"<tr><td>(failed|invalid)</td><td>([a-z_ ]+)</td><td class=\"num\">(\d+)</td>", out.read_text())
    assert rows == [("failed", "nan_loss", "3"), ("failed", "timeout", "1"), ("invalid", "constraint_violation", "1")]
    assert "3, 6, 9" in text and "nan at epoch 3" in text
    assert "No plots" in text


def test_code_and_messages_are_escaped(tmp_path):
    out = build_report(database(), ["alpha"], tmp_path / "r.html", top_k=3, visualizers=[])
    html = out.read_text()
    assert "<script>alert" not in html and "evil.example/x.png\">" not in html
    assert "&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt;" in html
    assert HOSTILE in " ".join(parse(out).text), "the code reads back exactly as stored"
    assert "params &lt;2,000,000&gt; over budget" in html


def test_no_resource_is_fetched_from_anywhere(tmp_path):
    out = build_report(database(), ["alpha", "beta"], tmp_path / "r.html", visualizers=[("pixel", PixelVisualizer())])
    for tag, attrs in parse(out).attrs:
        for key in ("src", "href", "data", "srcset", "poster", "action"):
            value = attrs.get(key) or ""
            assert not re.match(r"\s*(https?:)?//", value), f"<{tag} {key}={value[:60]!r}> fetches from the network"
            if key == "src" and key in attrs:
                assert value.startswith("data:"), f"<{tag}> src is not embedded"
    assert not re.search(r"@import|url\(\s*['\"]?(https?:)?//", out.read_text()), "no stylesheet from the network"


def test_plots_are_embedded_and_the_old_interface_still_renders(tmp_path):
    pixel = PixelVisualizer()
    out = build_report(database(), ["alpha"], tmp_path / "r.html", visualizers=[("pixel", pixel)])
    assert pixel.calls == [(11, "val_accuracy")]
    images = [a for tag, a in parse(out).attrs if tag == "img"]
    assert [a["data-plot"] for a in images] == ["history.png", "shape.svg"], "the CSV is not a picture"
    assert base64.b64decode(images[0]["src"].split(",", 1)[1]) == PIXEL
    assert images[1]["src"].startswith("data:image/svg+xml;base64,")
    assert "Optimisation history" in images[0]["alt"]


def test_a_broken_visualizer_is_a_note_not_a_failed_report(tmp_path):
    out = build_report(database(), ["alpha"], tmp_path / "r.html", visualizers=[("broken", Broken()), ("pixel", PixelVisualizer())])
    text = " ".join(parse(out).text)
    assert "visualizer broken failed: RuntimeError: no display" in text
    assert len([1 for tag, _ in parse(out).attrs if tag == "img"]) == 2


def test_several_experiments_get_a_comparison_table_in_their_own_direction(tmp_path):
    out = build_report(database(), ["alpha", "beta"], tmp_path / "r.html", visualizers=[])
    html = out.read_text()
    rows = re.findall(r'<tr><td><a href="#exp-(\d)">(\w+)</a></td><td>digits</td><td>([^<]+)</td>(.*?)</tr>', html)
    assert [(r[0], r[1], r[2]) for r in rows] == [("0", "alpha", "val_accuracy ↑"), ("1", "beta", "test_loss ↓")]
    assert '<td class="num">0.1000</td><td class="num">1</td>' in rows[1][3], "beta's best is the lowest loss, trial 1"
    assert [a["id"] for tag, a in parse(out).attrs if tag == "section"] == ["exp-0", "exp-1"]


def test_ranking_by_another_metric(tmp_path):
    report = collect(database(), "alpha", metric="params", maximize=False, top_k=2, visualizers=[])
    assert [t.number for t in report.top] == [1, 2] and report.best == 1000.0 and report.best_trial == 1


def test_user_mistakes_are_results_errors(tmp_path):
    db = database()
    with pytest.raises(ResultsError, match="no experiment named 'gamma'; experiments: alpha, beta"):
        build_report(db, ["gamma"], tmp_path / "r.html", visualizers=[])
    with pytest.raises(ResultsError, match="metric 'f1'"):
        build_report(db, ["alpha"], tmp_path / "r.html", metric="f1", visualizers=[])
    with pytest.raises(ResultsError, match="does not exist"):
        build_report(db, ["alpha"], tmp_path / "missing" / "r.html", visualizers=[])
    with pytest.raises(ResultsError, match="at least one"):
        build_report(db, [], tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()
    assert issubclass(ResultsError, NeuromosaicError)


def test_a_space_is_inferred_for_visualizers_when_the_encoder_is_unknown(tmp_path):
    seen = []

    class SpaceAware(Visualizer):
        def plot_performance_landscape(self, trials, out_dir, metric="val_accuracy"):
            raise AssertionError("render is called")

        def render(self, trials, out_dir, metric="val_accuracy", *, space=None, maximize=None):
            seen.append((space.names, maximize))
            return []

    db = InMemoryResultsDB()
    db.create_experiment(Experiment("e", "t", {"encoder": {"name": "not-installed"}, "search": {"direction": "minimize",
                                                                                              "metric": "loss"}}))
    for i in range(3):
        db.save_trial(Trial("e", i, ArchitectureVector({"depth": i, "act": "relu"}), status=TrialStatus.COMPLETED,
                            result=TrialResult(metrics={"loss": 1.0 / (i + 1)})))
    build_report(db, ["e"], tmp_path / "r.html", visualizers=[("aware", SpaceAware())])
    assert seen == [(["act", "depth"], False)]


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    code = "import sys; from neuromosaic_visualizer_html.report import main; sys.argv[0] = 'neuromosaic-report'; main()"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "NEUROMOSAIC_STORAGE_URL": f"sqlite:///{cwd / 'absent.db'}"})


def test_cli_errors_are_one_line_with_exit_code_2(tmp_path):
    proc = run_cli("some-experiment", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"neuromosaic-report: error: no results database at {tmp_path / 'absent.db'} (sqlite:///{tmp_path / 'absent.db'}); "
        "run a search first, or point --url / NEUROMOSAIC_STORAGE_URL at an existing database"]
    proc = run_cli("--url", "nosuch", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "has no scheme" in proc.stderr


def test_interactive_svg_points_have_tooltips_and_link_the_top_ones_to_their_code(tmp_path):
    out = build_report(database(), ["alpha"], tmp_path / "r.html", top_k=2, visualizers=[])
    html = out.read_text()
    svgs = dict(re.findall(r'<svg class="explore" data-kind="(\w+)" data-points="(\d+)"', html))
    assert svgs == {"landscape": "11", "history": "11"}, "every trial, failed ones as crosses"
    landscape = html[html.index('data-kind="landscape"'):html.index("</svg>", html.index('data-kind="landscape"'))]
    assert landscape.count("<circle") == 6 and landscape.count("<path") == 5
    assert sorted(re.findall(r'<a href="#code-0-(\d+)">', landscape)) == ["7", "8"]
    assert all(f'id="code-0-{n}"' in html for n in (7, 8)), "the links land on the code blocks"
    tips = re.findall(r"<title>([^<]*)</title>", landscape)
    assert any(t.startswith("trial 8 | completed | val_accuracy 0.5800 | ") for t in tips)
    assert any(t.startswith("trial 3 | failed | nan_loss: nan at epoch 3") for t in tips)


def axis_ticks(svg: str) -> tuple[list[str], list[str]]:
    """The x (centred under the plot) and y (right-aligned beside it) tick labels of an explore SVG."""
    ticks = re.findall(r'<text class="tick" [^>]*text-anchor="(middle|end)"[^>]*>([^<]*)</text>', svg)
    return [t for anchor, t in ticks if anchor == "middle"], [t for anchor, t in ticks if anchor == "end"]


def is_round(labels: list[str]) -> bool:
    """Evenly spaced by 1, 2 or 5 times a power of ten, each written with no more decimals than that step needs."""
    values = [float(label.replace(",", "")) for label in labels]
    steps = {round(b - a, 12) for a, b in zip(values, values[1:], strict=False)}
    if len(steps) != 1:
        return False
    (step,) = steps
    mantissa = step / 10 ** math.floor(math.log10(step))
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    return (any(math.isclose(mantissa, m) for m in (1, 2, 5))
            and all(len(label.partition(".")[2]) == decimals for label in labels))


def test_explore_axes_carry_round_tick_labels(tmp_path):
    db = InMemoryResultsDB()
    db.create_experiment(Experiment("e", "t", {"search": {"metric": "val_accuracy", "direction": "maximize"}}))
    for i in range(1, 9):  # values and vectors whose ranges end nowhere near round numbers
        vector = ArchitectureVector({"depth": 1 + (i * 5) % 7, "lr": 0.0013 * i ** 1.7, "act": ("relu", "gelu", "tanh")[i % 3]})
        db.save_trial(Trial("e", i, vector, status=TrialStatus.COMPLETED,
                            result=TrialResult(metrics={"val_accuracy": 0.4537 + 0.0661 * ((i * 3) % 8)})))
    html = build_report(db, ["e"], tmp_path / "r.html", visualizers=[]).read_text()
    svgs = dict(re.findall(r'<svg class="explore" data-kind="(\w+)"(.*?)</svg>', html))
    for kind in ("landscape", "history"):
        xs, ys = axis_ticks(svgs[kind])
        assert len(xs) >= 4 and len(ys) >= 4, (kind, xs, ys)
        assert is_round(xs) and is_round(ys), (kind, xs, ys)
    xs, ys = axis_ticks(svgs["history"])
    assert all(label.isdigit() for label in xs), f"trial numbers are whole: {xs}"
    assert ys == ["0.5", "0.6", "0.7", "0.8", "0.9"]
    assert not is_round(["-3.68", "-2.14", "-0.604", "0.932", "2.47"]), "the check can fail"


class ImportanceVisualizer(Visualizer):
    """Writes an ``importance.png``, as the matplotlib visualizer does."""

    def plot_performance_landscape(self, trials, out_dir, metric="val_accuracy"):
        (out_dir / "importance.png").write_bytes(PIXEL)
        return [out_dir / "importance.png"]


def importance_caption(db: InMemoryResultsDB, experiment: str, tmp_path: Path) -> str:
    html = build_report(db, [experiment], tmp_path / "r.html", visualizers=[("imp", ImportanceVisualizer())]).read_text()
    (caption,) = re.findall(r'<img [^>]*data-plot="importance.png"><figcaption>(.*?)</figcaption>', html)
    return re.sub(r"<[^>]+>", "", caption)


def test_the_importance_plot_says_when_there_are_too_few_trials_to_rank(tmp_path):
    db = database()  # alpha: 6 completed trials over 6 dimensions
    caption = importance_caption(db, "alpha", tmp_path)
    assert "not ranked, too few trials" in caption and "6 completed over" in caption and "below 20" in caption
    db = InMemoryResultsDB()
    db.create_experiment(Experiment("many", "t", {"search": {"metric": "val_accuracy", "direction": "maximize"}}))
    for i in range(25):
        db.save_trial(Trial("many", i, ArchitectureVector({"depth": 1 + i % 4, "act": ("relu", "gelu")[i % 2]}),
                            status=TrialStatus.COMPLETED, result=TrialResult(metrics={"val_accuracy": 0.5 + 0.1 * (i % 4)})))
    caption = importance_caption(db, "many", tmp_path)
    assert "too few" not in caption and caption.startswith("Parameter importance: which search dimensions")


def multi_fidelity_database() -> InMemoryResultsDB:
    """``mf``: trials 1-3 trained to their end (8 epochs), 4 and 5 pruned by a scheduler at 2 and 4
    epochs (4 with the highest early accuracy), 6 from before fidelity was recorded, 7 failed."""
    db = InMemoryResultsDB()
    db.create_experiment(Experiment("mf", "digits", {"search": {"metric": "val_accuracy", "direction": "maximize"}}))
    for number, acc, fidelity, pruned in ((1, 0.70, 8, False), (2, 0.80, 8, False), (3, 0.75, 8, False),
                                          (4, 0.90, 2, True), (5, 0.50, 4, True), (6, 0.60, None, False)):
        curve = tuple(acc * (e + 1) / (fidelity or 1) for e in range(fidelity or 0))
        db.save_trial(make_trial("mf", number, status=TrialStatus.COMPLETED, result=TrialResult(
            metrics={"val_accuracy": acc, "params": 1000.0 * number}, curve=curve, fidelity=fidelity, pruned=pruned)))
    db.save_trial(make_trial("mf", 7, status=TrialStatus.FAILED, result=TrialResult.failure(ErrorClass.NAN_LOSS, "nan")))
    return db


class CurvesVisualizer(Visualizer):
    """Writes ``learning_curves.png`` when some trial has a curve, as the matplotlib visualizer does."""

    def plot_performance_landscape(self, trials, out_dir, metric="val_accuracy"):
        if not any(t.result is not None and t.result.curve for t in trials):
            return []
        (out_dir / "learning_curves.png").write_bytes(PIXEL)
        return [out_dir / "learning_curves.png"]


def test_pruned_trials_are_counted_marked_with_their_fidelity_and_never_the_best(tmp_path):
    out = build_report(multi_fidelity_database(), ["mf"], tmp_path / "r.html", top_k=6,
                       visualizers=[("curves", CurvesVisualizer())])
    html = out.read_text()
    cards = {label: value for value, label in re.findall(r'<div class="value">(.*?)</div><div class="label">([^<]*)</div>', html)}
    assert cards["completed"] == "6" and cards["pruned (of completed)"] == "2"
    assert cards["best val_accuracy (trial 2)"] == '<span class="best-value">0.8000</span>', \
        "trial 4's 0.90 after 2 epochs is not the best over a full result"
    top = re.search(r"<h3>Top 6 architectures.*?<tbody>(.*?)</tbody>", html, re.S).group(1)
    rows = [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", top)]
    cells = {r[1]: r[4] for r in rows}  # the order is storage's ranking (full results first)
    assert {n: re.sub(r"<[^>]+>", "", c) for n, c in cells.items()} == {
        "1": "8", "2": "8", "3": "8", "6": "full", "4": "2 pruned", "5": "4 pruned"}, "each with its epochs"
    assert cells["4"].count('<span class="pruned"') == 1 and "pruned" not in cells["2"], "pruned ones badged"
    (caption,) = re.findall(r'<img [^>]*data-plot="learning_curves.png"><figcaption>(.*?)</figcaption>', html)
    assert caption.startswith("Learning curves: the validation score per epoch; pruned trials in grey")
    assert any(t.startswith("trial 4 | completed | val_accuracy 0.9000 | pruned at 2 epochs")
               for t in re.findall(r"<title>([^<]*)</title>", html)), "the explore tooltips say so too"


def test_the_comparison_counts_pruned_trials_and_no_curves_means_no_curve_plot(tmp_path):
    db = multi_fidelity_database()
    db.create_experiment(Experiment("plain", "digits", {"search": {"metric": "val_accuracy", "direction": "maximize"}}))
    db.save_trial(make_trial("plain", 1, status=TrialStatus.COMPLETED, result=TrialResult(metrics={"val_accuracy": 0.5})))
    html = build_report(db, ["mf", "plain"], tmp_path / "r.html", visualizers=[("curves", CurvesVisualizer())]).read_text()
    comparison = re.search(r"<h2>Comparison</h2><table><thead><tr>(.*?)</tr></thead><tbody>(.*?)</tbody>", html).groups()
    headers = re.findall(r"<th>([^<]*)</th>", comparison[0])
    rows = [dict(zip(headers, re.findall(r"<td[^>]*>(.*?)</td>", row), strict=True))
            for row in re.findall(r"<tr>(.*?)</tr>", comparison[1])]
    assert [(r["completed"], r["pruned"], r["failed"]) for r in rows] == [("6", "2", "1"), ("1", "0", "0")]
    assert html.count('data-plot="learning_curves.png"') == 1, "only the experiment with curves has the plot"
