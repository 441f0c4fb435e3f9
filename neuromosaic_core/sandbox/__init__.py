"""Run an untrusted command in a sandbox: the shared isolation layer of the ``local`` and ``ray`` runners.

:func:`run_sandboxed` (async) and :func:`run_sandboxed_sync` run ``argv`` with ``workdir`` as its
working directory and return an :class:`Outcome`; they never raise for the command's own failure.

With bubblewrap (``bwrap``, Debian package ``bubblewrap``) the command runs in new mount, PID,
network, IPC and UTS namespaces:

- hide by default: the sandbox's root is empty but for what the command needs, shown read-only:
  the system's programs and libraries (:data:`SYSTEM`, a few files of ``/etc``), the Python
  install and its site-packages, the sources of the ``neuromosaic*`` packages (editable installs),
  and the ``readable`` files (the trial's code and data). Nothing else of the machine is there:
  not the working directory, not the folder of a script that drives the library (a ``.env``
  beside it), not home folders, ``/run`` or the host's ``/tmp``;
- ``workdir`` is the only writable place on disk, plus a private ``/tmp`` (a tmpfs of
  ``Limits.tmp_mb``, also the command's ``HOME`` and ``TMPDIR``);
- the network is loopback only; the process IDs are private (``kill -1`` reaches only the sandbox);
- ``/dev`` is minimal, plus the NVIDIA device nodes when ``gpu`` (CUDA trials);
- the command runs as an unprivileged user (uid/gid 65534, ``nobody``) with no capabilities and
  ``no_new_privs``, even when the caller is root: as root the sandbox is entered as root and the
  user is switched with ``setpriv`` (so process limits and file permissions bind), ``workdir`` is
  handed to that uid for the run and back to the caller afterwards; a non-root caller uses a user
  namespace;
- when the caller dies, bwrap and everything in the sandbox die with it (``--die-with-parent``).

Without bubblewrap it falls back to a new session (its own process group) plus the same rlimits,
logs a warning once and says so in ``Outcome.isolation`` (``"process-group"``).

In both modes the rlimits of :class:`Limits` apply to every process of the command (address
space, CPU time, processes, file size; no core dumps); the wall-clock ``timeout_s``, a flood of
output beyond ``Limits.output_mb``, more processes and threads than ``Limits.processes`` or more
CPU time in all than ``Limits.cpu_seconds`` (a fork bomb), or cancelling the coroutine kill the
whole process tree. psutil samples the tree every 50 ms for its peak memory (the summed
proportional set size: pages shared by forked processes count once, see :class:`Outcome`) and CPU
seconds; the kernel's accounting of reaped children (``wait4``) backs the CPU figure.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import math
import os
import resource
import select
import shutil
import signal
import stat
import subprocess  # nosec B404 - running a command in a sandbox is this module's purpose
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from neuromosaic_core.errors import ConfigError

SANDBOX_UID = 65534
#: System folders shown (read-only) in every sandbox: programs and shared libraries. Everything
#: else of the machine is hidden unless shown on purpose (see :func:`bwrap_argv`).
SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
#: Files of /etc that the dynamic linker and Python read (users and groups: ``getpass``; never
#: ``shadow``, never anything of a user's).
SYSTEM_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/alternatives", "/etc/localtime",
                "/etc/passwd", "/etc/group", "/etc/nsswitch.conf", "/etc/hosts")
#: What of /sys a CPU trial reads (torch's cpuinfo); a GPU trial gets /sys whole (the CUDA driver reads it).
SYSTEM_CPU_INFO = ("/sys/devices/system/cpu", "/sys/devices/system/node")
#: The sandbox's private tmpfs (empty, sized by ``Limits.tmp_mb``), also its HOME and TMPDIR.
PRIVATE_TMP = "/tmp"  # noqa: S108  # nosec B108 - a fresh tmpfs inside the sandbox, not the host's /tmp
#: Bytes of output kept (the tail): a flood of output must not exhaust the caller's memory.
OUTPUT_KEPT = 64 * 1024
SAMPLE_INTERVAL_S = 0.05
#: The least RLIMIT_NPROC a sandbox's uid gets (see :attr:`Limits.nproc`).
MIN_UID_PROCESSES = 256

_warned = False


@attrs.frozen
class Limits:
    """Per-run limits. ``None`` means unlimited.

    ``memory_mb`` is the address-space limit (RLIMIT_AS) of each process: torch maps ~650 MB of
    virtual memory on import, so leave room. ``cpu_seconds``: CPU time of the whole sandbox (all
    its processes together, sampled; more kills it at once) and of each process (RLIMIT_CPU);
    :func:`default_cpu_seconds` derives one from the timeout. ``processes``: processes and threads
    the sandbox may hold at once (a training job needs a handful: torch with one intra-op thread
    runs in one); more kills it at once, so a fork bomb ends in a moment instead of at the
    timeout. The kernel's backstop while that is sampled is RLIMIT_NPROC on the sandbox's uid:
    ``uid_processes``, or twice ``processes`` but at least :data:`MIN_UID_PROCESSES` (as root the
    uid is shared by every sandbox on the machine, other runners' too: a tight backstop would fail
    their thread starts). ``output_mb``: more stdout+stderr than this kills
    the command. ``tmp_mb``: size of the private ``/tmp``.
    """

    timeout_s: float
    memory_mb: int | None = 4096
    cpu_seconds: int | None = None
    processes: int | None = 32
    file_size_mb: int | None = 512
    output_mb: int | None = 16
    tmp_mb: int = 64
    uid_processes: int | None = None

    @property
    def nproc(self) -> int | None:
        """RLIMIT_NPROC for the sandbox's uid (see the class docstring)."""
        if self.processes is None:
            return None
        return self.uid_processes or max(MIN_UID_PROCESSES, 2 * self.processes)


