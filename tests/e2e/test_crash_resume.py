"""Crash safety: SIGKILL a real search at random moments, resume it each time, and check the database.

The CLI runs as a user runs it (a subprocess, real plugins, real SQLite, real training). Each launch
is killed at a moment drawn from a seeded ``random.Random``, in one of four phases:

* ``startup``: a delay after launch (imports, Hydra, plugin loading, opening the database, resume);
* ``searching``: just after the search loop starts (suggestion, code generation, the ``running`` rows);
* ``running``: while this launch's trials train (the harness processes are alive);
* ``completion``: just after this launch stored a completed trial (strategy update, the next
  suggestion and its code, the next ``running`` row, the other worker's result).

Most kills are a hard crash: SIGKILL to the CLI's process group and to the trial processes (a machine
crash takes everything; the trial processes start their own sessions, so they are found by command line
and killed too). A few kills hit only the orchestrator process: its trial processes must notice and exit
on their own (the harness watches its parent). After the kills the same command runs to completion.

Checked: nothing completed is ever lost, exactly ``search.trials`` trials complete, no architecture is
trained and counted twice nor proposed again (the trials complete ``search.trials`` distinct
architectures), interrupted trials are re-run in place (even when a resume dies before
re-launching them), no trial process outlives its orchestrator, and the database is intact.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds trial processes in /proc")]

SEED = 1729
TRIALS = 12
NAME = "crash-resume"
CODE = "import sys; from neuromosaic_core.cli import main; sys.argv[0] = 'neuromosaic'; main()"
#: ``runner.mode=fresh``: the orphan checks look for trial-harness processes, which only a fresh
#: trial has (a pooled trial is a fork of its warm worker; the runner's own tests kill those).
ARGS = ["task=digits", "training.epochs=2", "training.patience=1", "visualizers=[]", "runner.workers=2",
        "runner.mode=fresh", f"search.trials={TRIALS}", f"experiment.name={NAME}"]
#: Twelve kills: three per phase, in a seeded order; three of the kills during training hit only the
#: orchestrator process, the rest the whole process tree.
PHASES = ["startup"] * 3 + ["searching"] * 3 + ["running"] * 3 + ["completion"] * 3
ORCHESTRATOR_ONLY = 3
VALID = {"completed", "failed", "invalid", "interrupted"}
EVENT_TIMEOUT = 60.0


def environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("NEUROMOSAIC_")}


def trial_rows(db: Path) -> list[tuple[int, int, str, str]]:
    """``(id, number, status, vector)`` of the experiment's trials; [] before the tables exist."""
    if not db.exists():
        return []
    conn = sqlite3.connect(db, timeout=10)
    try:
        return conn.execute(
            "select t.id, t.number, t.status, t.vector from trials t join experiments e on t.experiment_id = e.id "
            "where e.name = ? order by t.id", (NAME,)
        ).fetchall()
    except sqlite3.OperationalError as exc:  # no tables yet: the first launch died before creating them
        if "no such table" in str(exc):
            return []
        raise
    finally:
        conn.close()


def completed(rows: list[tuple[int, int, str, str]]) -> int:
    return sum(status == "completed" for _, _, status, _ in rows)


