"""What a person watching a search sees: a live progress line and a table of the best architectures."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from neuromosaic_core.model import Trial
from neuromosaic_core.results import fidelity_label


class SearchProgress:
    """``trial i/N · best 0.953 · failed 1 invalid 0 · 0:01:12`` on stderr, refreshed as trials
    finish; with a scheduler ``· pruned 5`` (completed trials stopped early) after the failures."""

    def __init__(self, total: int, metric: str, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.metric = metric
        self.progress = Progress(
            TextColumn("[bold]trial"),
            MofNCompleteColumn(),
            BarColumn(),
            TextColumn("best {task.fields[best]}"),
            TextColumn("failed {task.fields[failed]} invalid {task.fields[invalid]}{task.fields[pruned]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
        )
        self.task_id = self.progress.add_task("search", total=total, best="-", failed=0, invalid=0, pruned="")

    def __enter__(self) -> SearchProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def update(self, completed: int, failed: int, invalid: int, best: float | None, pruned: int | None = None) -> None:
        """``pruned`` (with a scheduler): how many of the completed trials stopped early."""
        best_text = f"{self.metric}={best:.4f}" if best is not None else "-"
        self.progress.update(self.task_id, completed=completed, failed=failed, invalid=invalid, best=best_text,
                             pruned=f" · pruned {pruned}" if pruned is not None else "")


def best_table(trials: Sequence[Trial], metric: str, title: str) -> Table:
    """The final table: rank, trial, family, accuracies, parameters and the layers."""
    table = Table(title=title, title_justify="left")
    # the test column that matches the metric: val_rmse -> test_rmse (a regression task)
    test = "test_" + metric[4:] if metric.startswith("val_") and metric != "val_accuracy" else "test_accuracy"
    # A scheduler stopped some early: say how far each trained, so a pruned row is not read as final.
    pruned = any(t.result is not None and t.result.pruned for t in trials)
    columns = [("#", "right"), ("trial", "right"), ("family", "left"), (metric, "right"), (test, "right"),
               ("params", "right"), *([("epochs", "right")] if pruned else []), ("architecture", "left")]
    for column, justify in columns:
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for rank, trial in enumerate(trials, 1):
        m = trial.result.metrics if trial.result else {}
        spec = trial.spec
        epochs = [fidelity_label(trial)] if pruned else []
        table.add_row(
            str(rank),
            str(trial.number),
            spec.family if spec else "-",
            f"{m.get(metric, float('nan')):.4f}",
            f"{m[test]:.4f}" if test in m else "-",  # a lookup table may have none
            f"{int(m['params']):,}" if 'params' in m else "-",
            *epochs,
            spec.describe().split(": ", 1)[-1] if spec else "-",
        )
    return table


def print_summary(trials: Sequence[Trial], metric: str, title: str, console: Console | None = None) -> None:
    console = console or Console()
    if not trials:
        console.print(f"{title}: no completed trials.")
        return
    console.print(best_table(trials, metric, title))