def default_cpu_seconds(timeout_s: float) -> int:
    """The CPU-time limit a trial gets unless told otherwise: a trial runs one intra-op thread,
    so it uses at most about one CPU second per second of its timeout; a quarter more and 5 s
    leave room for its other threads (autograd, a GPU driver). A sandbox burning more (many
    processes spinning at once) is stopped before its timeout."""
    return math.ceil(timeout_s * 1.25) + 5


@attrs.frozen
class Outcome:
    """How the command ended. ``returncode`` is negative for a signal (``-9``: killed), None when
    unknown. ``output`` is the tail of stdout+stderr (at most :data:`OUTPUT_KEPT` bytes, decoded).
    ``peak_memory_mb``: the peak of the sandbox's real memory, the summed proportional set size
    (PSS) of its processes: a page shared by forked processes counts once in all, not once each.
    ``processes_exceeded``/``cpu_exceeded``: stopped at ``Limits.processes``/``Limits.cpu_seconds``.
    ``worker_failed``: a warm worker (:mod:`neuromosaic_core.sandbox.pool`) could not run the job
    at all (its fork failed, say): the machine's fault, not the job's."""

    returncode: int | None
    output: str
    timed_out: bool
    peak_memory_mb: float
    cpu_seconds: float
    wall_seconds: float
    isolation: str
    output_exceeded: bool = False
    output_bytes: int = 0
    processes_exceeded: bool = False
    cpu_exceeded: bool = False
    worker_failed: bool = False

    def describe(self) -> str:
        """A short cause in words: ``timeout``, ``too much output``, ``killed by signal 11 (SIGSEGV)``, ..."""
        if self.timed_out:
            return "timeout"
        if self.output_exceeded:
            return f"too much output ({self.output_bytes / (1 << 20):.0f} MB before it was stopped)"
        if self.processes_exceeded:
            return "too many processes (a fork bomb?): stopped at the process limit"
        if self.cpu_exceeded:
            return f"CPU time limit: used {self.cpu_seconds:.0f} CPU seconds"
        code = self.returncode
        if code is None:
            return "unknown exit status"
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = "unknown signal"
            cause = f"killed by signal {-code} ({name})"
            if -code == signal.SIGKILL:
                cause += ", out of memory?"
            elif -code == signal.SIGXCPU:
                cause += ", CPU time limit"
            elif -code == signal.SIGXFSZ:
                cause += ", file size limit"
            return cause
        return f"exit code {code}"


