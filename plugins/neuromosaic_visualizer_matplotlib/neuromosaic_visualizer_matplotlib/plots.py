"""The two plots: the search history and the metric-versus-size Pareto front.

Figures are drawn on matplotlib's Agg canvas directly (``Figure`` + ``FigureCanvasAgg``), never
through ``pyplot``: no window, no global figure registry, and the process-wide backend of a
caller (a notebook, say) is left alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import attrs

from neuromosaic_core.interfaces import Visualizer
from neuromosaic_core.model import Trial, TrialStatus
from neuromosaic_visualizer_matplotlib import MatplotlibSettings

HISTORY_FILE = "history.png"
PARETO_FILE = "pareto.png"


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the non-dominated points among ``(params, metric)`` pairs: fewer parameters and a
    higher metric are better.

    A point is dominated when another has at most its parameters and at least its metric, and is
    strictly better in one of the two. Identical points do not dominate each other, so all copies
    of a front point are returned. Points with a non-finite coordinate are never on the front.
    The indices come sorted by parameters (ascending), i.e. by metric ascending along the front,
    ready to be connected by a line; ties keep the input order.
    """
    valid = [i for i, (p, m) in enumerate(points) if math.isfinite(p) and math.isfinite(m)]
    order = sorted(valid, key=lambda i: (points[i][0], -points[i][1], i))
    front: list[int] = []
    best = -math.inf
    last: tuple[float, float] | None = None
    for i in order:
        p, m = points[i]
        if m > best:
            front.append(i)
            best = m
            last = (p, m)
        elif (p, m) == last:  # an exact copy of the previous front point
            front.append(i)
    return front


def metric_value(trial: Trial, metric: str) -> float | None:
    """The trial's finite ``metric``, or None when it has no result, failed, or lacks the metric."""
    result = trial.result
    if result is None or not result.ok:
        return None
    value = result.metrics.get(metric)
    if value is None or isinstance(value, bool):
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def is_maximized(metric: str, direction: str = "auto") -> bool:
    if direction == "max":
        return True
    if direction == "min":
        return False
    return not any(word in metric.lower() for word in ("loss", "error"))


@attrs.define
class MatplotlibVisualizer(Visualizer):
    """Writes ``history.png`` and ``pareto.png`` to ``out_dir`` (always both, see the README)."""

    settings: MatplotlibSettings = attrs.field(factory=MatplotlibSettings)

    def plot_performance_landscape(self, trials: Sequence[Trial], out_dir: Path, metric: str = "val_accuracy") -> list[Path]:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        trials = sorted(trials, key=lambda t: t.number)
        maximize = is_maximized(metric, self.settings.direction)
        return [
            self.plot_history(trials, out_dir / HISTORY_FILE, metric, maximize),
            self.plot_pareto(trials, out_dir / PARETO_FILE, metric, maximize),
        ]

    # -- figures -------------------------------------------------------------------------------

    def _figure(self):  # -> (Figure, Axes)
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(self.settings.width, self.settings.height), dpi=self.settings.dpi, layout="constrained")
        FigureCanvasAgg(fig)
        return fig, fig.add_subplot()

    def _save(self, fig, path: Path) -> Path:
        fig.savefig(path, dpi=self.settings.dpi, format="png")
        return path

    @staticmethod
    def _note(ax, text: str) -> None:
        ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=11, color="0.35")

    def plot_history(self, trials: Sequence[Trial], path: Path, metric: str, maximize: bool) -> Path:
        """The metric per trial number; failures as markers along the bottom; the best so far."""
        fig, ax = self._figure()
        done = [(t.number, v) for t in trials if (v := metric_value(t, metric)) is not None]
        invalid = [t.number for t in trials if metric_value(t, metric) is None and t.status == TrialStatus.INVALID]
        failed = [t.number for t in trials if metric_value(t, metric) is None and t.status != TrialStatus.INVALID]

        if done:
            xs, ys = zip(*done, strict=True)
            ax.scatter(xs, ys, s=22, color="tab:blue", zorder=3, label=f"{metric} ({len(done)} completed)")
            best, best_xs, best_ys = None, [], []
            for x, y in done:
                if best is None or (y > best if maximize else y < best):
                    best = y
                best_xs.append(x)
                best_ys.append(best)
            last = max(t.number for t in trials)
            if last > best_xs[-1]:  # carry the best on to the last trial
                best_xs.append(last)
                best_ys.append(best_ys[-1])
            ax.step(best_xs, best_ys, where="post", color="tab:green", linewidth=1.5, zorder=2, label="best so far")
        else:
            self._note(ax, "no completed trials" if trials else "no trials")

        # failures sit on the bottom edge of the axes, whatever the metric's range
        bottom = ax.get_xaxis_transform()  # x in data units, y in axes units
        if failed:
            ax.scatter(failed, [0.03] * len(failed), transform=bottom, marker="x", s=30, color="tab:red",
                       zorder=4, clip_on=False, label=f"failed / no result ({len(failed)})")
        if invalid:
            ax.scatter(invalid, [0.03] * len(invalid), transform=bottom, marker="v", s=30, color="tab:orange",
                       zorder=4, clip_on=False, label=f"invalid ({len(invalid)})")

        if trials:
            lo, hi = min(t.number for t in trials), max(t.number for t in trials)
            ax.set_xlim(lo - 0.5 - 0.02 * (hi - lo), hi + 0.5 + 0.02 * (hi - lo))
        ax.set_xlabel("trial")
        ax.set_ylabel(metric)
        ax.set_title(f"Search history: {metric} ({'higher' if maximize else 'lower'} is better)")
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best", fontsize=8)
        return self._save(fig, path)

    def plot_pareto(self, trials: Sequence[Trial], path: Path, metric: str, maximize: bool) -> Path:
        """The metric against the parameter count (log axis) with the Pareto front marked."""
        fig, ax = self._figure()
        pts: list[tuple[float, float]] = []
        labels: list[int] = []
        for t in trials:
            value = metric_value(t, metric)
            params = metric_value(t, "params")
            if value is None or params is None or params <= 0:
                continue
            pts.append((params, value))
            labels.append(t.number)

        ax.set_xscale("log")
        if pts:
            front = pareto_front([(p, m if maximize else -m) for p, m in pts])
            on_front = set(front)
            rest = [pts[i] for i in range(len(pts)) if i not in on_front]
            if rest:
                ax.scatter(*zip(*rest, strict=True), s=22, color="tab:blue", alpha=0.6, label="trial")
            fx, fy = zip(*(pts[i] for i in front), strict=True)
            ax.step(fx, fy, where="post", color="tab:red", linewidth=1.2, alpha=0.7, zorder=2)
            ax.scatter(fx, fy, s=40, color="tab:red", edgecolors="black", linewidths=0.6, zorder=3,
                       label=f"Pareto front ({len(front)})")
            for i in front:
                ax.annotate(f"#{labels[i]}", pts[i], textcoords="offset points", xytext=(4, 4), fontsize=7)
        else:
            ax.set_xlim(1e2, 1e6)
            self._note(ax, f"no completed trials with {metric} and params")
        ax.set_xlabel("parameters (log scale)")
        ax.set_ylabel(metric)
        ax.set_title(f"{metric} vs size: {'higher' if maximize else 'lower'} and smaller is better")
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best", fontsize=8)
        return self._save(fig, path)
