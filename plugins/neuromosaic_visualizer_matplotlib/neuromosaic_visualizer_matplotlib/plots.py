"""The five plots (history, Pareto front, landscape, parameter importance, parallel coordinates),
and the learning curves when the trials recorded any.

Each ``draw_*`` function returns a matplotlib ``Figure`` (so tests, notebooks and the report can
read what was drawn before anything is saved); :class:`MatplotlibVisualizer` saves them as PNG.
The numbers (fronts, projections, smoothing, importance sums) come from
:mod:`neuromosaic_core.analysis`, shared with the report and other visualizers.

Figures are drawn on matplotlib's Agg canvas directly (``Figure`` + ``FigureCanvasAgg``), never
through ``pyplot``: no window, no global figure registry, and the process-wide backend of a
caller (a notebook, say) is left alone.
"""

from __future__ import annotations

import math
import textwrap
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import attrs
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from neuromosaic_core import analysis, results
from neuromosaic_core.analysis import is_maximized, metric_value
from neuromosaic_core.interfaces import Visualizer
from neuromosaic_core.model import SearchSpace, Trial, TrialStatus
from neuromosaic_visualizer_matplotlib import MatplotlibSettings

__all__ = [
    "FILES",
    "LEARNING_CURVES_FILE",
    "MatplotlibVisualizer",
    "is_maximized",
    "metric_value",
    "importance_ranking",
    "parameter_importance",
    "pareto_front",
]

HISTORY_FILE = "history.png"
PARETO_FILE = "pareto.png"
LANDSCAPE_FILE = "landscape.png"
IMPORTANCE_FILE = "importance.png"
PARALLEL_FILE = "parallel.png"
#: Every file the visualizer always writes, in order.
FILES = (HISTORY_FILE, PARETO_FILE, LANDSCAPE_FILE, IMPORTANCE_FILE, PARALLEL_FILE)
#: Written after :data:`FILES` when at least one trial has a learning curve.
LEARNING_CURVES_FILE = "learning_curves.png"
#: The grey of pruned trials' curves.
PRUNED_COLOUR = "0.6"