def bubblewrap_available() -> bool:
    """bwrap is installed and can create the namespaces here (and setpriv too when we are root)."""
    return _bwrap_path() is not None


def _bwrap_path() -> str | None:
    path = shutil.which("bwrap")
    if path is None or (os.geteuid() == 0 and shutil.which("setpriv") is None):
        return None
    return path


def python_paths(executable: str | None = None) -> list[str]:
    """What a Python needs to read, and no more: its prefixes (the standard library, site-packages,
    a virtual environment), its executable, and the directories of the ``neuromosaic*`` packages
    imported here. An editable install (``pip install -e``) is found through a finder or a path
    entry in site-packages that points at the source tree: only each package's own directory is
    shown, never the whole entry, nor any other ``sys.path`` entry (a driving script's folder, the
    working directory, ``PYTHONPATH``), where the user's files (a ``.env``) may lie."""
    prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    paths = {*prefixes, *(os.path.realpath(p) for p in prefixes), os.path.dirname(os.path.realpath(sys.executable))}
    for name, module in list(sys.modules.items()):
        if "." in name or not name.startswith("neuromosaic"):
            continue
        file = getattr(module, "__file__", None)
        if file:
            real = os.path.realpath(file)
            paths.add(os.path.dirname(real) if os.path.basename(real).startswith("__init__.") else real)
        else:  # a namespace package: its directories
            paths.update(os.path.realpath(p) for p in getattr(module, "__path__", ()))
    if executable:
        paths.update({executable, os.path.realpath(executable)})
    return sorted(p for p in paths if os.path.exists(p))


def _under(path: str, roots: Iterable[str]) -> str | None:
    for root in roots:
        if path == root or path.startswith(root.rstrip("/") + "/"):
            return root
    return None


def gpu_devices() -> list[str]:
    """The NVIDIA device nodes of this machine (``/dev/nvidia0``, ``/dev/nvidiactl``, ``/dev/nvidia-uvm``, ...)."""
    return sorted(glob.glob("/dev/nvidia*"))


def bwrap_argv(argv: Sequence[str], workdir: Path, limits: Limits, readable: Iterable[str] = (),
               gpu: bool = True) -> list[str]:
    """The full command line that runs ``argv`` inside bubblewrap (see the module docstring).
    ``gpu``: pass the NVIDIA device nodes through (bubblewrap's ``/dev`` has none otherwise), and
    ``/sys`` (the CUDA driver reads it).

    Hide by default: the sandbox's root is an empty tmpfs; what it shows, read-only, is listed
    here (:data:`SYSTEM`, :data:`SYSTEM_FILES`, :func:`python_paths`, ``argv[0]``, ``readable``),
    then ``workdir`` read-write and a private ``/tmp``."""
    bwrap = _bwrap_path() or "bwrap"
    workdir_s = str(workdir)
    cmd = [bwrap, "--dev", "/dev", "--proc", "/proc"]
    if gpu:
        for device in gpu_devices():
            cmd += ["--dev-bind", device, device]
    cmd += ["--perms", "1777", "--size", str(limits.tmp_mb << 20), "--tmpfs", PRIVATE_TMP]
    shown: list[str] = []
    for path in SYSTEM:
        if os.path.islink(path):  # merged /usr: /bin -> usr/bin
            cmd += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            shown.append(path)
    shown += [p for p in (*SYSTEM_FILES, *(("/sys",) if gpu else SYSTEM_CPU_INFO)) if os.path.exists(p)]
    program = argv[0] if argv and os.path.isabs(argv[0]) else None
    shown += python_paths(program)
    if program and os.path.islink(program):  # e.g. a venv's python -> the base install
        shown.append(os.path.realpath(program))
    shown += [os.path.abspath(p) for p in readable if p]
    made: set[str] = {"/"}
    bound: list[str] = []

    def parents(path: str) -> list[str]:
        # bubblewrap would make the missing folders leading to a mount with mode 0700 (unreadable
        # to the sandbox's uid): make them 0755 first.
        out, p = [], os.path.dirname(path)
        while p not in made and not _under(p, bound):
            out.append(p)
            p = os.path.dirname(p)
        made.update(out)
        return [a for d in reversed(out) for a in ("--perms", "0755", "--dir", d)]

    for path in sorted(set(shown)):
        if (not os.path.exists(path) or _under(path, bound) or _under(path, [workdir_s])
                or _under(PRIVATE_TMP, [path]) or _under("/proc", [path]) or _under("/dev", [path])):
            continue  # gone, shown already, written through workdir, or a folder the sandbox makes itself
        cmd += [*parents(path), "--ro-bind", path, path]
        bound.append(path)
    cmd += [*parents(workdir_s), "--bind", workdir_s, workdir_s]
    cmd += ["--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--hostname", "sandbox",
            "--die-with-parent", "--new-session", "--chdir", workdir_s]
    if os.geteuid() == 0:
        cmd += ["--", "setpriv", f"--reuid={SANDBOX_UID}", f"--regid={SANDBOX_UID}", "--clear-groups",
                "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--", *argv]
    else:
        # The process limit is set inside the new user namespace, where it counts the sandbox's own
        # processes; set on bwrap it would count every process of the calling user.
        nproc = ["prlimit", f"--nproc={limits.nproc}:{limits.nproc}", "--"] if limits.nproc and shutil.which("prlimit") else []
        cmd += ["--unshare-user", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID), "--cap-drop", "ALL", "--", *nproc, *argv]
    return cmd


