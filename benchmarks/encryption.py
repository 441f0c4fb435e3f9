"""Encryption at rest (issue 19): what it adds to each trial, and how long a key rotation takes.

Per trial, the orchestrator's own work that encryption changes, on and off, on a SQLite file in a
temporary directory: the two ``save_trial`` calls of the search loop (stored running with its code
and code-generation record, then completed), the code file written before the trial and, with
encryption on, the code and weights files sealed when it ends (:func:`seal_trial_files`). The
trial itself (training) is not run: it is the same either way, and takes seconds (about 15 s per
trial for ``task=digits training.epochs=1`` on this machine), so the difference is the overhead.
Weights files of two sizes: 10,000 parameters (40 KB) and 1,000,000 (4 MB).

Rekey: ``--rekey-trials`` trials (default 10,000) stored encrypted under one key (code 1.5 KB and
a code-generation record of two attempts with prompt and response, as ``make_codegen``), then
:func:`rekey_database` re-encrypts them all under a new key (batches of 500 per transaction).

    python benchmarks/encryption.py
    python benchmarks/encryption.py --trials 100 --rekey-trials 2000

Not run by CI.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from neuromosaic_storage_sql.repository import SqlResultsDB

from neuromosaic_core.encryption import EncryptedResultsDB, Keyring, generate_key, parse_key, rekey_database, seal_trial_files
from neuromosaic_core.model import Experiment, TrialResult, TrialStatus
from neuromosaic_core.testing.storage import make_codegen, make_trial

CODE = ("import torch\nimport torch.nn as nn\n\n\nclass Net(nn.Module):\n" + "    # layer\n" * 120)[:1500]


def per_trial(directory: Path, encrypt: bool, trials: int, weights_bytes: int) -> list[float]:
    keys = Keyring(parse_key(generate_key(), "k"))
    db = EncryptedResultsDB(SqlResultsDB(f"sqlite:///{directory / 'r.db'}"), keys, encrypt=encrypt)
    db.create_experiment(Experiment("e", "digits"))
    blob = os.urandom(weights_bytes)
    (directory / "code").mkdir()
    (directory / "weights").mkdir()
    times = []
    for n in range(1, trials + 1):
        trial = make_trial("e", n, codegen=make_codegen(f"k{n}"))
        trial.code = CODE
        code_path = directory / "code" / f"trial-{n:04d}.py"
        weights_path = directory / "weights" / f"trial-{n:04d}.pt"
        weights_path.write_bytes(blob)  # what the runner leaves (not timed: the same either way)
        started = time.perf_counter()
        code_path.write_text(trial.code)
        trial.status = TrialStatus.RUNNING
        db.save_trial(trial)
        trial.status, trial.result = TrialStatus.COMPLETED, TrialResult({"val_accuracy": n / trials}, None, str(weights_path))
        if encrypt:
            seal_trial_files(keys, code_path, weights_path)
        db.save_trial(trial)
        times.append(time.perf_counter() - started)
    db.close()
    return times


def rekey(directory: Path, n: int) -> tuple[float, float]:
    old, new = parse_key(generate_key(), "old"), parse_key(generate_key(), "new")
    db = EncryptedResultsDB(SqlResultsDB(f"sqlite:///{directory / 'rekey.db'}"), Keyring(old), encrypt=True)
    db.create_experiment(Experiment("e", "digits"))
    trials = []
    for i in range(1, n + 1):
        trial = make_trial("e", i, status=TrialStatus.COMPLETED, codegen=make_codegen(f"k{i}"),
                           result=TrialResult({"val_accuracy": i / n}))
        trial.code = CODE
        trials.append(trial)
    db.save_trials(trials)
    db.close()
    size = (directory / "rekey.db").stat().st_size / 1e6
    inner = SqlResultsDB(f"sqlite:///{directory / 'rekey.db'}")
    started = time.perf_counter()
    counts = rekey_database(inner, Keyring(new, [old]))
    elapsed = time.perf_counter() - started
    inner.close()
    assert counts.trials == n
    return elapsed, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=200, help="trials per per-trial measurement (default 200)")
    parser.add_argument("--rekey-trials", type=int, default=10_000, help="trials to rekey (default 10,000)")
    args = parser.parse_args()
    print(f"# {platform.python_version()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    for weights in (40_000, 4_000_000):
        row = []
        for encrypt in (False, True):
            with tempfile.TemporaryDirectory() as tmp:
                times = per_trial(Path(tmp), encrypt, args.trials, weights)
            row.append(statistics.median(times) * 1000)
        print(f"per trial, weights {weights / 1e6:g} MB: off {row[0]:.2f} ms, on {row[1]:.2f} ms, "
              f"overhead {row[1] - row[0]:.2f} ms (median of {args.trials})")
    with tempfile.TemporaryDirectory() as tmp:
        elapsed, size = rekey(Path(tmp), args.rekey_trials)
    print(f"rekey {args.rekey_trials:,} trials ({size:.1f} MB database): {elapsed:.1f} s "
          f"({args.rekey_trials / elapsed:,.0f} trials/s)")


if __name__ == "__main__":
    main()
