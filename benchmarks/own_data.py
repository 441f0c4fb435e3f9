"""What the ``files`` task costs on large data: load time and peak memory of reading and checking
a large ``.npz`` and a large CSV, writing the run's data file, and the memory one trial holds.

    python benchmarks/own_data.py [--npz-mb 1024] [--csv-mb 200] [--dir DIR]

Each step runs in a fresh subprocess, so its peak resident memory (``ru_maxrss``) is its own.
A trial's memory is sampled from ``/proc/PID/status`` while the real harness trains one epoch
on the run's data file: its anonymous memory (``RssAnon``, what the trial holds of its own)
against the data file's size shows whether it holds a copy of the data; the mapped file's pages
(``RssFile``) are the page cache's, shared by every trial that maps the file. Results go to stdout as a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STEP = r"""
import json, resource, sys, time
from neuromosaic_task_files import FilesSettings
from neuromosaic_task_files.task import FilesTask
settings = FilesSettings(**json.loads(sys.argv[1]))
start = time.perf_counter()
task = FilesTask(settings)
read = time.perf_counter() - start
start = time.perf_counter()
path = task.prepare_data(sys.argv[2])
write = time.perf_counter() - start
print(json.dumps({"read_s": read, "write_s": write, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "data": str(path), "shape": list(task.input_shape), "classes": task.num_classes}))
"""


NET = """import torch
import torch.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear({width}, 64), nn.ReLU(), nn.Linear(64, {classes}))

    def forward(self, x):
        return self.body(x)
"""


def make_npz(path: Path, megabytes: int) -> None:
    import numpy as np

    features = 128
    rows = megabytes * 1024 * 1024 // (features * 4)
    x = np.lib.format.open_memmap(path.with_suffix(".x.npy"), mode="w+", dtype=np.float32, shape=(rows, features))
    rng = np.random.default_rng(0)
    for i in range(0, rows, 100_000):
        x[i : i + 100_000] = rng.standard_normal((min(100_000, rows - i), features), dtype=np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    np.savez(path, x=x, y=y)  # streams the memory-mapped array into the zip
    del x
    path.with_suffix(".x.npy").unlink()


def make_csv(path: Path, megabytes: int) -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    cities = np.array(["lyon", "paris", "nice", "lille"])
    with open(path, "w") as fh:
        fh.write(",".join([f"f{i}" for i in range(16)] + ["city", "label"]) + "\n")
        while fh.tell() < megabytes * 1024 * 1024:
            block = rng.standard_normal((20_000, 16))
            city = rng.integers(0, 4, 20_000)
            label = (block[:, 0] + (city == 1) > 0.5)
            lines = [",".join(f"{v:.5f}" for v in row) + f",{cities[c]},{'yes' if y else 'no'}"
                     for row, c, y in zip(block, city, label, strict=True)]
            fh.write("\n".join(lines) + "\n")


def step(settings: dict, out: Path) -> dict:
    proc = subprocess.run([sys.executable, "-c", STEP, json.dumps(settings), str(out)], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def trial_memory(data: str, shape: list[int], classes: int, work: Path) -> dict:
    """USS and PSS peaks of one harness run (one epoch, batch 1024) on ``data``."""
    from neuromosaic_core.interfaces import TrialJob
    from neuromosaic_core.model import TrainingSettings, converter

    code = work / "net.py"
    width = 1
    for d in shape:
        width *= d
    code.write_text(NET.format(width=width, classes=classes))
    job = TrialJob(trial_id=1, experiment="bench", code_path=str(code), data_path=data, result_path=str(work / "result.json"),
                   input_shape=tuple(shape), num_classes=classes, training=TrainingSettings(epochs=1, batch_size=1024, patience=1))
    (work / "job.json").write_text(json.dumps(converter.unstructure(job)))
    proc = subprocess.Popen([sys.executable, "-m", "neuromosaic_core.harness", str(work / "job.json")],
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL)
    anon = file_backed = 0
    start = time.perf_counter()
    while proc.poll() is None:
        try:  # anonymous memory is what the trial holds of its own; file-backed is the shared page cache
            status = Path(f"/proc/{proc.pid}/status").read_text()
            fields = {line.split(":")[0]: int(line.split()[1]) for line in status.splitlines() if line.startswith("Rss")}
            anon, file_backed = max(anon, fields.get("RssAnon", 0)), max(file_backed, fields.get("RssFile", 0))
        except (OSError, ValueError, IndexError):
            pass
        time.sleep(0.1)
    result = json.loads((work / "result.json").read_text())
    return {"anon_mb": anon / 1024, "file_mb": file_backed / 1024, "seconds": time.perf_counter() - start,
            "ok": result.get("error") is None, "error": result.get("error")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--npz-mb", type=int, default=1024)
    parser.add_argument("--csv-mb", type=int, default=200)
    parser.add_argument("--dir", default=None, help="where the data is made (default: a temporary folder)")
    parser.add_argument("--no-trial", action="store_true", help="skip the trial memory measurement")
    args = parser.parse_args()
    root = Path(args.dir or tempfile.mkdtemp(prefix="neuromosaic-own-data-"))
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for kind, size, make, settings in (("npz", args.npz_mb, make_npz, {}), ("csv", args.csv_mb, make_csv, {"label": "label"})):
        source = root / f"big.{kind}"
        if not source.exists():
            make(source, size)
        shutil.rmtree(root / f"run-{kind}", ignore_errors=True)  # a run's data file is reused when present: time a fresh one
        measured = step({"path": str(source), **settings}, root / f"run-{kind}")
        data_mb = os.path.getsize(measured["data"]) / 2**20
        row = {"input": f"{kind} {os.path.getsize(source) / 2**20:.0f} MB", "read_s": measured["read_s"],
               "write_s": measured["write_s"], "peak_mb": measured["peak_mb"], "data_mb": data_mb}
        if not args.no_trial:
            row.update(trial_memory(measured["data"], measured["shape"], measured["classes"], root))
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    print("| input | read + check (s) | write run data (s) | peak RSS of reading (MB) | run data file (MB) "
          "| one trial, 1 epoch (s) | trial's own memory, peak RssAnon (MB) | shared page cache, peak RssFile (MB) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['input']} | {r['read_s']:.1f} | {r['write_s']:.1f} | {r['peak_mb']:.0f} | {r['data_mb']:.0f} | "
              f"{r.get('seconds', float('nan')):.0f} | {r.get('anon_mb', float('nan')):.0f} | {r.get('file_mb', float('nan')):.0f} |")


if __name__ == "__main__":
    main()