def _set_limits(limits: Limits) -> None:  # pragma: no cover - runs in the child before exec
    def cap(kind: int, value: int | None) -> None:
        if value is not None:
            resource.setrlimit(kind, (value, value))

    cap(resource.RLIMIT_AS, None if limits.memory_mb is None else limits.memory_mb << 20)
    if limits.cpu_seconds is not None:
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 1))
    if os.geteuid() == 0:  # binds the sandbox uid after setpriv; a normal user's limit is set inside (bwrap_argv)
        cap(resource.RLIMIT_NPROC, limits.nproc)
    cap(resource.RLIMIT_FSIZE, None if limits.file_size_mb is None else limits.file_size_mb << 20)
    cap(resource.RLIMIT_CORE, 0)


def _warn_fallback_once() -> None:
    global _warned
    if not _warned:
        _warned = True
        try:
            from loguru import logger

            logger.warning("bubblewrap (bwrap) not found: trials run in a process group with rlimits only, "
                           "without file-system, network or user isolation (install the 'bubblewrap' package)")
        except ImportError:  # pragma: no cover
            print("warning: bubblewrap not found; trials are not isolated", file=sys.stderr)


def proportional_memory(proc: Any) -> int:
    """A process's proportional set size in bytes (its pages, each shared one divided among the
    processes sharing it), from ``/proc/PID/smaps_rollup``; its RSS where that cannot be read."""
    try:
        with open(f"/proc/{proc.pid}/smaps_rollup", "rb") as f:
            for line in f:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return int(proc.memory_info().rss)


class TreeSampler:
    """Samples of a process tree (:meth:`sample`, psutil): the peak of its summed PSS (see
    :attr:`Outcome.peak_memory_mb`), its CPU seconds, and whether it passed ``limits.processes``
    (processes and threads) or ``limits.cpu_seconds`` (all processes together), in which case
    ``exceeded`` says which (``"processes"``, ``"cpu"``) and ``on_exceeded`` is called once.
    ``skip``: PIDs that are not part of it (a warm worker around a trial)."""

    def __init__(self, pid: int, limits: Limits | None = None, on_exceeded: Callable[[str], None] | None = None,
                 skip: Iterable[int] = ()) -> None:
        self.pid = pid
        self.limits = limits
        self.on_exceeded = on_exceeded
        self.skip = set(skip)
        self.peak_memory = 0
        self.cpu: dict[tuple[int, float], float] = {}  # with the children each has reaped
        self.own_cpu: dict[tuple[int, float], float] = {}
        self.exceeded: str | None = None

    def tree(self) -> list:
        import psutil

        try:
            root = psutil.Process(self.pid)
            return [root, *root.children(recursive=True)]
        except psutil.Error:
            return []

    def sample(self) -> None:
        import psutil

        memory = tasks = 0
        for proc in self.tree():
            if proc.pid in self.skip:
                continue
            try:
                with proc.oneshot():
                    tasks += proc.num_threads()
                    t = proc.cpu_times()
                    key = (proc.pid, proc.create_time())
                    self.cpu[key] = t.user + t.system + t.children_user + t.children_system
                    self.own_cpu[key] = t.user + t.system
                    memory += proportional_memory(proc)
            except psutil.Error:
                continue
        self.peak_memory = max(self.peak_memory, memory)
        limits = self.limits
        if limits is None or self.exceeded is not None:
            return
        if limits.processes is not None and tasks > limits.processes:
            self.exceeded = "processes"
        elif limits.cpu_seconds is not None and sum(self.own_cpu.values()) > limits.cpu_seconds:
            self.exceeded = "cpu"
        if self.exceeded is not None and self.on_exceeded is not None:
            self.on_exceeded(self.exceeded)

    def cpu_seconds(self) -> float:
        return sum(self.cpu.values())


