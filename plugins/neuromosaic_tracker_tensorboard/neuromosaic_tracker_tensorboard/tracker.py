"""The ``tensorboard`` tracker: TensorBoard event files, one run (folder) per trial.

Layout under ``tracker.tensorboard.log_dir`` (empty: ``<run dir>/tensorboard``; else
``<log_dir>/<experiment name>``)::

    trial-0001/events.out.tfevents...   hparams (the architecture vector, ``spec``, ``spec_family``)
                                        and scalars: each metric at step = the epochs trained,
                                        ``learning_curve`` at step = epoch
    events.out.tfevents...              the HParams dashboard's experiment: every hparam and
                                        metric seen (written at the end)
    neuromosaic-tracker.json            what was logged already, so a resumed search adds to it

Written with TensorBoard's own event writer and protocol buffers (no TensorFlow, no torch);
``tensorboard --logdir <that folder>`` shows it. Every call runs on the tracker's own thread.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
from pathlib import Path
from typing import Any

from neuromosaic_core.trackers import TrackedExperiment, TrackedSummary, TrackedTrial, Tracker

STATE = "neuromosaic-tracker.json"


def _hparam(value: Any) -> bool | int | float | str:
    """A value TensorBoard's hparams accept (bool, number or string)."""
    return value if isinstance(value, (bool, int, float, str)) else str(value)


class TensorBoardTracker(Tracker):
    """Records a search as TensorBoard event files (see the module's docstring)."""

    def __init__(self, settings: Any) -> None:
        self.s = settings
        self.root: Path | None = None
        self.state: dict[str, Any] = {"curve_epochs": {}, "hparams": [], "metrics": []}
        self._files: dict[Path, Path] = {}  # folder -> the event file this process appends to

    def experiment_started(self, experiment: TrackedExperiment) -> None:
        from tensorboard.summary.writer.record_writer import RecordWriter  # noqa: F401 - fail here if missing

        self.root = Path(self.s.log_dir) / experiment.name if self.s.log_dir else experiment.run_dir / "tensorboard"
        self.root.mkdir(parents=True, exist_ok=True)
        state = self.root / STATE
        if state.exists():  # a resumed search
            self.state = {**self.state, **json.loads(state.read_text())}

    def _save_state(self) -> None:
        assert self.root is not None
        (self.root / STATE).write_text(json.dumps(self.state))

    def _write(self, folder: Path, summaries: list[tuple[int, Any]]) -> None:
        """Append events to the folder's event file (one per folder and process, as TensorBoard's
        own writers name them). Written here directly: the tracker's thread is already off the
        search loop, and ``EventFileWriter`` would start a thread of its own per file."""
        from tensorboard.compat.proto import event_pb2
        from tensorboard.summary.writer.record_writer import RecordWriter

        now = time.time()
        path = self._files.get(folder)
        if path is None:
            folder.mkdir(parents=True, exist_ok=True)
            path = self._files[folder] = folder / f"events.out.tfevents.{int(now):010d}.{socket.gethostname()}.{os.getpid()}.0"
        with path.open("ab") as file:
            writer = RecordWriter(file)
            if file.tell() == 0:
                writer.write(event_pb2.Event(wall_time=now, file_version="brain.Event:2").SerializeToString())
            for step, summary in summaries:
                writer.write(event_pb2.Event(wall_time=now, step=step, summary=summary).SerializeToString())

    def trial_finished(self, trial: TrackedTrial) -> None:
        if self.root is None:
            return
        from tensorboard.compat.proto import summary_pb2
        from tensorboard.plugins.hparams import summary_v2

        def scalar(tag: str, value: float) -> Any:
            return summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=float(value))])

        name = f"trial-{trial.number:04d}"
        key = str(trial.number)
        summaries: list[tuple[int, Any]] = []
        logged = int(self.state["curve_epochs"].get(key, -1))
        if logged < 0:  # the trial's first record: its hparams
            hparams = {str(k): _hparam(v) for k, v in trial.vector.items()}
            if trial.spec is not None:
                hparams.update(spec=trial.spec_summary, spec_family=trial.spec.family)
            summaries.append((0, summary_v2.hparams_pb(hparams, trial_id=name)))
            self.state["hparams"] = sorted(set(self.state["hparams"]) | set(hparams))
            logged = 0
        step = trial.fidelity if trial.fidelity is not None else len(trial.curve)
        numbers = {k: v for k, v in trial.metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        summaries += [(step, scalar(k, v)) for k, v in numbers.items()]
        summaries += [(epoch, scalar("learning_curve", v)) for epoch, v in enumerate(trial.curve, start=1)
                      if epoch > logged and not math.isnan(v)]
        self.state["metrics"] = sorted(set(self.state["metrics"]) | set(numbers) | ({"learning_curve"} if trial.curve else set()))
        self.state["curve_epochs"][key] = max(logged, len(trial.curve))
        self._write(self.root / name, summaries)
        self._save_state()

    def experiment_finished(self, end: TrackedSummary) -> None:
        if self.root is None:
            return
        from tensorboard.plugins.hparams import summary_v2

        config = summary_v2.hparams_config_pb([summary_v2.HParam(h) for h in self.state["hparams"]],
                                              [summary_v2.Metric(m) for m in self.state["metrics"]])
        self._write(self.root, [(0, config)])