#: Fewer completed trials than this (or than active dimensions) and a forest's importances are
#: noise: the chart says so instead (:func:`neuromosaic_core.analysis.importance_shortfall`).
MIN_TRIALS_FOR_IMPORTANCE = analysis.MIN_TRIALS_FOR_IMPORTANCE
#: Where a trial's line crosses an axis whose dimension is inactive for it (below the range).
INACTIVE_Y = -0.14


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the non-dominated ``(params, metric)`` pairs (fewer parameters and a higher metric
    are better), sorted by parameters: :func:`neuromosaic_core.analysis.pareto_indices` with those
    directions (kept for callers of 0.1)."""
    return analysis.pareto_indices(points, minimize_x=True, maximize_y=True)


def parameter_importance(space: SearchSpace, trials: Sequence[Trial], metric: str, *, trees: int = 200,
                         seed: int = 0) -> list[tuple[str, float]]:
    """Which search dimensions explain ``metric``: a random forest (scikit-learn) fitted on the
    completed trials' encoded vectors (:func:`neuromosaic_core.analysis.design_matrix`), its
    impurity importances summed per dimension and normalised to 1, most important first. Empty with
    fewer than two trials or a constant metric (nothing to explain)."""
    data = analysis.design_matrix(space, trials, metric)
    if len(data) < 2 or float(np.ptp(data.y)) == 0.0:
        return []
    from sklearn.ensemble import RandomForestRegressor

    forest = RandomForestRegressor(n_estimators=trees, random_state=seed, n_jobs=1)
    forest.fit(data.x, data.y)
    return analysis.dimension_importance(data.owners, forest.feature_importances_)


def importance_ranking(space: SearchSpace, trials: Sequence[Trial], metric: str, *, trees: int = 200,
                       seed: int = 0) -> tuple[list[tuple[str, float]], str | None]:
    """``(ranking, reason)``: :func:`parameter_importance` over the dimensions active in the
    completed trials, or ``[]`` and one line saying why there is none (too few trials for the
    number of active dimensions, or a metric that does not vary)."""
    data = analysis.design_matrix(space, trials, metric)
    active = analysis.active_mask(space, [t.vector for t in data.trials]).any(axis=0)
    reason = analysis.importance_shortfall(len(data), int(active.sum()))
    if reason is not None:
        return [], reason
    ranking = parameter_importance(space, trials, metric, trees=trees, seed=seed)
    if not ranking:
        return [], f"{metric} does not vary over the {len(data)} completed trials: nothing to explain"
    names = {name for name, on in zip(space.names, active, strict=True) if on}
    return [(name, v) for name, v in ranking if name in names], None


def _direction_word(maximize: bool) -> str:
    return "higher" if maximize else "lower"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _curve_alpha(lines: int) -> float:
    """Opacity of one curve among ``lines``: solid for a few, faint for hundreds, so where many
    overlap reads darker instead of one solid block."""
    return min(0.8, max(0.08, 3.0 / math.sqrt(max(lines, 1))))


def has_curves(trials: Sequence[Trial]) -> bool:
    """Whether any trial recorded a learning curve (what :data:`LEARNING_CURVES_FILE` needs)."""
    return any(t.result is not None and len(t.result.curve) > 0 for t in trials)


@attrs.define
class MatplotlibVisualizer(Visualizer):
    """Writes the five PNGs of :data:`FILES` to ``out_dir`` (always all of them, see the README),
    then :data:`LEARNING_CURVES_FILE` when some trial has a learning curve."""

    settings: MatplotlibSettings = attrs.field(factory=MatplotlibSettings)

    def plot_performance_landscape(self, trials: Sequence[Trial], out_dir: Path, metric: str = "val_accuracy") -> list[Path]:
        return self.render(trials, out_dir, metric)

    def render(self, trials: Sequence[Trial], out_dir: Path, metric: str = "val_accuracy", *,
               space: SearchSpace | None = None, maximize: bool | None = None) -> list[Path]:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        trials = sorted(trials, key=lambda t: t.number)
        if self.settings.direction != "auto" or maximize is None:
            maximize = is_maximized(metric, self.settings.direction)
        if space is None:
            space = analysis.infer_space(t.vector for t in trials)
        importance = self._importance(trials, space, metric)  # one forest for both figures that use it
        figures = {
            HISTORY_FILE: self.draw_history(trials, metric, maximize),
            PARETO_FILE: self.draw_pareto(trials, metric, maximize),
            LANDSCAPE_FILE: self.draw_landscape(trials, space, metric, maximize),
            IMPORTANCE_FILE: self.draw_importance(trials, space, metric, importance=importance),
            PARALLEL_FILE: self.draw_parallel(trials, space, metric, maximize, importance=importance),
        }
        if has_curves(trials):
            figures[LEARNING_CURVES_FILE] = self.draw_learning_curves(trials, metric, maximize)
        paths = []
        for name, fig in figures.items():
            fig.savefig(out_dir / name, dpi=self.settings.dpi, format="png")
            paths.append(out_dir / name)
        return paths

    # -- figures -------------------------------------------------------------------------------

    def _importance(self, trials: Sequence[Trial], space: SearchSpace, metric: str) -> tuple[list[tuple[str, float]], str | None]:
        return importance_ranking(space, trials, metric, trees=self.settings.trees, seed=self.settings.seed)

    def _figure(self, ncols: int = 1, width: float | None = None, height: float | None = None) -> tuple[Figure, list[Axes]]:
        fig = Figure(figsize=(width or self.settings.width, height or self.settings.height), dpi=self.settings.dpi,
                     layout="constrained")
        FigureCanvasAgg(fig)
        return fig, [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]

    @staticmethod
    def _note(ax: Axes, text: str) -> None:
        ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=11, color="0.35")

    def draw_history(self, trials: Sequence[Trial], metric: str, maximize: bool) -> Figure:
        """The metric per trial number; failures as markers along the bottom; the best so far."""
        fig, (ax,) = self._figure()
        done = [(t.number, v) for t in trials if (v := metric_value(t, metric)) is not None]
        invalid = [t.number for t in trials if metric_value(t, metric) is None and t.status == TrialStatus.INVALID]
        failed = [t.number for t in trials if metric_value(t, metric) is None and t.status != TrialStatus.INVALID]

        if done:
            xs, ys = zip(*done, strict=True)
            ax.scatter(xs, ys, s=22, color="tab:blue", zorder=3, label=f"{metric} ({len(done)} completed)")
            best_xs, best_ys = list(xs), analysis.best_so_far(ys, maximize)
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
        ax.set_title(f"Search history: {metric} ({_direction_word(maximize)} is better)")
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best", fontsize=8)
        return fig

    def draw_pareto(self, trials: Sequence[Trial], metric: str, maximize: bool) -> Figure:
        """``pareto_y`` (default: the metric) against ``pareto_x`` (default: params) with the front
        marked, labelled with trial numbers and connected by a staircase. A positive ``x`` spanning
        more than two decades gets a log axis."""
        s = self.settings
        x_name = s.pareto_x
        y_name = s.pareto_y or metric
        minimize_x = not is_maximized(x_name, s.pareto_x_direction)
        if s.pareto_y_direction != "auto" or y_name != metric:
            maximize_y = is_maximized(y_name, s.pareto_y_direction)
        else:
            maximize_y = maximize
        fig, (ax,) = self._figure()
        pts: list[tuple[float, float]] = []
        labels: list[int] = []
        for t in trials:
            x, y = metric_value(t, x_name), metric_value(t, y_name)
            if x is not None and y is not None:
                pts.append((x, y))
                labels.append(t.number)

        xs = np.array([p[0] for p in pts])
        log_x = len(pts) > 0 and bool((xs > 0).all()) and xs.max() / xs.min() > 100
        if log_x:
            ax.set_xscale("log")
        if pts:
            front = analysis.pareto_indices(pts, minimize_x=minimize_x, maximize_y=maximize_y)
            on_front = set(front)
            rest = [pts[i] for i in range(len(pts)) if i not in on_front]
            if rest:
                ax.scatter(*zip(*rest, strict=True), s=22, color="tab:blue", alpha=0.6, label=f"trial ({len(rest)})")
            fx, fy = zip(*(pts[i] for i in front), strict=True)
            ax.step(fx, fy, where="post" if minimize_x else "pre", color="tab:red", linewidth=1.2, alpha=0.7, zorder=2)
            ax.scatter(fx, fy, s=40, color="tab:red", edgecolors="black", linewidths=0.6, zorder=3,
                       label=f"Pareto front ({len(front)})")
            for i in front:
                ax.annotate(f"#{labels[i]}", pts[i], textcoords="offset points", xytext=(4, 4), fontsize=7)
        else:
            self._note(ax, f"no completed trials with {x_name} and {y_name}")
        ax.set_xlabel(f"{x_name} (log scale)" if log_x else x_name)
        ax.set_ylabel(y_name)
        ax.set_title(f"Pareto front: {_direction_word(maximize_y)} {y_name}, "
                     f"{'smaller' if minimize_x else 'larger'} {x_name}")
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best", fontsize=8)
        return fig

    def draw_landscape(self, trials: Sequence[Trial], space: SearchSpace, metric: str, maximize: bool) -> Figure:
        """Every trial's vector projected to 2-D (``projection``): on the left a scatter coloured by
        the metric (trials without a value as grey crosses), on the right the metric interpolated
        over the plane (Gaussian-kernel smoothing) with the trials on top."""
        from neuromosaic_core.features import vectors_to_matrix

        fig, (scatter_ax, heat_ax) = self._figure(ncols=2, width=self.settings.width * 1.6)
        method = self.settings.projection
        vectors_matrix, _ = vectors_to_matrix(space, [t.vector for t in trials])
        in_space = ~np.isnan(vectors_matrix).all(axis=1) if len(trials) else np.zeros(0, dtype=bool)
        kept = [t for t, ok in zip(trials, in_space, strict=True) if ok]
        coords = analysis.project_2d(vectors_matrix[in_space], method, seed=self.settings.seed)
        values = [metric_value(t, metric) for t in kept]
        has = np.array([v is not None for v in values], dtype=bool)
        cmap = "viridis" if maximize else "viridis_r"
        axis_names = ("PC 1", "PC 2") if method == "pca" else ("projection 1", "projection 2")
        for ax in (scatter_ax, heat_ax):
            ax.set_xlabel(axis_names[0])
            ax.set_ylabel(axis_names[1])
        scatter_ax.set_title(f"Architectures ({method.upper() if method == 'pca' else method}), coloured by {metric}")
        heat_ax.set_title(f"{metric} interpolated ({_direction_word(maximize)} is better)")
        if has.any():
            z = np.array([v for v in values if v is not None])
            points = scatter_ax.scatter(coords[has, 0], coords[has, 1], c=z, cmap=cmap, s=28, edgecolors="black",
                                        linewidths=0.3, zorder=3, label=f"{metric} ({int(has.sum())})")
            fig.colorbar(points, ax=scatter_ax, label=metric)
            gx, gy, grid = analysis.smooth_grid(coords[has], z)
            image = heat_ax.imshow(grid, origin="lower", extent=(gx[0], gx[-1], gy[0], gy[-1]), aspect="auto",
                                   cmap=cmap, vmin=z.min(), vmax=z.max())
            heat_ax.scatter(coords[has, 0], coords[has, 1], s=8, color="white", edgecolors="black", linewidths=0.3)
            fig.colorbar(image, ax=heat_ax, label=metric)
        else:
            self._note(scatter_ax, "no completed trials" if trials else "no trials")
            self._note(heat_ax, "nothing to interpolate")
        if (~has).any():
            scatter_ax.scatter(coords[~has, 0], coords[~has, 1], marker="x", s=24, color="0.55", zorder=2,
                               label=f"no value ({int((~has).sum())})")
        if scatter_ax.get_legend_handles_labels()[0]:
            scatter_ax.legend(loc="best", fontsize=7)
        return fig

    def draw_importance(self, trials: Sequence[Trial], space: SearchSpace, metric: str, *,
                        importance: tuple[list[tuple[str, float]], str | None] | None = None) -> Figure:
        """A horizontal bar per active search dimension, most important at the top, at most
        ``dimensions`` bars. With too few completed trials for a ranking to mean anything (see
        :func:`importance_ranking`) a short figure says so, and why, instead of ranking noise."""
        ranking, reason = importance if importance is not None else self._importance(trials, space, metric)
        if not ranking:
            fig, (ax,) = self._figure(height=min(self.settings.height, 1.2))  # a notice, not an empty chart
            ax.set_axis_off()
            ax.set_title(f"Which dimensions explain {metric}: not ranked", fontsize=10)
            ax.text(0.5, 0.5, textwrap.fill(reason or "no importance", 90), transform=ax.transAxes, ha="center",
                    va="center", fontsize=9, color="0.25")
            return fig
        fig, (ax,) = self._figure()
        shown, rest = ranking[:self.settings.dimensions], ranking[self.settings.dimensions:]
        names = [name for name, _ in shown][::-1]  # barh draws bottom-up: most important on top
        ax.barh(names, [v for _, v in shown][::-1], color="tab:blue")
        ax.set_xlim(0, max(v for _, v in shown) * 1.1 or 1)
        ax.set_xlabel(f"importance for {metric} (random forest, sums to 1)"
                      + (f"; the other {len(rest)} together: {sum(v for _, v in rest):.2f}" if rest else ""))
        ax.set_ylabel("search dimension")
        scope = (f"top {len(shown)} of {_plural(len(ranking), 'active dimension')}" if rest
                 else _plural(len(ranking), "active dimension"))
        ax.set_title(f"Which dimensions explain {metric} ({scope}, {_plural(len(analysis.design_matrix(space, trials, metric)), 'trial')})")
        ax.grid(True, axis="x", alpha=0.3)
        return fig

    def draw_parallel(self, trials: Sequence[Trial], space: SearchSpace, metric: str, maximize: bool, *,
                      importance: tuple[list[tuple[str, float]], str | None] | None = None) -> Figure:
        """One polyline per completed trial across the search dimensions (each axis scaled to its
        range, choices spread evenly), coloured by the metric; the best trial drawn thick in red.

        Only dimensions active for some completed trial get an axis, at most ``dimensions`` of
        them: the most important when there are trials enough to rank them, else those active for
        the most trials (:func:`neuromosaic_core.analysis.plotted_dimensions`). A line crosses an
        axis whose dimension is inactive for its trial at the ``inactive`` mark below the range."""
        done = [(t, v) for t in trials if (v := metric_value(t, metric)) is not None]
        vectors = [t.vector for t, _ in done]
        ranking, _ = importance if importance is not None else self._importance(trials, space, metric)
        names = analysis.plotted_dimensions(space, vectors, ranking or None, limit=self.settings.dimensions)
        active = analysis.active_mask(space, vectors)
        n_active = int(active.any(axis=0).sum())
        positions, ticks = analysis.dimension_positions(space, vectors)
        columns = [space.names.index(n) for n in names]
        positions, active, ticks = positions[:, columns], active[:, columns], [ticks[j] for j in columns]
        positions = np.where(active, positions, INACTIVE_Y)
        if done:  # an axis no trial fits (nan throughout) would hide every line: leave it out
            fits = ~np.isnan(positions).all(axis=0)
            positions, active = positions[:, fits], active[:, fits]
            ticks = [m for m, ok in zip(ticks, fits, strict=True) if ok]
            names = [n for n, ok in zip(names, fits, strict=True) if ok]
        keep = ~np.isnan(positions).any(axis=1) if len(done) else np.zeros(0, dtype=bool)
        fig, (ax,) = self._figure(width=max(self.settings.width, 1.3 * len(names) + 2))
        xs = np.arange(len(names))
        if keep.any() and len(names):
            values = np.array([v for (_, v), ok in zip(done, keep, strict=True) if ok])
            rows = positions[keep]
            lines = LineCollection([np.column_stack([xs, row]) for row in rows], cmap="viridis" if maximize else "viridis_r",
                                   linewidths=1.2, alpha=0.8)
            lines.set_array(values)
            ax.add_collection(lines)
            fig.colorbar(lines, ax=ax, label=metric)
            best = int(np.argmax(values) if maximize else np.argmin(values))
            best_number = [t.number for (t, _), ok in zip(done, keep, strict=True) if ok][best]
            ax.plot(xs, rows[best], color="tab:red", linewidth=2.5, zorder=3, label=f"best (#{best_number})")
            ax.legend(loc="upper right", fontsize=7)
        else:
            self._note(ax, "no completed trials in the search space")
        for j, (x, marks) in enumerate(zip(xs, ticks, strict=True)):
            ax.axvline(x, color="0.4", linewidth=0.8, zorder=1)
            for y, label in marks:
                ax.text(x + 0.03, y, label, fontsize=7, va="center", ha="left", color="0.2")
            if len(keep) and not active[keep, j].all():
                ax.text(x + 0.03, INACTIVE_Y, "inactive", fontsize=7, va="center", ha="left", color="0.45", style="italic")
        ax.set_xticks(xs, names, fontsize=8, rotation=15 if any(len(n) > 12 for n in names) else 0)
        ax.set_xlim(-0.2, max(len(names) - 1, 0) + 0.6)
        ax.set_ylim(INACTIVE_Y - 0.06, 1.05)
        ax.set_yticks([])
        ax.set_ylabel("position in the dimension's range")
        if len(names) < n_active:
            how = "the most important" if ranking else "those active in the most trials"
            scope = f"{len(names)} of {n_active} active dimensions ({how})"
        else:
            scope = f"all {_plural(n_active, 'active dimension')}"
        left_out = len(space) - n_active
        if left_out:
            scope += f"; {left_out} inactive in every trial left out"
        ax.set_title(f"Parallel coordinates of the completed trials, coloured by {metric}" + (f"\n{scope}" if done else ""),
                     fontsize=10)
        return fig

    def draw_learning_curves(self, trials: Sequence[Trial], metric: str, maximize: bool) -> Figure:
        """One line per trial with a learning curve: its validation score (``val_accuracy``, or
        ``val_rmse`` for regression) after each epoch. Trials trained to their end are coloured by
        their best score; pruned ones (a scheduler stopped them early) are thin and grey, ending
        where they stopped, with a mark there; the best trial is drawn thick in red. Lines get
        fainter as there are more of them, so hundreds stay readable.

        The best is the full trial best on the searched ``metric`` (``maximize``), else on its
        curve; a pruned trial only when no trial ran to its end."""
        drawn = [t for t in trials if t.result is not None and len(t.result.curve) > 0]
        fig, (ax,) = self._figure()
        if not drawn:
            self._note(ax, "no learning curves recorded")
            ax.set_xlabel("epoch")
            return fig
        score = Counter(results.curve_metric(t) for t in drawn).most_common(1)[0][0]
        higher = score != "val_rmse"  # an accuracy rises, an RMSE falls
        pruned = [t for t in drawn if t.result.pruned]  # type: ignore[union-attr]
        full = [t for t in drawn if not t.result.pruned]  # type: ignore[union-attr]

        def line(t: Trial) -> np.ndarray:
            values = np.asarray(t.result.curve, dtype=float)  # type: ignore[union-attr]
            return np.column_stack([np.arange(1, len(values) + 1), values])

        def curve_best(t: Trial) -> float:
            values = [v for v in t.result.curve if math.isfinite(v)]  # type: ignore[union-attr]
            if not values:
                return -math.inf if higher else math.inf
            return max(values) if higher else min(values)

        alpha = _curve_alpha(len(drawn))
        if pruned:
            ax.add_collection(LineCollection([line(t) for t in pruned], colors=PRUNED_COLOUR, linewidths=0.8,
                                             alpha=alpha, zorder=1))
            ends = np.array([line(t)[-1] for t in pruned])
            ax.scatter(ends[:, 0], ends[:, 1], marker="|", s=30, color=PRUNED_COLOUR, alpha=min(1.0, alpha * 1.5),
                       zorder=2, label=f"pruned ({len(pruned)}); | marks where it stopped")
        if full:
            lines = LineCollection([line(t) for t in full], cmap="viridis" if higher else "viridis_r",
                                   linewidths=1.2, alpha=alpha, zorder=2)
            lines.set_array(np.array([curve_best(t) for t in full]))
            lines.set_label(f"trained to the end ({len(full)})")
            ax.add_collection(lines)
            fig.colorbar(lines, ax=ax, label=f"best {score} of the trial")
            single = [t for t in full if len(t.result.curve) == 1]  # type: ignore[union-attr]
            if single:  # a one-epoch curve is a point, which a line cannot show
                ax.scatter([1] * len(single), [t.result.curve[0] for t in single],  # type: ignore[union-attr]
                           c=[curve_best(t) for t in single], cmap=lines.get_cmap(), norm=lines.norm, s=12, zorder=3)
        pool = full or pruned
        ranked = [(t, v) for t in pool if (v := metric_value(t, metric)) is not None]
        if ranked:
            best = (max if maximize else min)(ranked, key=lambda tv: tv[1])[0]
        else:
            best = (max if higher else min)(pool, key=curve_best)
        ax.plot(*line(best).T, color="tab:red", linewidth=2.4, marker="o", markersize=4, markevery=[-1], zorder=4,
                label=f"best (#{best.number}{', pruned' if best.result.pruned else ''})")  # type: ignore[union-attr]
        ax.autoscale_view()
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"{score} (validation, {_direction_word(higher)} is better)")
        ax.set_title(f"Learning curves: {score} per epoch ({_plural(len(full), 'trial')} trained to the end, "
                     f"{len(pruned)} pruned)", fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best", fontsize=7)
        return fig