class _Monitor(TreeSampler):
    """A :class:`TreeSampler` in a thread of its own, every :data:`SAMPLE_INTERVAL_S`."""

    def __init__(self, pid: int, limits: Limits | None = None, on_exceeded: Callable[[str], None] | None = None) -> None:
        super().__init__(pid, limits, on_exceeded)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"sandbox-monitor-{pid}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            self.sample()
            self.stop.wait(SAMPLE_INTERVAL_S)

    def finish(self) -> None:
        self.stop.set()
        self.thread.join()


class _OutputTail:
    """Reads a pipe to its end keeping only the tail; counts the bytes; stops when told."""

    def __init__(self, fd: int, limit_bytes: int | None, on_exceeded: Callable[[], None]) -> None:
        self.fd = fd
        self.limit = limit_bytes
        self.on_exceeded = on_exceeded
        self.exceeded = False
        self.buf = bytearray()
        self.total = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="sandbox-output", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            ready, _, _ = select.select([self.fd], [], [], 0.1)
            if not ready:
                if self.stop.is_set():
                    return
                continue
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:
                return
            self.total += len(chunk)
            self.buf += chunk
            if len(self.buf) > 2 * OUTPUT_KEPT:
                del self.buf[: len(self.buf) - OUTPUT_KEPT]
            if self.limit is not None and self.total > self.limit and not self.exceeded:
                self.exceeded = True
                self.on_exceeded()

    def finish(self, grace_s: float = 1.0) -> str:
        self.thread.join(grace_s)
        self.stop.set()
        self.thread.join()
        os.close(self.fd)
        return bytes(self.buf[-OUTPUT_KEPT:]).decode(errors="replace")


def _kill_tree(pid: int, monitor: _Monitor) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    import psutil

    for proc in monitor.tree():
        with contextlib.suppress(psutil.Error):
            proc.kill()  # gone already is fine


def is_regular_file(path: str | os.PathLike[str]) -> bool:
    """A plain file, not a link (to follow) or anything else: what a sandboxed command wrote is
    read or moved only then."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _chown_tree(path: Path, uid: int, gid: int) -> None:
    os.chown(path, uid, gid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            try:
                os.lchown(os.path.join(root, name), uid, gid)
            except OSError:
                pass


def empty_directory(path: str | os.PathLike[str], one_file_system: bool = False) -> list[str]:
    """Remove everything in ``path``; return what could not be removed (empty: done). Never follows
    a link; makes directories the sandboxed code locked (``chmod 000``) writable first, which their
    owner may do. ``one_file_system``: leave what is mounted from elsewhere (inside a sandbox, the
    files and folders exposed to it) and the folders leading to it. For the places a trial could
    write that outlive it (a warm worker's private ``/tmp``, its pool directory)."""
    root = os.path.abspath(path)
    try:
        device = os.lstat(root).st_dev
    except OSError:
        return []
    left: list[str] = []

    def unlock(func: Any, target: str, _exc: Any) -> None:
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(target), 0o700)
            if os.path.isdir(target) and not os.path.islink(target):
                os.chmod(target, 0o700)
        try:
            func(target)
        except FileNotFoundError:
            pass
        except OSError:
            left.append(target)

    def walk(directory: str) -> bool:
        """Empty ``directory``; True when something mounted from elsewhere stays in it."""
        try:
            entries = os.listdir(directory)
        except OSError:
            left.append(directory)
            return False
        holds_mounts = False
        for name in entries:
            entry = os.path.join(directory, name)
            try:
                st = os.lstat(entry)
            except FileNotFoundError:
                continue
            if one_file_system and st.st_dev != device:
                holds_mounts = True
            elif stat.S_ISDIR(st.st_mode):
                if walk(entry):
                    holds_mounts = True
                else:
                    unlock(os.rmdir, entry, None)
            else:
                unlock(os.unlink, entry, None)
        return holds_mounts

    walk(root)
    return left


