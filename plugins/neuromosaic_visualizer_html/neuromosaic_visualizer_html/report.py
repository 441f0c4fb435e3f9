"""One self-contained HTML report for one experiment, or a comparison of several.

``neuromosaic-report`` (and the ``html`` visualizer, at the end of each run) writes a single ``.html`` file
that opens offline: styles inline, plots embedded as ``data:`` URIs, no script or font from the
network. It holds, per experiment: a summary (trials completed, pruned, failed and invalid, the best
value, timings when known), the plots of the visualizers, the top architectures with their fidelity
and their code, and the failure reasons by count; with several experiments, a comparison table first::

    from neuromosaic_core import results
    from neuromosaic_visualizer_html.report import build_report

    db = results.open_results("sqlite:///neuromosaic.db")
    build_report(db, ["digits-mlp_conv1d-random"], "report.html")

Plots come from the installed visualizer plugins, rendered into a temporary directory with the
settings the experiment was run with; without any (or with ``visualizers=[]``) the report has the
tables only. Everything read from the database (names, code, error messages) is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import math
import tempfile
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs
from loguru import logger

from neuromosaic_core import analysis, results
from neuromosaic_core.encryption import is_encrypted_text
from neuromosaic_core.errors import NeuromosaicError, run_console_script
from neuromosaic_core.interfaces import FinishedRun, ResultsDB, Visualizer
from neuromosaic_core.model import Experiment, SearchSpace, Trial, TrialStatus

__all__ = ["ExperimentReport", "HtmlVisualizer", "build_report", "collect", "main", "render_html"]

#: File types a report embeds, with their MIME types. HTML (an interactive plot) goes in an iframe.
IMAGE_TYPES = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}

#: Captions for the plot files of the first-party visualizers; other files are captioned by name.
CAPTIONS = {
    "history": "Optimisation history: the metric per trial, the best so far, failures marked",
    "pareto": "Pareto front of two metrics",
    "landscape": "Architecture landscape: vectors projected to 2-D, as points and interpolated",
    "importance": "Parameter importance: which search dimensions explain the metric",
    "parallel": "Parallel coordinates over the search dimensions active in these trials",
    "learning_curves": "Learning curves: the validation score per epoch; pruned trials in grey, ending where a "
                       "scheduler stopped them",
}


@attrs.frozen
class Plot:
    """One embedded plot: which visualizer made it, its file name, caption and ``data:`` URI."""

    visualizer: str
    name: str
    caption: str
    uri: str
    wide: bool = False


@attrs.frozen
class ExperimentReport:
    """Everything the report shows about one experiment (also what a REST API would serialise)."""

    name: str
    task: str
    metric: str
    maximize: bool
    counts: Mapping[str, int]
    best: float | None
    best_trial: int | None
    top: list[Trial]
    failures: list[analysis.FailureReason]
    elapsed_seconds: float | None
    train_seconds: float | None
    plots: list[Plot]
    notes: list[str]
    trials: list[Trial] = attrs.field(factory=list)
    space: SearchSpace = attrs.field(factory=lambda: SearchSpace([]))
    #: Why no importance ranking should be read from these trials (too few for the number of
    #: active dimensions), or None; shown beside the importance plot.
    importance_note: str | None = None
    #: Completed trials a scheduler stopped or paused below full fidelity (counted in ``completed`` too).
    pruned: int = 0

    @property
    def total(self) -> int:
        return sum(self.counts.values())


# -- collecting ----------------------------------------------------------------------------------


def _search_space(experiment: Experiment, trials: Sequence[Trial]) -> SearchSpace:
    """The encoder's space when the encoder the experiment was run with is installed (its scales and
    choices); otherwise one inferred from the stored vectors (see :func:`analysis.infer_space`)."""
    node = dict((experiment.config or {}).get("encoder") or {})
    name = node.pop("name", None)
    if name is not None:
        try:
            from neuromosaic_core.plugins import PluginSystem
            from neuromosaic_core.settings import structure_settings

            component = PluginSystem.load().get("encoder", str(name))
            settings = structure_settings(node, component.settings, "encoder") if component.settings else None
            return component.factory(settings=settings).search_space()
        except Exception as exc:  # not installed here, or its settings changed: the vectors still tell
            logger.debug(f"report: encoder {name!r} unavailable ({type(exc).__name__}: {exc}); inferring the space")
    return analysis.infer_space(t.vector for t in trials)


def installed_visualizers(experiment: Experiment | None = None) -> list[tuple[str, Visualizer]]:
    """Every installed visualizer, with the settings ``experiment`` was run with where it stored
    them (defaults otherwise)."""
    from neuromosaic_core.plugins import PluginSystem
    from neuromosaic_core.settings import structure_settings

    stored = dict(((experiment.config if experiment else None) or {}).get("visualizer") or {})
    system = PluginSystem.load()
    built = []
    for name in system.names("visualizer"):
        component = system.get("visualizer", name)
        settings = component.default_settings()
        if component.settings and name in stored:
            try:
                settings = structure_settings(stored[name], component.settings, f"visualizer.{name}")
            except NeuromosaicError:
                pass  # settings of an older version of the plugin: its defaults will do
        built.append((name, component.factory(settings=settings)))
    return built


def _data_uri(path: Path) -> str | None:
    mime = IMAGE_TYPES.get(path.suffix.lower())
    if mime is None:
        return None
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _plot(visualizer: str, path: Path) -> Plot | None:
    """A file as an embeddable plot; None for a type a report cannot embed."""
    caption = CAPTIONS.get(path.stem, path.stem.replace("_", " "))
    if path.suffix.lower() == ".html":
        # An interactive plot must be self-contained (the visualizer's contract): it goes whole into
        # an iframe's srcdoc, so its scripts cannot touch the report.
        return Plot(visualizer, path.name, caption, "srcdoc:" + path.read_text(encoding="utf-8"))
    uri = _data_uri(path)
    return Plot(visualizer, path.name, caption, uri, wide=_is_wide(path)) if uri is not None else None


def _is_wide(path: Path) -> bool:
    """A PNG more than twice as wide as tall (several panels) spans a whole row of the grid;
    its size sits at bytes 16-24 of the file (the IHDR chunk)."""
    head = path.read_bytes()[:24] if path.suffix.lower() == ".png" else b""
    if len(head) < 24 or head[12:16] != b"IHDR":
        return False
    width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    return height > 0 and width / height > 2


def _render_plots(experiment: Experiment, trials: Sequence[Trial], space: SearchSpace, metric: str, maximize: bool,
                  visualizers: Sequence[tuple[str, Visualizer]], notes: list[str]) -> list[Plot]:
    plots: list[Plot] = []
    for name, visualizer in visualizers:
        with tempfile.TemporaryDirectory(prefix="neuromosaic-report-") as tmp:
            try:
                paths = visualizer.render(trials, Path(tmp), metric, space=space, maximize=maximize)
                plots.extend(p for p in (_plot(name, Path(path)) for path in paths) if p is not None)
            except Exception as exc:  # one broken plot must not cost the whole report
                logger.warning(f"report: visualizer {name} failed on {experiment.name}: {type(exc).__name__}: {exc}")
                notes.append(f"visualizer {name} failed: {type(exc).__name__}: {exc}")
    return plots


def collect(db: ResultsDB, experiment: str, *, metric: str | None = None, maximize: bool | None = None, top_k: int = 5,
            visualizers: Sequence[tuple[str, Visualizer]] | None = None, plot_files: Sequence[Path] | None = None,
            elapsed_seconds: float | None = None) -> ExperimentReport:
    """What the report shows about ``experiment``.

    ``metric``/``maximize`` default to what the search optimised. ``plot_files``: plots already
    rendered (the orchestrator's), embedded instead of rendering again. Otherwise ``visualizers``
    render them (None: every installed visualizer; ``[]``: no plots).
    """
    found = db.get_experiment(experiment)
    if found is None:
        raise results.UnknownExperimentError(experiment, [e.name for e in db.list_experiments()])
    searched_metric, searched_maximize = results.objective(found)
    metric = metric or searched_metric
    maximize = searched_maximize if maximize is None else maximize
    trials = sorted(db.list_trials(experiment), key=lambda t: t.number)
    # Ranked by storage: full results first, else the highest fidelity (a pruned result's early
    # score is never the best over one trained further); the first is the best.
    top = results.best_trials(db, experiment, k=top_k, metric=metric, maximize=maximize)
    best_trial, best = (top[0].number, analysis.metric_value(top[0], metric)) if top else (None, None)
    train = [v for t in trials if (v := analysis.metric_value(t, "train_seconds")) is not None]
    notes: list[str] = []
    space = _search_space(found, trials)
    if plot_files is not None:
        plots = [p for p in (_plot("", Path(f)) for f in plot_files) if p is not None]
    else:
        plots = _render_plots(found, trials, space, metric, maximize,
                              installed_visualizers(found) if visualizers is None else visualizers, notes)
    data = analysis.design_matrix(space, trials, metric)
    active = int(analysis.active_mask(space, [t.vector for t in data.trials]).any(axis=0).sum())
    return ExperimentReport(
        name=experiment, task=found.task, metric=metric, maximize=maximize,
        counts=analysis.status_counts(trials), best=best, best_trial=best_trial, top=top,
        failures=analysis.failure_reasons(trials), elapsed_seconds=elapsed_seconds,
        train_seconds=sum(train) if train else None, plots=plots, notes=notes, trials=trials, space=space,
        importance_note=analysis.importance_shortfall(len(data), active), pruned=results.pruned_count(trials),
    )


def _fidelity_cell(t: Trial) -> str:
    """A trial's fidelity in a table cell (escaped): its epochs, ``full`` when none was recorded,
    and a ``pruned`` badge when a scheduler stopped it there."""
    label = results.fidelity_label(t)  # "-", "full", "12" or "12, pruned"
    if label == "-":
        return "–"
    badge = ' <span class="pruned" title="a scheduler stopped it before its training\'s end">pruned</span>'
    return label.replace(", pruned", badge)


# -- interactive SVG -----------------------------------------------------------------------------
# Drawn here, without any plotting library, so every report can be explored: each point carries a
# <title> (the browser shows it on hover) and, for the top architectures, a link to their code.

#: Viridis at five stops: dark (worst) to yellow (best).
_RAMP = ((68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37))
_W, _H, _PAD_L, _PAD_R, _PAD_T, _PAD_B = 560, 360, 64, 16, 16, 44


def _colour(t: float) -> str:
    """The ramp's colour at ``t`` in [0, 1]."""
    t = min(max(t, 0.0), 1.0) * (len(_RAMP) - 1)
    i = min(int(t), len(_RAMP) - 2)
    f = t - i
    r, g, b = (round(a + (c - a) * f) for a, c in zip(_RAMP[i], _RAMP[i + 1], strict=True))
    return f"#{r:02x}{g:02x}{b:02x}"


def _ticks(lo: float, hi: float, integer: bool = False, fewest: int = 4) -> tuple[list[float], float]:
    """``(ticks, step)``: round numbers inside ``[lo, hi]``, as a person would label an axis: the
    multiples of the largest 1-2-5 step (1, 2, 5 times a power of ten; at least 1 on an ``integer``
    axis such as trial numbers) that gives at least ``fewest`` of them. A single tick when the
    range is empty."""
    if not hi > lo or not math.isfinite(hi - lo):
        return [lo], 0.0
    power = 10.0 ** math.floor(math.log10(hi - lo))
    steps = [m * power * scale for scale in (1.0, 0.1, 0.01) for m in (5, 2, 1)]  # largest first
    if integer:
        steps = [step for step in steps if step >= 1] or [1.0]

    def multiples(step: float) -> list[float]:
        return [k * step for k in range(math.ceil(lo / step - 1e-9), math.floor(hi / step + 1e-9) + 1)]

    step = next((step for step in steps if len(multiples(step)) >= fewest), steps[-1])
    return [0.0 if abs(t) < step * 1e-9 else t for t in multiples(step)], step  # no "-0"


def _svg_scatter(points: Sequence[tuple[float, float, float | None, str, str | None]], x_label: str, y_label: str,
                 maximize: bool, kind: str, integer_x: bool = False) -> str:
    """An SVG scatter of ``(x, y, value, tooltip, link)``: coloured by ``value`` (grey crosses where
    None), tooltips as ``<title>``, points with a ``link`` wrapped in ``<a href>`` (an anchor in the
    page)."""
    if not points:
        return (f'<svg class="explore" data-kind="{kind}" data-points="0" viewBox="0 0 {_W} 60" width="{_W}" '
                f'height="60" role="img"><text x="10" y="35" fill="#5b6673">nothing to show yet</text></svg>')
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x_lo, x_hi, y_lo, y_hi = min(xs), max(xs), min(ys), max(ys)
    x_span, y_span = (x_hi - x_lo) or 1.0, (y_hi - y_lo) or 1.0
    x_lo, x_hi, y_lo, y_hi = x_lo - 0.05 * x_span, x_hi + 0.05 * x_span, y_lo - 0.05 * y_span, y_hi + 0.05 * y_span
    values = [p[2] for p in points if p[2] is not None]
    v_lo, v_hi = (min(values), max(values)) if values else (0.0, 1.0)

    def sx(x: float) -> float:
        return _PAD_L + (x - x_lo) / (x_hi - x_lo) * (_W - _PAD_L - _PAD_R)

    def sy(y: float) -> float:
        return _H - _PAD_B - (y - y_lo) / (y_hi - y_lo) * (_H - _PAD_T - _PAD_B)

    out = [f'<svg class="explore" data-kind="{kind}" data-points="{len(points)}" viewBox="0 0 {_W} {_H}" '
           f'width="{_W}" height="{_H}" role="img" font-size="11" font-family="system-ui, sans-serif">',
           f'<rect x="{_PAD_L}" y="{_PAD_T}" width="{_W - _PAD_L - _PAD_R}" height="{_H - _PAD_T - _PAD_B}" '
           'fill="#fbfcfd" stroke="#9aa5b1"/>']
    x_ticks, x_step = _ticks(x_lo, x_hi, integer=integer_x)
    for x in x_ticks:
        out.append(f'<line x1="{sx(x):.1f}" x2="{sx(x):.1f}" y1="{_H - _PAD_B}" y2="{_H - _PAD_B + 4}" stroke="#9aa5b1"/>'
                   f'<text class="tick" x="{sx(x):.1f}" y="{_H - _PAD_B + 16}" text-anchor="middle" fill="#5b6673">'
                   f'{_e(_tick(x, x_step))}</text>')
    y_ticks, y_step = _ticks(y_lo, y_hi)
    for y in y_ticks:
        out.append(f'<line x1="{_PAD_L - 4}" x2="{_PAD_L}" y1="{sy(y):.1f}" y2="{sy(y):.1f}" stroke="#9aa5b1"/>'
                   f'<text class="tick" x="{_PAD_L - 7}" y="{sy(y) + 4:.1f}" text-anchor="end" fill="#5b6673">'
                   f'{_e(_tick(y, y_step))}</text>')
    out.append(f'<text x="{(_W + _PAD_L) / 2:.0f}" y="{_H - 8}" text-anchor="middle">{_e(x_label)}</text>')
    out.append(f'<text transform="translate(14 {(_H - _PAD_B) / 2:.0f}) rotate(-90)" text-anchor="middle">{_e(y_label)}</text>')
    for x, y, value, tip, link in sorted(points, key=lambda p: p[2] is not None):  # coloured points on top
        cx, cy = sx(x), sy(y)
        if value is None:
            mark = (f'<path class="point" d="M{cx - 4:.1f} {cy - 4:.1f}L{cx + 4:.1f} {cy + 4:.1f}M{cx - 4:.1f} {cy + 4:.1f}'
                    f'L{cx + 4:.1f} {cy - 4:.1f}" stroke="#8b95a1" stroke-width="1.5"><title>{_e(tip)}</title></path>')
        else:
            t = (value - v_lo) / ((v_hi - v_lo) or 1.0)
            mark = (f'<circle class="point" cx="{cx:.1f}" cy="{cy:.1f}" r="{6 if link else 4.5}" '
                    f'fill="{_colour(t if maximize else 1 - t)}" stroke="{"#b42318" if link else "#1d232a"}" '
                    f'stroke-width="{2 if link else 0.6}"><title>{_e(tip)}</title></circle>')
        out.append(f'<a href="{_e(link)}">{mark}</a>' if link else mark)
    out.append("</svg>")
    return "".join(out)


def _tick(value: float, step: float = 1.0) -> str:
    """A tick label with as many decimals as the step needs (0.05 -> two), thousands separated;
    without a step (a lone tick), four significant digits."""
    if not step > 0:
        return f"{value:.4g}"
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    return f"{value:,.{decimals}f}"


def _tooltip(t: Trial, metric: str) -> str:
    value = analysis.metric_value(t, metric)
    parts = [f"trial {t.number}", TrialStatus(t.status).value]
    if value is not None:
        parts.append(f"{metric} {_num(value)}")
    if t.result is not None and t.result.pruned:
        parts.append(f"pruned at {t.result.fidelity} epochs")
    if t.result is not None and t.result.error is not None:
        parts.append(f"{t.result.error.error_class.value}: {t.result.error.message.strip().splitlines()[0][:120]}"
                     if t.result.error.message.strip() else t.result.error.error_class.value)
    parts.append(", ".join(f"{k}={v}" for k, v in t.vector.values.items()))
    return " | ".join(parts)


def svg_landscape(trials: Sequence[Trial], space: SearchSpace, metric: str, maximize: bool,
                  top: set[int] | frozenset[int] = frozenset(), section: int = 0) -> str:
    """Every trial's vector on its first two principal components, coloured by ``metric``."""
    from neuromosaic_core.features import vectors_to_matrix

    matrix, _ = vectors_to_matrix(space, [t.vector for t in trials])
    fits = [i for i in range(len(trials)) if not all(math.isnan(v) for v in matrix[i])]
    coords, explained = analysis.pca_2d(matrix[fits]) if fits else (matrix[:0, :2], [0.0, 0.0])
    points = [(float(coords[k, 0]), float(coords[k, 1]), analysis.metric_value(trials[i], metric),
               _tooltip(trials[i], metric), f"#code-{section}-{trials[i].number}" if trials[i].number in top else None)
              for k, i in enumerate(fits)]
    return _svg_scatter(points, f"PC 1 ({explained[0]:.0%} of variance)", f"PC 2 ({explained[1]:.0%})", maximize,
                        "landscape")


def svg_history(trials: Sequence[Trial], metric: str, maximize: bool, top: set[int] | frozenset[int] = frozenset(),
                section: int = 0) -> str:
    """``metric`` per trial number; trials without a value as crosses on the bottom edge."""
    values = [analysis.metric_value(t, metric) for t in trials]
    known = [v for v in values if v is not None]
    floor = min(known) if known else 0.0
    points = [(float(t.number), v if v is not None else floor, v, _tooltip(t, metric),
               f"#code-{section}-{t.number}" if t.number in top else None) for t, v in zip(trials, values, strict=True)]
    return _svg_scatter(points, "trial", metric, maximize, "history", integer_x=True)


# -- HTML ----------------------------------------------------------------------------------------

STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #1d232a; background: #f6f7f9; }
header { background: #1f3a5f; color: #fff; padding: 18px 32px; }
header h1 { margin: 0 0 4px; font-size: 24px; }
header p { margin: 0; opacity: .85; font-size: 13px; }
main { padding: 8px 32px 40px; max-width: 1500px; }
section.experiment { background: #fff; border: 1px solid #d9dee5; border-radius: 8px; padding: 4px 24px 20px; margin: 20px 0; }
h2 { color: #1f3a5f; } h3 { margin-top: 26px; }
table { border-collapse: collapse; margin: 8px 0; font-size: 14px; }
th, td { border: 1px solid #d9dee5; padding: 4px 10px; text-align: left; vertical-align: top; }
th { background: #eef2f7; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 12px 0; }
.card { border: 1px solid #d9dee5; border-radius: 6px; padding: 8px 16px; min-width: 120px; background: #fbfcfd; }
.card .value { font-size: 22px; font-weight: 600; } .card .label { font-size: 12px; color: #5b6673; }
.card.good .value { color: #1c7c3c; } .card.bad .value { color: #b42318; }
.plots { display: grid; grid-template-columns: repeat(auto-fill, minmax(560px, 1fr)); gap: 16px; }
figure { margin: 0; border: 1px solid #d9dee5; border-radius: 6px; padding: 8px; background: #fff; }
figure.wide { grid-column: 1 / -1; }
figure img { max-width: 100%; height: auto; display: block; margin: auto; }
figure iframe { width: 100%; height: 520px; border: 0; }
svg.explore { max-width: 100%; height: auto; display: block; margin: auto; }
svg.explore a .point:hover { stroke-width: 3; }
figcaption { font-size: 13px; color: #5b6673; margin-top: 4px; }
pre { background: #0f1720; color: #e6edf3; padding: 12px; border-radius: 6px; overflow-x: auto; font-size: 12.5px; }
details { margin: 6px 0; } summary { cursor: pointer; font-weight: 600; }
.note { color: #8a5a00; background: #fff7e0; border: 1px solid #f1d48a; padding: 6px 10px; border-radius: 4px; }
.muted { color: #5b6673; }
.pruned { font-size: 11px; color: #5b6673; background: #eef2f7; border: 1px solid #d9dee5; border-radius: 3px; padding: 0 4px; }
"""

#: Marks each image with data-loaded="yes"/"no" once decoded and the body with the tally, so a
#: headless browser's DOM dump tells whether every plot displayed. Inline: nothing is fetched.
SCRIPT = """
window.addEventListener("load", function () {
  var imgs = document.querySelectorAll("img"), ok = 0;
  imgs.forEach(function (img) {
    var loaded = img.complete && img.naturalWidth > 0;
    img.setAttribute("data-loaded", loaded ? "yes" : "no");
    if (loaded) { ok += 1; }
  });
  document.body.setAttribute("data-images-loaded", ok + "/" + imgs.length);
});
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(value: float | None) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s" if hours else (f"{minutes}m {secs:02d}s" if minutes else f"{seconds:.1f}s")


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], numeric: Sequence[int] = ()) -> str:
    """A table from already-escaped cells; columns in ``numeric`` are right-aligned."""
    head = "".join(f"<th>{h}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>"
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _card(label: str, value: str, cls: str = "") -> str:
    return f'<div class="card {cls}"><div class="value">{value}</div><div class="label">{_e(label)}</div></div>'


def _comparison(reports: Sequence[ExperimentReport]) -> str:
    rows = [[f'<a href="#exp-{i}">{_e(r.name)}</a>', _e(r.task), _e(f"{r.metric} {'↑' if r.maximize else '↓'}"),
             str(r.total), str(r.counts.get("completed", 0)), str(r.pruned), str(r.counts.get("failed", 0)),
             str(r.counts.get("invalid", 0)), _num(r.best), "–" if r.best_trial is None else str(r.best_trial),
             _duration(r.elapsed_seconds), _duration(r.train_seconds)]
            for i, r in enumerate(reports)]
    return ("<h2>Comparison</h2>" +
            _table(["experiment", "task", "metric", "trials", "completed", "pruned", "failed", "invalid", "best",
                    "best trial", "wall time", "training time"], rows, numeric=(3, 4, 5, 6, 7, 8, 9)))


def _experiment_section(index: int, r: ExperimentReport) -> str:
    direction = "higher is better" if r.maximize else "lower is better"
    parts = [f'<section class="experiment" id="exp-{index}">',
             f'<h2 class="experiment-name">{_e(r.name)}</h2>',
             f'<p class="muted">task {_e(r.task)} · metric <b>{_e(r.metric)}</b> ({direction})</p>']
    cards = [
        _card(f"best {r.metric}" + ("" if r.best_trial is None else f" (trial {r.best_trial})"),
              f'<span class="best-value">{_num(r.best)}</span>', "good"),
        _card("trials", str(r.total)),
        _card("completed", str(r.counts.get("completed", 0))),
        _card("pruned (of completed)", str(r.pruned)),
        _card("failed", str(r.counts.get("failed", 0)), "bad" if r.counts.get("failed") else ""),
        _card("invalid", str(r.counts.get("invalid", 0)), "bad" if r.counts.get("invalid") else ""),
    ]
    if r.elapsed_seconds is not None:
        cards.append(_card("wall time", _duration(r.elapsed_seconds)))
    if r.train_seconds is not None:
        cards.append(_card("training time (sum over trials)", _duration(r.train_seconds)))
    parts.append('<div class="cards">' + "".join(cards) + "</div>")
    parts.extend(f'<p class="note">{_e(note)}</p>' for note in r.notes)

    parts.append("<h3>Plots</h3>")
    if r.plots:
        figures = []
        for p in r.plots:
            if p.uri.startswith("srcdoc:"):
                body = f'<iframe title="{_e(p.caption)}" sandbox="allow-scripts" srcdoc="{_e(p.uri[7:])}"></iframe>'
            else:
                body = f'<img src="{p.uri}" alt="{_e(p.caption)}" data-plot="{_e(p.name)}">'
            origin = f"{p.visualizer}: {p.name}" if p.visualizer else p.name
            caption = _e(p.caption)
            if Path(p.name).stem == "importance" and r.importance_note:
                caption = f'Parameter importance: <b class="importance-note">not ranked, {_e(r.importance_note)}</b>'
            figures.append(f'<figure{" class=wide" if p.wide else ""}>{body}<figcaption>{caption} '
                           f'<span class="muted">({_e(origin)})</span></figcaption></figure>')
        parts.append('<div class="plots">' + "".join(figures) + "</div>")
    else:
        parts.append('<p class="muted">No plots: no visualizer plugin is installed '
                     "(e.g. <code>pip install -e plugins/neuromosaic_visualizer_matplotlib</code>).</p>")

    top = {t.number for t in r.top}
    parts.append("<h3>Explore</h3>")
    parts.append('<div class="plots">'
                 f"<figure>{svg_landscape(r.trials, r.space, r.metric, r.maximize, top, index)}<figcaption>Architecture "
                 "landscape (PCA of the vectors): hover a point for its trial, click a ringed one (a top "
                 "architecture) for its code</figcaption></figure>"
                 f"<figure>{svg_history(r.trials, r.metric, r.maximize, top, index)}<figcaption>{_e(r.metric)} per "
                 "trial (crosses: no value), with the same tooltips and links</figcaption></figure></div>")
    parts.append(f"<h3>Top {len(r.top)} architectures by {_e(r.metric)}</h3>")
    if r.top:
        rows = []
        for rank, t in enumerate(r.top, 1):
            m = t.result.metrics if t.result is not None else {}
            rows.append([str(rank), str(t.number), _num(analysis.metric_value(t, r.metric)),
                         _num(m.get("params")), _fidelity_cell(t), _e(t.spec.describe() if t.spec is not None else "–")])
        parts.append(_table(["#", "trial", _e(r.metric), "params", "fidelity (epochs)", "architecture"], rows,
                            numeric=(0, 1, 2, 3, 4)))
        for rank, t in enumerate(r.top, 1):
            code = t.code if t.code is not None else "(no code stored: a lookup runner, or reused without code)"
            if is_encrypted_text(code):
                code = (f"(encrypted at rest under the key of fingerprint {code.split(':')[1]}: `neuromosaic-report` or "
                        "`neuromosaic-results show` with that key in $NEUROMOSAIC_ENCRYPTION_KEY_FILE shows it)")
            parts.append(f'<details{" open" if rank == 1 else ""} id="code-{index}-{t.number}">'
                         f"<summary>#{rank}: trial {t.number} code</summary>"
                         f'<pre><code class="language-python">{_e(code)}</code></pre></details>')
    else:
        parts.append('<p class="muted">No completed trials.</p>')

    parts.append("<h3>Failure reasons</h3>")
    if r.failures:
        rows = [[_e(f.status), _e(f.reason), str(f.count), _e(_ranges(f.trials)), _e(f.example)] for f in r.failures]
        parts.append(_table(["status", "reason", "count", "trials", "example message"], rows, numeric=(2,)))
    else:
        parts.append('<p class="muted">No failed or invalid trials.</p>')
    parts.append("</section>")
    return "\n".join(parts)


def _ranges(numbers: Sequence[int]) -> str:
    return results._number_ranges(numbers) if numbers else ""


def render_html(reports: Sequence[ExperimentReport], title: str | None = None, source: str | None = None) -> str:
    """The report's HTML (one string, no external resource)."""
    names = ", ".join(r.name for r in reports)
    title = title or (f"Neuromosaic report: {names}" if len(reports) == 1 else f"Neuromosaic comparison of {len(reports)} experiments")
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    subtitle = f"generated {stamp}" + (f" from {_e(source)}" if source else "")
    body = [_comparison(reports)] if len(reports) > 1 else []
    body += [_experiment_section(i, r) for i, r in enumerate(reports)]
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{_e(title)}</title><style>{STYLE}</style></head>\n"
        f"<body><header><h1>{_e(title)}</h1><p>{subtitle}</p></header>\n<main>\n"
        + "\n".join(body) + f"\n</main><script>{SCRIPT}</script></body></html>\n"
    )


def build_report(db: ResultsDB, experiments: Sequence[str], out_path: str | Path, *, metric: str | None = None,
                 maximize: bool | None = None, top_k: int = 5,
                 visualizers: Sequence[tuple[str, Visualizer]] | None = None,
                 plot_files: Mapping[str, Sequence[Path]] | None = None,
                 elapsed_seconds: Mapping[str, float] | None = None, title: str | None = None,
                 source: str | None = None) -> Path:
    """Write the report on ``experiments`` (at least one) to ``out_path`` and return the path.

    ``metric``/``maximize``: rank by this metric instead of each experiment's own. ``visualizers``:
    None renders with every installed one, ``[]`` gives tables only. ``plot_files`` (per experiment)
    embeds plots already rendered instead; ``elapsed_seconds`` (per experiment) adds the wall time
    of the run; ``source`` (a database URL, say) is named in the header. Unknown experiments, an
    unknown metric or an unwritable path raise :class:`~neuromosaic_core.results.ResultsError`.
    """
    if not experiments:
        raise results.ResultsError("no experiment to report on; name at least one")
    if top_k < 1:
        raise results.ResultsError(f"top-k must be at least 1, got {top_k}")
    target = Path(out_path).expanduser()
    if not target.parent.is_dir():
        raise results.ResultsError(f"cannot write {target}: directory {target.parent} does not exist")
    reports = [collect(db, name, metric=metric, maximize=maximize, top_k=top_k, visualizers=visualizers,
                       plot_files=(plot_files or {}).get(name), elapsed_seconds=(elapsed_seconds or {}).get(name))
               for name in dict.fromkeys(experiments)]
    try:
        target.write_text(render_html(reports, title, source), encoding="utf-8")
    except OSError as exc:
        raise results.ResultsError(f"cannot write {target}: {exc.strerror or exc}") from None
    return target


# -- the neuromosaic-report command --------------------------------------------------------------


def build_parser() -> Any:
    import argparse

    parser = argparse.ArgumentParser(
        prog="neuromosaic-report",
        description="Write one self-contained HTML report (summary, plots, top architectures with their code, "
                    "failure reasons) for one experiment or a comparison of several.")
    parser.add_argument("experiments", nargs="*", metavar="EXPERIMENT",
                        help="experiment name(s) (default: every experiment in the database)")
    parser.add_argument("--url", default=None,
                        help="results database URL (default: $NEUROMOSAIC_STORAGE_URL or sqlite:///neuromosaic.db)")
    parser.add_argument("-o", "--output", default="report.html", help="HTML file to write (default report.html)")
    parser.add_argument("--metric", default=None, help="rank by this metric (default: the one each search optimised)")
    direction = parser.add_mutually_exclusive_group()
    direction.add_argument("--minimize", action="store_true", help="lower --metric is better")
    direction.add_argument("--maximize", action="store_true", help="higher --metric is better")
    parser.add_argument("-k", "--top-k", type=int, default=5, help="architectures listed with their code (default 5)")
    parser.add_argument("--no-plots", action="store_true", help="tables only, no visualizer is run")
    return parser


def run_command(args: Any) -> Path:
    url = args.url or results.default_url()
    db = results.open_results(url)
    try:
        names = args.experiments or [e.name for e in db.list_experiments()]
        if not names:
            raise results.ResultsError(f"no experiments in {url}; run a search first")
        maximize = True if args.maximize else (False if args.minimize else None)
        return build_report(db, names, args.output, metric=args.metric, maximize=maximize, top_k=args.top_k,
                            visualizers=[] if args.no_plots else None, source=url)
    finally:
        db.close()


def main(argv: list[str] | None = None) -> None:
    """``neuromosaic-report [--url URL] [EXPERIMENT ...] [-o report.html]``."""
    args = build_parser().parse_args(argv)

    def build() -> int:
        path = run_command(args)
        print(f"wrote {path} ({path.stat().st_size / 1024:,.0f} KiB)")
        return 0

    run_console_script("neuromosaic-report", build)



# -- the html visualizer ---------------------------------------------------------------------------


class HtmlVisualizer(Visualizer):
    """The ``html`` visualizer: draws nothing of its own; at the end of a run
    (:meth:`~neuromosaic_core.interfaces.Visualizer.summarise`) it writes ``report.html`` in the run
    directory, embedding the plots the other selected visualizers rendered, whatever their order."""

    def plot_performance_landscape(self, trials: Sequence[Trial], out_dir: Path, metric: str = "val_accuracy") -> list[Path]:
        return []  # its output is the whole report, written once every plot exists

    def summarise(self, run: FinishedRun) -> list[Path]:
        # run.storage is as stored: encrypted at rest, the code sections say so instead of showing it.
        elapsed = None if run.elapsed_seconds is None else {run.experiment: run.elapsed_seconds}
        return [build_report(run.storage, [run.experiment], run.run_dir / "report.html", top_k=run.top_k,
                             plot_files={run.experiment: run.plots}, elapsed_seconds=elapsed)]
