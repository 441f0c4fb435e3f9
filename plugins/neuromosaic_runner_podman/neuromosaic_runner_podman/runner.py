"""The podman runner: each trial runs the trial harness in a locked-down container.

The container (created through the podman API, ``podman`` Python client):

- ``--network=none`` (loopback only), ``--user 65534:65534``, ``--cap-drop ALL``,
  ``no-new-privileges``, a read-only root file system with a tmpfs at /tmp;
- ``--memory`` = ``--memory-swap`` (no swap), ``--cpus`` (as ``cpu_period``/``cpu_quota``: the API
  ignores ``nano_cpus``), ``--pids-limit``;
- mounts: the trial directory read-write at ``/trial`` (the only writable place besides /tmp), the
  code and the data read-only under ``/input``, and (``runner.python=''``) this process's interpreter
  and virtual environment read-only at their own paths;
- ``RLIMIT_FSIZE`` of ``runner.max_file_size`` (a trial cannot fill the disk with one file);
- the harness's output goes to conmon's log; the runner follows it and stops a trial that prints
  more than ``runner.max_output_mb`` (``too much output``), and conmon's own log-size limit keeps
  the file on disk small meanwhile.

A trial trained in segments (``job.max_epochs``) keeps its checkpoint in the trial directory
(``job.checkpoint_path`` must lie there; ``/trial/<its name>`` inside), which outlives the
container: the next segment's container, of the same user, reads it and goes on.

The runner waits ``job.timeout_s``, then kills and removes the container. Containers are always
removed: after exit, timeout, cancellation and ``close()``. Should the orchestrator be killed with
SIGKILL, podman's own ``--timeout`` (the job's limit plus a minute) stops the container, and the next
runner removes containers whose owner process is gone.

Where the client falls short, the runner uses the API directly: the client has no ``timeout``
keyword, so the create payload is rendered by the client and posted with ``timeout`` added.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import shutil
import signal
import socket
import stat
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import attrs
from loguru import logger

from neuromosaic_core.interfaces import Runner, TrialJob
from neuromosaic_core.model import ErrorClass, ExperimentError, TrialResult, converter
from neuromosaic_core.sandbox import in_thread
from neuromosaic_runner_podman import PodmanRunnerSettings, size_in_bytes
from neuromosaic_runner_podman.image import podman_env
from neuromosaic_runner_podman.service import PodmanService, PodmanUnavailable, remove_stale_directories

TRIAL_UID = 65534  # nobody
NOFILE = 1024
NPROC = 4096
OUTPUT_TAIL = 2000
SAMPLE_INTERVAL = 0.2
LABEL_RUNNER = "io.neuromosaic.runner"
LABEL_OWNER = "io.neuromosaic.owner-pid"
LABEL_EXPERIMENT = "io.neuromosaic.experiment"
LABEL_TRIAL = "io.neuromosaic.trial"
LABEL_HOST = "io.neuromosaic.owner-host"
#: Seconds past the trial's limit after which podman itself stops a container nobody removed.
BACKSTOP = 60
#: Seconds an API call may take; the calls that last as long as the trial get the trial's limit.
API_TIMEOUT = 60.0
#: The most of a result file the runner reads (a real one is a few kB).
MAX_RESULT_BYTES = 1_000_000

IN_TRIAL = "/trial"
#: What the runner writes (or removes) in the trial directory itself: no checkpoint's name.
RUNNER_FILES = frozenset({"result.json", "result.json.tmp", "output.log", "weights.pt", "job.json"})
IN_CODE = "/input/code.py"
IN_DATA = "/input/data.npz"


def host_python_mounts() -> list[str]:
    """Directories that make this process's interpreter, its packages and neuromosaic_core work
    inside the container when mounted read-only at the same paths."""
    import neuromosaic_core

    candidates = [sys.base_prefix, sys.prefix, str(Path(os.path.realpath(sys.executable)).parent.parent),
                  str(Path(neuromosaic_core.__file__).resolve().parent)]
    dirs: list[str] = []
    for path in sorted({os.path.realpath(c) for c in candidates}, key=len):
        if path == "/" or any(path == d or path.startswith(d + os.sep) for d in dirs):
            continue
        dirs.append(path)
    return dirs


class CgroupSampler:
    """Peak memory and CPU time of a running container from its cgroup (v1 or v2), read by the
    runner on the host: ``memory.max_usage_in_bytes`` / ``memory.peak`` is the kernel's own
    high-water mark, so sampling misses no peak; CPU time is the last sample before exit."""

    def __init__(self, pid: int) -> None:
        self.memory_peak: Path | None = None
        self.memory_now: Path | None = None
        self.cpu: Path | None = None
        self.cpu_v2 = False
        self.peak_bytes = 0
        self.cpu_ns = 0
        try:
            lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
        except OSError:
            return
        for line in lines:
            _, controllers, path = line.split(":", 2)
            names = controllers.split(",")
            base = Path("/sys/fs/cgroup")
            if "memory" in names and (base / "memory" / path.lstrip("/")).is_dir():
                d = base / "memory" / path.lstrip("/")
                self.memory_peak, self.memory_now = d / "memory.max_usage_in_bytes", d / "memory.usage_in_bytes"
            if "cpuacct" in names and (base / "cpuacct" / path.lstrip("/")).is_dir():
                self.cpu = base / "cpuacct" / path.lstrip("/") / "cpuacct.usage"
            if controllers == "" and (base / path.lstrip("/") / "cgroup.controllers").exists():
                d = base / path.lstrip("/")
                if self.memory_peak is None:
                    self.memory_peak = d / "memory.peak" if (d / "memory.peak").exists() else None
                    self.memory_now = d / "memory.current"
                if self.cpu is None:
                    self.cpu, self.cpu_v2 = d / "cpu.stat", True

    @property
    def available(self) -> bool:
        return self.memory_now is not None or self.cpu is not None

    def sample(self) -> None:
        for path in (self.memory_peak, self.memory_now):
            if path is not None:
                try:
                    self.peak_bytes = max(self.peak_bytes, int(path.read_text().split()[0]))
                except (OSError, ValueError, IndexError):
                    pass
        if self.cpu is not None:
            try:
                text = self.cpu.read_text()
                if self.cpu_v2:
                    usec = next(int(line.split()[1]) for line in text.splitlines() if line.startswith("usage_usec"))
                    self.cpu_ns = max(self.cpu_ns, usec * 1000)
                else:
                    self.cpu_ns = max(self.cpu_ns, int(text.split()[0]))
            except (OSError, ValueError, StopIteration, IndexError):
                pass


class StatsSampler:
    """The same figures from podman's stats API, for a service on another machine (``runner.url``):
    peak memory is the largest sampled usage, so a short spike between samples can be missed."""

    def __init__(self, container: Any) -> None:
        self.container = container
        self.peak_bytes = 0
        self.cpu_ns = 0

    def sample(self) -> None:
        with contextlib.suppress(Exception):  # the container may be gone between two samples
            stats = self.container.stats(stream=False, decode=True)
            entry = (stats.get("Stats") or [{}])[0] if isinstance(stats, dict) else {}
            self.peak_bytes = max(self.peak_bytes, int(entry.get("MemUsage") or 0))
            self.cpu_ns = max(self.cpu_ns, int(entry.get("CPUNano") or 0))


class OutputCounter:
    """Follows a container's output through the API and counts it; sets ``exceeded`` past ``cap``
    bytes, so the runner can stop a flood before it fills a disk or a log reader's memory."""

    def __init__(self, container: Any, cap: int) -> None:
        self.container = container
        self.cap = cap
        self.total = 0
        self.exceeded = threading.Event()

    def run(self) -> None:
        try:
            for chunk in self.container.logs(stream=True, follow=True, stdout=True, stderr=True):
                self.total += len(chunk)
                if self.total > self.cap:
                    self.exceeded.set()
                    return
        except Exception:  # the container was removed under us: nothing left to count
            return