class SandboxUnavailable(ConfigError):
    """``isolation="bubblewrap"`` was asked for where bubblewrap cannot run."""


def resolve_isolation(isolation: str = "auto") -> str:
    """``auto``, ``bubblewrap`` or ``process-group`` to what will be used; raises
    :class:`SandboxUnavailable` when ``bubblewrap`` is required and missing."""
    if isolation not in ("auto", "bubblewrap", "process-group"):
        raise ValueError(f"isolation must be auto, bubblewrap or process-group, got {isolation!r}")
    if isolation == "process-group":
        return isolation
    if _bwrap_path():
        return "bubblewrap"
    if isolation == "bubblewrap":
        need = "bwrap and setpriv" if os.geteuid() == 0 else "bwrap"
        raise SandboxUnavailable(f"runner.isolation=bubblewrap needs {need} on PATH "
                                 "(Debian: apt-get install bubblewrap), or choose runner.isolation=auto")
    return "process-group"


async def run_sandboxed(argv: list[str], workdir: Path, limits: Limits, env: Mapping[str, str],
                        readable: Iterable[str] = (), stdin: int | None = None, isolation: str = "auto",
                        gpu: bool = True) -> Outcome:
    """Run ``argv`` sandboxed in ``workdir`` (created if missing) under ``limits``; see the module
    docstring. ``readable``: files or directories the command must read that may lie in a hidden
    directory (its code and data). ``isolation``: ``auto`` (bubblewrap where available),
    ``bubblewrap`` (required: :class:`SandboxUnavailable` otherwise) or ``process-group``.
    ``gpu``: let the command use this machine's NVIDIA GPUs (their device nodes).
    Cancelling the coroutine kills everything and re-raises."""
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    env = dict(env)
    bwrap = resolve_isolation(isolation) == "bubblewrap"
    if bwrap:
        isolation = "bubblewrap"
        full = bwrap_argv(argv, workdir, limits, readable, gpu=gpu)
        env.pop("NEUROMOSAIC_PARENT_PID", None)  # the PID namespace dies with us; inside, the parent is bwrap
        env.update(HOME=PRIVATE_TMP, TMPDIR=PRIVATE_TMP)
        if os.geteuid() == 0:
            _chown_tree(workdir, SANDBOX_UID, SANDBOX_UID)
    else:
        if isolation == "auto":
            _warn_fallback_once()
        isolation = "process-group"
        full = list(argv)
        env["NEUROMOSAIC_PARENT_PID"] = str(os.getpid())  # the harness's watchdog: exit when we die
    start = time.monotonic()
    read_fd, write_fd = os.pipe()
    try:
        proc = subprocess.Popen(  # noqa: S603  # nosec B603 - a fixed argv; the untrusted part is sandboxed
            full, stdin=stdin if stdin is not None else subprocess.DEVNULL, stdout=write_fd, stderr=write_fd,
            cwd=str(workdir), env=env, start_new_session=True, close_fds=True,
            preexec_fn=lambda: _set_limits(limits),  # noqa: PLW1509
        )
    except OSError as exc:
        os.close(read_fd)
        os.close(write_fd)
        if bwrap and os.geteuid() == 0:
            _chown_tree(workdir, os.getuid(), os.getgid())
        return Outcome(127, f"cannot start {full[0]}: {exc}", False, 0.0, 0.0, 0.0, isolation)
    os.close(write_fd)
    loop = asyncio.get_running_loop()
    exceeded: asyncio.Future[str] = loop.create_future()  # which limit stopped it: output, processes, cpu

    def on_exceeded(what: str = "output") -> None:
        loop.call_soon_threadsafe(lambda: exceeded.done() or exceeded.set_result(what))

    monitor = _Monitor(proc.pid, limits, on_exceeded)
    tail = _OutputTail(read_fd, None if limits.output_mb is None else limits.output_mb << 20, on_exceeded)
    waited = in_thread(os.wait4, proc.pid, 0)
    timed_out = False

    def release() -> None:
        monitor.finish()
        if not exceeded.done():
            exceeded.cancel()
        if bwrap and os.geteuid() == 0:
            _chown_tree(workdir, os.getuid(), os.getgid())

    try:
        done, _ = await asyncio.wait({waited, exceeded}, timeout=limits.timeout_s, return_when=asyncio.FIRST_COMPLETED)
        if waited not in done:
            timed_out = exceeded not in done
            monitor.sample()
            _kill_tree(proc.pid, monitor)
        _, status, usage = await asyncio.shield(waited)
    except asyncio.CancelledError:
        _kill_tree(proc.pid, monitor)
        await asyncio.wait({waited})
        proc.returncode = -signal.SIGKILL
        tail.finish(0)
        release()
        raise
    wall = time.monotonic() - start
    returncode = os.waitstatus_to_exitcode(status)
    if bwrap and 128 < returncode < 128 + 65:
        returncode = 128 - returncode  # bwrap reports a command killed by signal N as exit code 128+N
    proc.returncode = returncode
    monitor.sample()
    stragglers = monitor.tree()
    _kill_tree(proc.pid, monitor)  # stragglers of the process group (in the fallback mode)
    if timed_out or exceeded.done():
        # Until the killed processes are gone they count against the uid's process limit, which
        # the next trial needs (a fork bomb leaves many): wait for them, briefly.
        import psutil

        await asyncio.to_thread(psutil.wait_procs, stragglers, 5)
    output = tail.finish()
    release()
    cpu = max(usage.ru_utime + usage.ru_stime, monitor.cpu_seconds())
    # ru_maxrss (the largest single process's RSS) only when no sample saw it: a command of a few ms
    peak = (monitor.peak_memory or usage.ru_maxrss * 1024) / (1 << 20)
    stopped = exceeded.result() if exceeded.done() and not exceeded.cancelled() and not timed_out else None
    return Outcome(returncode, output, timed_out, round(peak, 1), round(cpu, 3), round(wall, 3), isolation,
                   output_exceeded=tail.exceeded and not timed_out and stopped in (None, "output"), output_bytes=tail.total,
                   processes_exceeded=stopped == "processes", cpu_exceeded=stopped == "cpu")


def in_thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
    """``fn(*args, **kwargs)`` in a thread of its own, as a future of the running loop. For calls
    that block as long as a trial runs (waiting for its exit, following its output): in the
    default executor (``asyncio.to_thread``, a few threads) a handful of trials would hold every
    thread and the short calls of the other trials would queue behind them."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(value: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)

    def work() -> None:
        try:
            value, error = fn(*args, **kwargs), None
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting side
            value, error = None, exc
        try:
            loop.call_soon_threadsafe(settle, value, error)
        except RuntimeError:  # the loop is closed: nobody waits any more
            pass

    threading.Thread(target=work, name=f"in-thread-{getattr(fn, '__name__', 'call')}", daemon=True).start()
    return future


def run_sandboxed_sync(argv: list[str], workdir: Path, limits: Limits, env: Mapping[str, str],
                       readable: Iterable[str] = (), isolation: str = "auto", gpu: bool = True) -> Outcome:
    """:func:`run_sandboxed` for synchronous callers (Ray tasks, scripts)."""
    return asyncio.run(run_sandboxed(argv, workdir, limits, env, readable, isolation=isolation, gpu=gpu))