def harness_processes(roots: tuple[str, ...]) -> dict[int, dict[str, int | str]]:
    """Live trial-harness processes whose job file lies under one of ``roots``: pid -> ppid, pgid, state, job.
    Matching on our own temporary directory means no other process is ever touched."""
    found: dict[int, dict[str, int | str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        text = [a.decode(errors="replace") for a in argv]
        if "neuromosaic_core.harness" not in text or not any(a.startswith(roots) for a in text):
            continue
        state, ppid, pgid = stat[stat.rindex(")") + 2:].split()[:3]
        if state in ("Z", "X"):
            continue
        job = next(a for a in text if a.startswith(roots))
        found[int(entry.name)] = {"ppid": int(ppid), "pgid": int(pgid), "state": state, "job": job}
    return found


def kill_harnesses(roots: tuple[str, ...], timeout: float = 10.0) -> list[int]:
    """SIGKILL the process group of every trial harness left under ``roots``; wait until none is alive."""
    killed: list[int] = []
    deadline = time.monotonic() + timeout
    while procs := harness_processes(roots):
        assert time.monotonic() < deadline, f"trial processes survive SIGKILL: {procs}"
        for pid, info in procs.items():
            try:
                os.killpg(int(info["pgid"]), signal.SIGKILL)
            except ProcessLookupError:
                pass
            killed.append(pid)
        time.sleep(0.05)
    return sorted(set(killed))


def wait_for(proc: subprocess.Popen, condition, timeout: float = EVENT_TIMEOUT) -> bool:
    """Poll ``condition`` until it holds (True) or the process exits (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.02)
    raise AssertionError(f"no event within {timeout:g} s")


def test_sigkill_at_random_moments_then_resume_loses_and_duplicates_nothing(tmp_path):
    kill_and_resume(tmp_path, ARGS, PHASES, ORCHESTRATOR_ONLY)


#: With ASHA (rungs at 1, 3 and 9 epochs): trials pause, are promoted and train on from checkpoints
#: between the kills. Fewer kills: the phases that land between segments are what this adds.
ASHA_ARGS = [a for a in ARGS if not a.startswith(("training.epochs", "training.patience"))] + [
    "scheduler=asha", "scheduler.min_epochs=1", "training.epochs=9", "training.patience=9"]
ASHA_PHASES = ["startup", "searching", "running", "running", "completion", "completion"]


def test_sigkill_during_an_asha_search_resumes_between_segments_without_losing_a_result(tmp_path):
    pytest.importorskip("neuromosaic_scheduler_asha", reason="needs the asha scheduler plugin (requirements.txt)")
    db, run_dir, report = kill_and_resume(tmp_path, ASHA_ARGS, ASHA_PHASES, 1)
    with closing(sqlite3.connect(db)) as conn:
        rows = conn.execute("select t.number, t.curve, t.fidelity, t.pruned, t.metrics from trials t join experiments e "
                            "on t.experiment_id = e.id where e.name = ? and t.status = 'completed'", (NAME,)).fetchall()
    for number, curve, fidelity, pruned, metrics in rows:
        checkpoint = run_dir / "trials" / f"trial-{number:04d}" / "checkpoint.pt"
        if pruned:  # paused at a rung: the curve to there, and the checkpoint to be promoted from
            assert fidelity in (1, 3) and len(json.loads(curve)) == fidelity == json.loads(metrics)["epochs"], report
            assert checkpoint.is_file(), f"trial {number} paused without its checkpoint\n{report}"
        else:
            assert fidelity == 9 and len(json.loads(curve)) == 9 and not checkpoint.exists(), report
    summary = json.loads((run_dir / "summary.json").read_text())
    assert 1 <= summary["trials"]["pruned"] < TRIALS and summary["best"]["fidelity"] == 9, report


def kill_and_resume(tmp_path: Path, args: list[str], phase_list: list[str], orchestrator_kills: int) -> tuple[Path, Path, str]:
    """Kill a search launched with ``args`` once per phase of ``phase_list`` (in a seeded order,
    ``orchestrator_kills`` of the training ones hitting only the orchestrator), run it to the end,
    check the database; returns the database, the run directory and the report of the launches."""
    started = time.monotonic()
    rng = random.Random(SEED)
    run_dir = tmp_path / "run"
    db = tmp_path / "neuromosaic.db"
    roots = tuple(sorted({str(tmp_path), str(tmp_path.resolve())}))
    argv = [sys.executable, "-c", CODE, *args, f"hydra.run.dir={run_dir}"]

    phases = phase_list[:]
    rng.shuffle(phases)
    training = [i for i, p in enumerate(phases) if p in ("running", "completion")]
    orchestrator_only = set(rng.sample(training, orchestrator_kills))

    snapshots: list[list[tuple[int, int, str, str]]] = []  # the database after each kill
    history: list[dict] = []  # what each launch did, for the failure messages and the report
    orphans_seen: list[dict] = []
    proc: subprocess.Popen | None = None
    try:
        for k, phase in enumerate(phases):
            before = trial_rows(db)
            last_id = max((r[0] for r in before), default=0)
            done_before = completed(before)
            log = (tmp_path / f"launch-{k:02d}.err").open("w")
            proc = subprocess.Popen(argv, cwd=tmp_path, env=environment(), stdout=subprocess.DEVNULL, stderr=log,
                                    start_new_session=True)
            t0 = time.monotonic()
            if phase == "startup":
                delay = rng.uniform(0.3, 2.5)
                time.sleep(delay)
                reached = proc.poll() is None
            elif phase == "searching":
                delay = rng.uniform(0.0, 0.3)
                err = tmp_path / f"launch-{k:02d}.err"
                reached = wait_for(proc, lambda err=err: "searching:" in err.read_text())
                time.sleep(delay)
            elif phase == "running":
                delay = rng.uniform(0.0, 2.5)
                reached = wait_for(proc, lambda last_id=last_id: any(r[0] > last_id and r[2] == "running" for r in trial_rows(db)))
                time.sleep(delay)
            else:
                delay = rng.uniform(0.0, 0.5)
                reached = wait_for(proc, lambda done_before=done_before: completed(trial_rows(db)) > done_before)
                time.sleep(delay)
            whole_tree = k not in orchestrator_only
            exited_before_kill = proc.poll()
            if whole_tree:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            else:
                try:
                    os.kill(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            proc.wait(timeout=30)
            log.close()
            if whole_tree:
                # A machine crash kills the trials too; killpg of the CLI's group does not reach them.
                killed = kill_harnesses(roots)
            else:
                # Only the orchestrator died: its trial processes must exit on their own.
                deadline = time.monotonic() + 10
                while harness_processes(roots) and time.monotonic() < deadline:
                    time.sleep(0.2)
                alive = harness_processes(roots)
                orphans_seen.append({"launch": k, "phase": phase, "orphans": alive})
                assert not alive, f"trial processes outlived their orchestrator: {alive}"
                killed = []
            after = trial_rows(db)
            snapshots.append(after)
            history.append({"launch": k, "phase": phase, "delay": round(delay, 2), "reached": reached,
                            "whole_tree": whole_tree, "exited_before_kill": exited_before_kill,
                            "seconds": round(time.monotonic() - t0, 1), "completed": completed(after),
                            "harnesses_killed": killed, "rows": len(after)})
            # Nothing stored is ever lost: the completed count never goes down.
            assert completed(after) >= done_before, history
            assert completed(after) <= TRIALS, history

        kills_done = time.monotonic()
        # The same command, run to completion.
        final = subprocess.run(argv, cwd=tmp_path, env=environment(), capture_output=True, text=True, timeout=240)
        assert final.returncode == 0, final.stderr[-3000:]
    finally:
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        leftover = kill_harnesses(roots)
    assert not leftover, f"trial processes outlived the final run: {leftover}"
    finished = time.monotonic()

    rows = trial_rows(db)
    statuses = [r[2] for r in rows]
    report = "\n".join([*(json.dumps(h, default=str) for h in history), *(json.dumps(o, default=str) for o in orphans_seen),
                         "final rows (id, number, status): " + json.dumps([(r[0], r[1], r[2]) for r in rows])])
    assert statuses.count("completed") == TRIALS, report
    assert set(statuses) <= VALID, report  # no running / pending rows remain
    numbers = [r[1] for r in rows]
    assert len(numbers) == len(set(numbers)), f"two rows share a trial number: {report}"
    completed_numbers = [r[1] for r in rows if r[2] == "completed"]
    assert len(completed_numbers) == len(set(completed_numbers)), report

    # Interrupted trials are re-run in place: rows still `interrupted` at the end are only those the
    # final run did not need (it re-runs them first, and stops at search.trials).
    waiting = [r for r in snapshots[-1] if r[2] == "interrupted"]
    needed = TRIALS - completed(snapshots[-1])
    left = [r for r in rows if r[2] == "interrupted"]
    assert {r[0] for r in left} <= {r[0] for r in waiting}, report
    assert len(left) <= max(0, len(waiting) - needed), report

    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("pragma integrity_check").fetchall() == [("ok",)]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["trials"]["completed"] == TRIALS
    assert summary["experiment"] == NAME

    print(f"\nkills: {len(history)} in {kills_done - started:.1f} s; final run {finished - kills_done:.1f} s; "
          f"total {finished - started:.1f} s")
    print(report)

    # No architecture trained and counted twice: a twin either reused a finished result or shared
    # the result of the copy still training.
    with closing(sqlite3.connect(db)) as conn:
        trained = conn.execute(
            "select t.reuse_key, group_concat(t.number) from trials t join experiments e on t.experiment_id = e.id "
            "where e.name = ? and t.status = 'completed' and t.reused_from is null group by t.reuse_key having count(*) > 1",
            (NAME,),
        ).fetchall()
    assert not trained, f"the same architecture trained more than once (trial numbers): {[n for _, n in trained]}\n{report}"

    # Nor proposed twice: the trials a crash cut off are re-run, and the resumed strategy knows them
    # as pending, so the budget buys TRIALS distinct architectures (the space has millions).
    with closing(sqlite3.connect(db)) as conn:
        repeats = conn.execute(
            "select group_concat(t.number) from trials t join experiments e on t.experiment_id = e.id "
            "where e.name = ? and t.status = 'completed' group by t.reuse_key having count(*) > 1",
            (NAME,),
        ).fetchall()
    assert not repeats, f"completed trials repeat an architecture (trial numbers): {[n for (n,) in repeats]}\n{report}"
    return db, run_dir, report