def _oom_kills() -> int:
    """The kernel's count of OOM kills on this machine (-1 where it cannot be read): one more after a
    trial that died with SIGKILL says it was the OOM killer (podman 4.3 reports OOMKilled false)."""
    try:
        for line in Path("/proc/vmstat").read_text().splitlines():
            if line.startswith("oom_kill "):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return -1


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)  # never follows a symlink a trial may have planted
    except FileNotFoundError:
        pass
    except IsADirectoryError:
        shutil.rmtree(path, ignore_errors=True)


def _write_new(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write a file the trial cannot redirect: whatever is at ``path`` (a symlink to a host file,
    say) is removed first and the file is created with O_EXCL | O_NOFOLLOW."""
    _unlink(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _open_regular(path: Path) -> int | None:
    """A read descriptor for ``path`` if it is a regular file written in the trial directory (not
    a symlink out of it, not a FIFO), else None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return fd


class CheckpointPathRefused(ValueError):
    """``job.checkpoint_path`` is not a file of the trial directory, the only place mounted writable."""


def checkpoint_name(job: TrialJob, trial_dir: Path) -> str | None:
    """The file name of ``job.checkpoint_path`` in ``trial_dir`` (None without one); raises
    :class:`CheckpointPathRefused` for one elsewhere (the container could not write it) or under a
    name the runner uses itself."""
    if not job.checkpoint_path:
        return None
    path = Path(os.path.abspath(job.checkpoint_path))
    names = {path.name, path.with_suffix(".tmp").name}  # the harness writes the .tmp sibling first
    if path.parent.resolve() != trial_dir.resolve() or names & RUNNER_FILES:
        raise CheckpointPathRefused(
            f"checkpoint_path {job.checkpoint_path} is not a file of the trial's directory {trial_dir} (the directory of "
            f"result_path, mounted at {IN_TRIAL}), or it takes a name the runner uses ({', '.join(sorted(RUNNER_FILES))}); "
            f"put it there, e.g. {trial_dir / 'checkpoint.pt'}")
    return path.name


def _read_result(path: Path) -> TrialResult | None:
    fd = _open_regular(path)
    if fd is None:
        return None
    with os.fdopen(fd, "rb") as f:
        data = f.read(MAX_RESULT_BYTES + 1)
    if len(data) > MAX_RESULT_BYTES:
        return TrialResult.failure(ErrorClass.CRASH, f"result.json is over {MAX_RESULT_BYTES:,} bytes; not a harness result")
    try:
        return converter.structure(json.loads(data), TrialResult)
    except Exception as exc:
        return TrialResult.failure(ErrorClass.CRASH, f"result.json is not a trial result: {type(exc).__name__}: {exc}"[:500])


class PodmanRunner(Runner):
    def __init__(self, settings: PodmanRunnerSettings | None = None) -> None:
        self.settings = settings or PodmanRunnerSettings()
        self.workers = self.settings.resolved_workers()
        self.memory_bytes = size_in_bytes(self.settings.memory)
        self.output_cap = self.settings.max_output_mb * 2**20
        self._service: PodmanService | None = None
        self._url: str | None = self.settings.url or None
        self._checked = False
        self._live: dict[str, str] = {}  # container id -> url, for close()
        #: Host directories mounted read-only at their own paths (the interpreter and its packages).
        self.mounts: list[str] = host_python_mounts() if self.settings.host_python else []

    # -- service and image --------------------------------------------------------------------

    def preflight(self) -> None:
        """Fail before any work starts when podman or the image is missing (a private service only:
        a remote one is checked at the first trial)."""
        if self.settings.url:
            return
        podman = shutil.which(self.settings.podman)
        if podman is None:
            raise PodmanUnavailable(f"runner=podman: '{self.settings.podman}' is not installed "
                                    "(apt-get install -y podman runc), or set runner.url to a podman service")
        import subprocess

        proc = subprocess.run([podman, "image", "exists", self.settings.image], capture_output=True,
                              env=podman_env(self.settings.containers_conf or None))
        if proc.returncode != 0:
            raise PodmanUnavailable(f"runner=podman: image {self.settings.image!r} not found; build it with "
                                    "`neuromosaic-podman-image build --rootfs` (no registry) or "
                                    "`neuromosaic-podman-image build`")

    def _ensure_service(self) -> None:
        """Start the private service if there is none (or it died). Called in the event loop's
        thread, not a worker thread: the service is tied to the thread that starts it
        (PR_SET_PDEATHSIG fires when that thread ends)."""
        if self.settings.url:
            return
        if self._service is None or not self._service.running:
            if self._service is not None:
                self._service.stop()
                self._checked = False
            self._service = PodmanService(self.settings.podman, self.settings.containers_conf)
            self._url = self._service.start()

    def _client(self, timeout: float = API_TIMEOUT) -> Any:
        import podman

        return podman.PodmanClient(base_url=self._url, timeout=timeout)

    def _connect(self) -> Any:
        from podman.errors import APIError

        client = self._client()
        if not self._checked:
            try:
                if not client.ping():
                    raise PodmanUnavailable(f"runner=podman: no podman service answers at {self._url}")
                if not client.images.exists(self.settings.image):
                    raise PodmanUnavailable(f"runner=podman: image {self.settings.image!r} not found at {self._url}; "
                                            "build it with `neuromosaic-podman-image build --rootfs`")
            except (APIError, OSError) as exc:
                raise PodmanUnavailable(f"runner=podman: cannot talk to the podman service at {self._url}: {exc}") from None
            if not self.settings.url or self.settings.url.startswith("unix://"):  # the owners' pids are ours to check
                self._remove_orphans(client)
                remove_stale_directories()
            self._checked = True
        return client

    @staticmethod
    def _remove_orphans(client: Any) -> None:
        """Remove trial containers left by an orchestrator that was killed (its pid is gone)."""
        try:
            containers = client.containers.list(all=True, filters={"label": f"{LABEL_RUNNER}=podman"})
        except Exception:
            return
        for container in containers:
            owner = str(container.labels.get(LABEL_OWNER, ""))
            here = container.labels.get(LABEL_HOST, socket.gethostname()) == socket.gethostname()
            if here and owner.isdigit() and int(owner) != os.getpid() and not Path(f"/proc/{owner}").exists():
                with contextlib.suppress(Exception):
                    container.remove(force=True)

    # -- one trial -----------------------------------------------------------------------------

    async def run_trial(self, job: TrialJob) -> TrialResult:
        trial_dir = Path(job.result_path).parent
        try:
            checkpoint_name(job, trial_dir)
        except CheckpointPathRefused as exc:
            return TrialResult.failure(ErrorClass.RUNTIME, str(exc))
        self._ensure_service()
        client = await asyncio.to_thread(self._connect) if not self._checked else self._client()
        staging: str | None = None
        container = None
        try:
            staging = await asyncio.to_thread(self._prepare, job, trial_dir)
            # A cancel while podman creates the container (it exists before `_create` returns)
            # must not lose track of it: wait for the creation, so `finally` removes it.
            creating = asyncio.ensure_future(asyncio.to_thread(self._create, client, job, trial_dir, staging))
            try:
                container = await asyncio.shield(creating)
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    container = await creating
                raise
            return await self._run(client, container, job, trial_dir)
        finally:
            if container is not None:
                await asyncio.shield(asyncio.to_thread(self._remove, container))
            client.close()
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)

    def _prepare(self, job: TrialJob, trial_dir: Path) -> str:
        """The trial directory: owned by the trial's user, no stale files from an earlier run (the
        checkpoint of an earlier segment stays, the trial's user's to read and replace); a private
        staging directory for inputs the trial's user could not read where they are."""
        trial_dir.mkdir(parents=True, exist_ok=True)
        checkpoint = checkpoint_name(job, trial_dir)
        stale = ["result.json", "result.json.tmp", "output.log", "weights.pt", "job.json"]
        if checkpoint is not None:
            stale.append(Path(checkpoint).with_suffix(".tmp").name)  # half a checkpoint of a container killed mid-write
            target = trial_dir / checkpoint
            if target.is_symlink() or (target.exists() and not target.is_file()):
                stale.append(checkpoint)  # a link or a folder a trial planted: no checkpoint
        for name in stale:
            _unlink(trial_dir / name)
        if os.geteuid() == 0:
            os.chown(trial_dir, TRIAL_UID, TRIAL_UID, follow_symlinks=False)
            if checkpoint is not None and (trial_dir / checkpoint).exists():
                # written by another runner or copied in by root: the container's user must replace it
                os.chown(trial_dir / checkpoint, TRIAL_UID, TRIAL_UID, follow_symlinks=False)
        trial_dir.chmod(0o755)
        staging = tempfile.mkdtemp(prefix=f"neuromosaic-input-{os.getpid()}-")
        os.chmod(staging, 0o755)  # noqa: S103 - the trial's user (nobody) reads the code mounted from here
        inside = attrs.evolve(job, code_path=IN_CODE, data_path=IN_DATA, result_path=f"{IN_TRIAL}/result.json",
                              weights_path=f"{IN_TRIAL}/weights.pt" if job.weights_path else None,
                              checkpoint_path=f"{IN_TRIAL}/{checkpoint}" if checkpoint is not None else None)
        _write_new(trial_dir / "job.json", json.dumps(converter.unstructure(inside)).encode())
        shutil.copyfile(job.code_path, Path(staging) / "code.py")
        os.chmod(Path(staging) / "code.py", 0o644)
        return staging

    def _data_source(self, job: TrialJob, staging: str) -> str:
        if os.stat(job.data_path).st_mode & stat.S_IROTH:
            return job.data_path
        copy = Path(staging) / "data.npz"  # not readable by the trial's user where it is
        shutil.copyfile(job.data_path, copy)
        os.chmod(copy, 0o644)
        return str(copy)

    def _create(self, client: Any, job: TrialJob, trial_dir: Path, staging: str) -> Any:
        from podman.domain.containers_create import CreateMixin

        s = self.settings
        python = s.python or sys.executable
        file_size = size_in_bytes(s.max_file_size)
        mounts = [
            {"type": "bind", "source": str(trial_dir.resolve()), "target": IN_TRIAL},
            {"type": "bind", "source": str(Path(staging) / "code.py"), "target": IN_CODE, "read_only": True},
            {"type": "bind", "source": self._data_source(job, staging), "target": IN_DATA, "read_only": True},
            {"type": "tmpfs", "target": "/tmp", "size": s.tmp_size},  # noqa: S108 - the container's own /tmp
            *({"type": "bind", "source": d, "target": d, "read_only": True} for d in self.mounts),
        ]
        kwargs: dict[str, Any] = dict(
            image=s.image,
            command=[python, "-m", "neuromosaic_core.harness", f"{IN_TRIAL}/job.json"],
            name=f"neuromosaic-trial-{job.trial_id}-{uuid.uuid4().hex[:8]}",
            labels={LABEL_RUNNER: "podman", LABEL_OWNER: str(os.getpid()), LABEL_HOST: socket.gethostname(),
                    LABEL_EXPERIMENT: job.experiment, LABEL_TRIAL: str(job.trial_id)},
            user=f"{TRIAL_UID}:{TRIAL_UID}",
            network_mode="none",
            cap_drop=["ALL"],
            no_new_privileges=True,
            read_only=True,
            mounts=mounts,
            mem_limit=self.memory_bytes,
            memswap_limit=self.memory_bytes,
            cpu_period=100_000,
            cpu_quota=max(1000, int(s.cpus * 100_000)),
            pids_limit=s.pids_limit,
            environment={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "TMPDIR": "/tmp",  # noqa: S108 - its tmpfs
                         "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1", "PYTHONNOUSERSITE": "1", "PYTHONDONTWRITEBYTECODE": "1",
                         # not the writable working directory on sys.path: a trial cannot plant a
                         # module there for the next run of the same trial (= `python -P`)
                         "PYTHONSAFEPATH": "1",
                         "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
            working_dir=IN_TRIAL,
            # Given ulimits replace containers.conf's default_ulimits, so nofile is repeated here
            # (podman's own default cannot be set where the service runs unprivileged).
            ulimits=[{"Name": "fsize", "Soft": file_size, "Hard": file_size}, {"Name": "core", "Soft": 0, "Hard": 0},
                     {"Name": "nofile", "Soft": NOFILE, "Hard": NOFILE},
                     # RLIMIT_NPROC counts every process of uid 65534 on the machine (all trials
                     # together): the per-container limit is pids_limit (the pids cgroup).
                     {"Name": "nproc", "Soft": NPROC, "Hard": NPROC}],
            log_config={"Type": "k8s-file", "Config": {"size": 2 * self.output_cap}},
            stop_timeout=1,
        )
        payload = CreateMixin._render_payload(kwargs)
        payload["timeout"] = int(math.ceil(job.timeout_s)) + BACKSTOP  # `podman run --timeout`
        response = client.api.post("/containers/create", headers={"content-type": "application/json"},
                                   data=json.dumps(payload))
        if response.status_code >= 400:
            raise PodmanUnavailable(f"runner=podman: creating the container failed: {response.text.strip()[:300]}")
        container = client.containers.get(response.json()["Id"])
        self._live[container.id] = self._url or ""
        return container

    async def _run(self, client: Any, container: Any, job: TrialJob, trial_dir: Path) -> TrialResult:
        from podman.errors import APIError

        oom_kills = _oom_kills()
        started = time.monotonic()
        try:
            await asyncio.to_thread(container.start)
        except APIError as exc:  # the runtime itself failed: every trial would; stop the search
            raise PodmanUnavailable(f"runner=podman: starting the container failed: {exc}") from None
        await asyncio.to_thread(container.reload)
        pid = int(container.attrs.get("State", {}).get("Pid") or 0)
        local = not self.settings.url or self.settings.url.startswith("unix://")
        sampler: CgroupSampler | StatsSampler = StatsSampler(container)
        if pid and local and CgroupSampler(pid).available:
            sampler = CgroupSampler(pid)
        # The wait and the output stream last as long as the trial: a client of their own whose
        # read timeout is past the trial's limit (the default would cut them off after a minute).
        watcher = await asyncio.to_thread(self._client, job.timeout_s + BACKSTOP + API_TIMEOUT)
        watched = await asyncio.to_thread(watcher.containers.get, container.id)
        counter = OutputCounter(watched, self.output_cap)
        reader = in_thread(counter.run)
        waiter = in_thread(watched.wait, condition=["exited", "stopped"])
        try:
            return await self._watch(container, job, trial_dir, sampler, counter, reader, waiter, started, local, oom_kills)
        finally:
            waiter.cancel()
            reader.cancel()
            watcher.close()

    async def _watch(self, container: Any, job: TrialJob, trial_dir: Path, sampler: CgroupSampler | StatsSampler,
                     counter: OutputCounter, reader: asyncio.Future[Any], waiter: asyncio.Future[Any],
                     started: float, local: bool, oom_kills: int) -> TrialResult:
        interval = SAMPLE_INTERVAL if isinstance(sampler, CgroupSampler) else 1.0
        deadline = started + job.timeout_s
        stop: str | None = None
        try:
            while not waiter.done():
                if isinstance(sampler, CgroupSampler):
                    sampler.sample()
                else:
                    await asyncio.to_thread(sampler.sample)
                if counter.exceeded.is_set():
                    stop = "output"
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    stop = "timeout"
                    break
                pending = {waiter} if reader.done() else {waiter, reader}  # a finished reader must not spin the loop
                await asyncio.wait(pending, timeout=min(interval, remaining), return_when=asyncio.FIRST_COMPLETED)
        finally:
            wall = time.monotonic() - started
        usage = {"peak_memory_mb": sampler.peak_bytes / 2**20, "cpu_seconds": sampler.cpu_ns / 1e9, "wall_seconds": wall}
        if stop is not None:
            await asyncio.to_thread(self._kill, container)
            waiter.cancel()
            reader.cancel()
            output = await asyncio.to_thread(self._logs, container)
            _write_new(trial_dir / "output.log", output.encode(errors="replace"))
            if stop == "timeout":
                message = f"timeout: the trial exceeded its {job.timeout_s:g} s limit; its container was killed"
                return TrialResult(metrics=usage, error=ExperimentError(ErrorClass.TIMEOUT, message))
            message = (f"too much output: more than {self.settings.max_output_mb} MB on stdout/stderr; "
                       "its container was killed")
            return TrialResult(metrics=usage, error=ExperimentError(ErrorClass.CRASH, message))
        try:
            exit_code = int(waiter.result())
        except Exception as exc:
            exit_code = -1
            output = f"waiting for the container failed: {exc}"
        else:
            output = await asyncio.to_thread(self._logs, container)
        reader.cancel()
        _write_new(trial_dir / "output.log", output.encode(errors="replace"))
        result = await asyncio.to_thread(_read_result, trial_dir / "result.json")
        if result is None:
            oom = exit_code == 137 and (_oom_kills() > oom_kills or sampler.peak_bytes >= 0.9 * self.memory_bytes)
            cause = self._describe_exit(exit_code, oom, sampler.peak_bytes, evidence=oom_kills >= 0 and local)
            tail = output[-OUTPUT_TAIL:].strip()
            message = f"trial process died ({cause}): {tail}" if tail else f"trial process died ({cause})"
            if oom:
                message = f"out of memory: {message}; raise runner.memory or make the model smaller"
            return TrialResult(metrics=usage, error=ExperimentError(ErrorClass.CRASH, message))
        if result.weights_path:
            result = attrs.evolve(result, weights_path=await asyncio.to_thread(self._collect_weights, job, trial_dir))
        harness = dict(result.metrics)
        if "peak_memory_mb" in harness:
            harness["peak_rss_mb"] = harness.pop("peak_memory_mb")  # the harness's own ru_maxrss
        # the learning curve and the fidelity go through; ``pruned`` is the scheduler's word, never a trial's
        return attrs.evolve(result, metrics={**harness, **usage}, pruned=False)

    def _describe_exit(self, code: int, oom: bool, peak: int, evidence: bool) -> str:
        if code == 0:
            return "exit code 0 without writing its result"
        if code > 128 and code - 128 < 65:
            number = code - 128
            try:
                name = f", {signal.Signals(number).name}"
            except ValueError:
                name = ""
            cause = f"killed by signal {number}{name}; exit code {code}"
            if oom:
                cause += f"; the memory limit {self.settings.memory} was reached" + (f", peak {peak / 2**20:.0f} MiB" if peak else "")
            elif number == signal.SIGKILL and not evidence:
                cause += "; out of memory?"
            return cause
        return f"exit code {code}"

    def _logs(self, container: Any) -> str:
        try:
            chunks = container.logs(stdout=True, stderr=True)
            data = chunks if isinstance(chunks, bytes) else b"".join(chunks)
        except Exception as exc:
            return f"(the output could not be read: {exc})"
        cap = self.output_cap
        if len(data) > cap:
            data = b"[... output cut to its last %d bytes ...]\n" % cap + data[-cap:]
        return data.decode(errors="replace")

    @staticmethod
    def _collect_weights(job: TrialJob, trial_dir: Path) -> str | None:
        """Move the weights the harness wrote in the trial directory to ``job.weights_path``."""
        source = trial_dir / "weights.pt"
        fd = _open_regular(source)
        if fd is None or not job.weights_path:
            return None
        target = Path(job.weights_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        with os.fdopen(fd, "rb") as src:
            _unlink(target)
            out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            with os.fdopen(out, "wb") as dst:
                shutil.copyfileobj(src, dst)
        _unlink(source)
        return str(target)

    @staticmethod
    def _kill(container: Any) -> None:
        with contextlib.suppress(Exception):  # already gone
            container.kill(signal="SIGKILL")

    def _remove(self, container: Any) -> None:
        try:
            container.remove(force=True, v=True)
        except Exception as exc:
            from podman.errors import NotFound

            if not isinstance(exc, NotFound):
                logger.warning(f"podman runner: could not remove container {container.id[:12]}: {exc}")
        self._live.pop(container.id, None)

    async def close(self) -> None:
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        if self._live and self._url:
            import podman

            with podman.PodmanClient(base_url=self._url) as client:
                for cid in list(self._live):
                    with contextlib.suppress(Exception):  # removed meanwhile
                        client.containers.get(cid).remove(force=True)
                    self._live.pop(cid, None)
        if self._service is not None:
            self._service.stop()
            self._service = None
            self._url = self.settings.url or None
            self._checked = False
