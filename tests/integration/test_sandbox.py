"""The shared sandbox (neuromosaic_core.sandbox) against real processes, as root where CI runs:
what a trial can see, write, reach and use, and how each way of ending is reported."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
from pathlib import Path

import pytest

from neuromosaic_core.sandbox import Limits, bubblewrap_available, run_sandboxed, run_sandboxed_sync

ENV = {"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}


@pytest.fixture
def bwrap():
    if not bubblewrap_available():
        pytest.skip("bubblewrap (bwrap) is not installed (Debian: apt-get install bubblewrap)")


def py(code: str, workdir: Path, limits: Limits | None = None, **kw):
    return run_sandboxed_sync([sys.executable, "-c", code], workdir, limits or Limits(timeout_s=60), ENV, **kw)


def test_the_command_runs_unprivileged_in_its_workdir_and_what_it_writes_comes_back_to_us(tmp_path, bwrap):
    out = py("import os; print(os.getuid(), os.getgid(), os.getcwd()); open('made.txt', 'w').write('hi')", tmp_path)
    assert out.isolation == "bubblewrap" and out.returncode == 0, out.output
    assert out.output.split() == ["65534", "65534", str(tmp_path.resolve())]
    assert (tmp_path / "made.txt").read_text() == "hi"
    assert (tmp_path / "made.txt").stat().st_uid == os.getuid()


def test_only_the_workdir_and_a_private_tmp_are_writable(tmp_path, bwrap):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    work = tmp_path / "work"
    marker = Path(f"/tmp/neuromosaic-sandbox-marker-{os.getpid()}")  # noqa: S108 - must be in the host's /tmp
    marker.write_text("host")
    code = (
        "import os, sys\n"
        "def attempt(p):\n"
        "    try:\n"
        "        open(p, 'w').write('x'); return 'wrote'\n"
        "    except OSError as e:\n"
        "        return 'denied'\n"
        f"print(attempt({str(outside / 'keep.txt')!r}), attempt('/etc/neuromosaic-test'), attempt(sys.prefix + '/x'),"
        " attempt('/tmp/private'), sorted(os.listdir('/tmp')))\n"
    )
    try:
        out = py(code, work)
    finally:
        marker.unlink()
    assert out.returncode == 0, out.output
    assert out.output.split()[:4] == ["denied", "denied", "denied", "wrote"]
    assert "'private'" in out.output and marker.name not in out.output  # the host's /tmp is not visible
    assert (outside / "keep.txt").read_text() == "keep"
    assert not Path("/tmp/private").exists() or Path("/tmp/private").read_text() != "x"


def test_home_directories_are_hidden_but_readable_files_can_be_exposed(tmp_path, bwrap):
    secret = Path.home() / f".neuromosaic-sandbox-test-{os.getpid()}"
    secret.write_text("secret")
    data = tmp_path / "data.txt"
    data.write_text("data")
    try:
        code = f"import os; print(os.path.exists({str(secret)!r}), open({str(data)!r}).read())"
        out = py(code, tmp_path / "work", readable=[str(data)])
    finally:
        secret.unlink()
    assert out.output.split() == ["False", "data"], out.output


def test_the_network_is_loopback_only(tmp_path, bwrap):
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    try:
        code = (
            "import socket\n"
            f"try:\n    socket.create_connection(('127.0.0.1', {port}), timeout=3); print('reached')\n"
            "except OSError as e:\n    print('refused', type(e).__name__)\n"
        )
        out = py(code, tmp_path)
    finally:
        server.close()
    assert out.output.startswith("refused"), out.output


def test_a_timeout_kills_the_whole_tree_and_says_so(tmp_path, bwrap):
    code = "import subprocess, time\nsubprocess.Popen(['sleep', '300'])\ntime.sleep(300)\n"
    out = py(code, tmp_path, Limits(timeout_s=2))
    assert out.timed_out and out.returncode is not None and out.returncode < 0
    assert out.describe() == "timeout"
    time.sleep(0.5)
    assert not _processes_mentioning("sleep 300", tmp_path), "a child of the timed-out command survived"


def _processes_mentioning(text: str, cwd: Path) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            here = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        if text in cmd and here.startswith(str(cwd.resolve())):
            found.append(int(pid))
    return found


def test_cancelling_the_coroutine_kills_everything(tmp_path, bwrap):
    async def scenario():
        task = asyncio.create_task(run_sandboxed(["sleep", "300"], tmp_path, Limits(timeout_s=300), ENV))
        for _ in range(100):
            await asyncio.sleep(0.1)
            if _processes_mentioning("sleep 300", tmp_path):
                break
        assert _processes_mentioning("sleep 300", tmp_path)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert not _processes_mentioning("sleep 300", tmp_path)


def test_a_flood_of_output_is_stopped_and_only_its_tail_kept(tmp_path, bwrap):
    code = "import sys\nsys.stdout.write('start\\n')\nwhile True:\n    sys.stdout.write('y' * 65536)\n"
    out = py(code, tmp_path, Limits(timeout_s=60, output_mb=2))
    assert out.output_exceeded and not out.timed_out
    assert out.describe().startswith("too much output")
    assert out.output_bytes > 2 << 20 and len(out.output) <= 64 * 1024 and "start" not in out.output


@pytest.mark.parametrize(
    ("code", "limits", "expected"),
    [
        ("b = bytearray(3 << 30)", Limits(timeout_s=60, memory_mb=1024), "MemoryError"),
        ("import ctypes; ctypes.string_at(0)", Limits(timeout_s=60), "killed by signal 11 (SIGSEGV)"),
        ("while True: pass", Limits(timeout_s=60, cpu_seconds=1), "killed by signal"),
        ("open('big', 'wb').write(b'x' * (3 << 20))", Limits(timeout_s=60, file_size_mb=1), "File too large"),
        ("import sys; sys.exit(7)", Limits(timeout_s=60), "exit code 7"),
    ],
    ids=["memory", "segfault", "cpu-time", "file-size", "exit-code"],
)
def test_limits_and_deaths_are_reported_in_words(tmp_path, bwrap, code, limits, expected):
    out = py(code, tmp_path, limits)
    assert expected in out.describe() + out.output


def test_the_process_limit_binds_although_we_are_root(tmp_path, bwrap):
    code = (
        "import os, time\n"
        "n = 0\n"
        "try:\n"
        "    for _ in range(200):\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(30); os._exit(0)\n"
        "        n += 1\n"
        "except OSError:\n"
        "    pass\n"
        "print('forked', n, flush=True)\n"
        "os._exit(0)\n"
    )
    out = py(code, tmp_path, Limits(timeout_s=60, processes=16, uid_processes=16))
    # The kernel's limit on the sandbox's uid stops the forks (or the sampler stopped it first).
    assert out.processes_exceeded or int(out.output.split()[-1]) < 16, out.output


def test_resources_are_measured_from_outside(tmp_path, bwrap):
    code = "import time\nb = bytearray(200 << 20)\nfor i in range(0, len(b), 4096): b[i] = 1\nt = time.process_time()\nwhile time.process_time() - t < 0.5: pass\ntime.sleep(0.3)\n"
    out = py(code, tmp_path)
    assert out.returncode == 0, out.output
    assert out.peak_memory_mb > 150
    assert out.cpu_seconds >= 0.4
    assert out.wall_seconds >= out.cpu_seconds * 0.5


def test_the_fallback_runs_without_bubblewrap_and_says_so(tmp_path):
    out = py("import os; print('ran', os.getpid() != 1)", tmp_path, isolation="process-group")
    assert out.isolation == "process-group" and out.output.split() == ["ran", "True"]


def test_a_missing_program_is_an_outcome_not_an_exception(tmp_path):
    out = run_sandboxed_sync(["/nonexistent/python"], tmp_path, Limits(timeout_s=10), ENV, isolation="process-group")
    assert out.returncode == 127 and "cannot start" in out.output


def test_gpu_device_nodes_are_passed_through_only_when_asked(tmp_path, monkeypatch):
    import neuromosaic_core.sandbox as sandbox

    monkeypatch.setattr(sandbox, "gpu_devices", lambda: ["/dev/nvidiactl", "/dev/nvidia0"])
    with_gpu = sandbox.bwrap_argv(["python"], tmp_path, Limits(timeout_s=1), gpu=True)
    without = sandbox.bwrap_argv(["python"], tmp_path, Limits(timeout_s=1), gpu=False)
    assert " --dev-bind /dev/nvidia0 /dev/nvidia0" in " ".join(with_gpu)
    assert "--dev-bind" not in without


def test_the_sandbox_exposes_the_source_of_editable_installs():
    # CI's clone lives under /tmp, which the sandbox hides; an editable install of the core is
    # found through a finder pointing at that source tree, so its directory must be mounted back.
    import neuromosaic_core
    from neuromosaic_core.sandbox import python_paths

    assert os.path.dirname(os.path.realpath(neuromosaic_core.__file__)) in python_paths()


# -- hide by default: a trial sees the interpreter, its packages, its code and data, nothing of the user's


@pytest.fixture
def user_dir():
    """A folder of the user's outside the usual hidden places (/tmp, home folders): a project or
    data folder anywhere on disk. Skips where no such place is writable."""
    import shutil
    import tempfile

    for base in ("/srv", "/opt", "/var/lib", os.getcwd()):
        if os.path.isdir(base) and os.access(base, os.W_OK) and not base.startswith(("/tmp", "/home", "/root")):
            path = Path(tempfile.mkdtemp(prefix="neuromosaic-user-canary-", dir=base))
            path.chmod(0o755)  # readable to all, as a user's folders usually are: only the sandbox may hide it
            break
    else:
        pytest.skip("no writable folder outside /tmp and the home folders for the canaries")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


PEEK = (
    "import os, sys\n"
    "for p in sys.argv[1:]:\n"
    "    try:\n"
    "        print('READ' if os.path.isfile(p) and open(p).read() else 'LIST' if os.listdir(p) else 'EMPTY', p)\n"
    "    except OSError:\n"
    "        print('HIDDEN', p)\n"
)


def test_the_working_directory_and_other_folders_of_the_user_are_hidden(tmp_path, bwrap, user_dir, monkeypatch):
    project = user_dir / "project"
    project.mkdir()
    (project / ".env").write_text("API_KEY=canary\n")
    data = user_dir / "data.txt"
    data.write_text("data")
    other = user_dir / "other.txt"
    other.write_text("canary")
    monkeypatch.chdir(project)
    argv = [sys.executable, "-c", PEEK, str(project / ".env"), str(project), str(other), str(data)]
    out = run_sandboxed_sync(argv, tmp_path / "work", Limits(timeout_s=60), ENV, readable=[str(data)])
    assert out.returncode == 0, out.output
    assert out.output.split("\n")[:4] == [f"HIDDEN {project / '.env'}", f"HIDDEN {project}", f"HIDDEN {other}",
                                          f"READ {data}"], out.output


def test_a_file_beside_a_script_that_drives_the_library_is_hidden(bwrap, user_dir, tmp_path):
    import subprocess

    scripts = user_dir / "scripts"
    scripts.mkdir()
    (scripts / ".env").write_text("API_KEY=canary\n")
    (scripts / "drive.py").write_text(
        "import sys\n"
        "from pathlib import Path\n"
        "from neuromosaic_core.sandbox import Limits, run_sandboxed_sync\n"
        f"out = run_sandboxed_sync([sys.executable, '-c', {PEEK!r}, {str(scripts / '.env')!r}], Path(sys.argv[1]),\n"
        "                         Limits(timeout_s=60), {'PATH': '/usr/bin:/bin'})\n"
        "print(out.output)\n"
    )
    done = subprocess.run([sys.executable, str(scripts / "drive.py"), str(tmp_path / "work")], capture_output=True,
                          text=True, timeout=120, cwd=str(user_dir), check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"HIDDEN {scripts / '.env'}" in done.stdout, done.stdout


def test_a_trial_still_sees_its_python_and_the_neuromosaic_packages(tmp_path, bwrap):
    code = "import numpy, neuromosaic_core.harness.training as t; print('imported', t.__name__)"
    out = py(code, tmp_path)
    assert out.returncode == 0 and "imported neuromosaic_core.harness.training" in out.output, out.output


# -- fork bombs and the memory they report


SPINNING_BOMB = (
    "import os\n"
    "while True:\n"
    "    try:\n"
    "        os.fork()\n"
    "    except OSError:\n"
    "        pass\n"
)


def test_a_fork_bomb_is_stopped_at_the_process_limit_not_at_the_timeout(tmp_path, bwrap):
    out = py(SPINNING_BOMB, tmp_path, Limits(timeout_s=60, processes=16))
    assert out.processes_exceeded and not out.timed_out, (out.describe(), out.output[-500:])
    assert "too many processes" in out.describe()
    deadline = time.monotonic() + 20  # the kernel tears a PID namespace of a few hundred processes down in a moment
    while _processes_mentioning("os.fork()", tmp_path) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _processes_mentioning("os.fork()", tmp_path), "a process of the fork bomb survived"


def test_spinning_processes_are_stopped_at_the_cpu_time_of_the_whole_sandbox(tmp_path, bwrap):
    # Four processes spinning: each alone stays under the per-process limit for a while, all
    # together they pass it in half the time: the sandbox's total is what stops them.
    code = "import os\nfor _ in range(3):\n    if os.fork() == 0:\n        break\nwhile True:\n    pass\n"
    out = py(code, tmp_path, Limits(timeout_s=60, cpu_seconds=4))
    assert out.cpu_exceeded and not out.timed_out, (out.describe(), out.output[-500:])
    assert out.describe().startswith("CPU time limit")


def test_peak_memory_counts_pages_shared_by_forked_processes_once(tmp_path, bwrap):
    # 200 MB touched, then eight forked children that share it (copy-on-write): the sandbox holds
    # ~200 MB, not nine times that (the sum of the processes' RSS).
    code = (
        "import os, time\n"
        "b = bytearray(200 << 20)\n"
        "for i in range(0, len(b), 4096): b[i] = 1\n"
        "for _ in range(8):\n"
        "    if os.fork() == 0:\n"
        "        time.sleep(1.5)\n"
        "        os._exit(0)\n"
        "time.sleep(1.5)\n"
        "os.wait()\n"
    )
    out = py(code, tmp_path)
    assert out.returncode == 0, out.output
    assert 150 < out.peak_memory_mb < 400, out.peak_memory_mb


def test_a_job_its_warm_worker_could_not_run_runs_again_on_a_new_worker(tmp_path):
    # A failure of the worker, not of the job (here: it cannot make the job's private folder; in
    # the field: its fork hit the sandbox uid's process limit), must not be reported as the job's.
    pytest.importorskip("torch")  # a warm worker imports torch
    from neuromosaic_core.sandbox.pool import PoolConfig, SyncWarmPool

    prepared: list[Path] = []

    def prepare(job_dir: Path) -> Path:
        prepared.append(job_dir)
        if len(prepared) == 1:
            (job_dir / "tmp").mkdir()  # where the worker (without a namespace) makes the job's HOME
        (job_dir / "job.json").write_text("{}")
        return job_dir / "job.json"

    pool = SyncWarmPool(PoolConfig("operator:not_", sys.executable, "process-group", Limits(timeout_s=60), ENV))
    try:
        outcome = pool.run(prepare, Limits(timeout_s=60), into=tmp_path)  # operator.not_([path]) is False: exit 0
    finally:
        pool.close()
    assert outcome.returncode == 0 and not outcome.worker_failed, outcome
    assert len(prepared) == 2 and (pool.pool.started, pool.pool.replaced) == (2, 1)
