"""The ray runner: each trial is a Ray task with its own resource request.

The orchestrator's side (this module) ships the job, the code text and the data to the task: the
data goes into Ray's object store once per data set and every trial's task refers to it, so no
shared file system is needed. The task (:func:`neuromosaic_trial`, see
:mod:`neuromosaic_runner_ray.worker`) runs the harness sandboxed in a private directory on
whichever node Ray picks and returns the result and the weights' bytes; only this side writes
files (``job.json``, ``output.log``, ``result.json``, the weights). A trial trained in segments
(``job.max_epochs``) ships its checkpoint the same way: the file at ``job.checkpoint_path`` goes to
the task with the job, and what the harness left comes back and replaces it (atomically); a
successful reply without one means training reached its end, and the file is deleted.

A task whose Ray worker process or node dies is re-run by Ray up to ``max_retries`` times; after
that the trial fails with class ``crash`` and the message ``ray worker died ...``, and the search
goes on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import socket
import sys
from pathlib import Path
from typing import Any

import attrs
from loguru import logger

from neuromosaic_core.errors import ConfigError, NeuromosaicError
from neuromosaic_core.interfaces import Runner, TrialJob
from neuromosaic_core.model import ErrorClass, TrialResult, converter
from neuromosaic_runner_ray import RayRunnerSettings

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report to Anyscale unless asked for

#: The ``ray`` module, imported by the first runner that connects: Ray reads ``RAY_AUTH_MODE`` when
#: it is imported, and a private local cluster sets it first (see ``RayRunner._private_token``).
ray: Any = None


def _import_ray() -> Any:
    global ray
    if ray is None:
        try:
            import ray as module
            import ray.exceptions  # noqa: F401
        except ImportError:  # the plugin depends on ray; a broken install lands here
            raise RayClusterError("runner=ray needs Ray: pip install 'ray>=2.40'") from None
        ray = module
    return ray

#: Seconds to wait for a TCP answer from ``runner.address`` before giving up with a clear message
#: (``ray.init`` itself retries for a minute).
PROBE_TIMEOUT_S = 5.0


class RayClusterError(NeuromosaicError):
    """The Ray cluster cannot be reached or cannot run a trial of the requested size."""


def neuromosaic_trial(job: dict[str, Any], code: str, data: bytes, limits: dict[str, Any],
                      checkpoint: bytes | None = None) -> dict[str, Any]:
    """The Ray task (its worker shows as ``ray::neuromosaic_trial``): one trial on this node."""
    import ray as worker_ray

    from neuromosaic_runner_ray.worker import execute_trial

    reply = execute_trial(job, code, data, limits, checkpoint)
    reply["node"] = worker_ray.get_runtime_context().get_node_id()
    return reply


class RayRunner(Runner):
    """Joins ``settings.address`` (or starts a local cluster) when built; see the module docstring."""

    def __init__(self, settings: RayRunnerSettings | None = None) -> None:
        self.settings = settings or RayRunnerSettings()
        self._owns_ray = False
        self._env_set: dict[str, str] = {}
        self._data: dict[tuple[str, int, int], Any] = {}  # (path, mtime, size) -> ObjectRef of the bytes
        self._connect()
        self.workers = self._resolve_workers()
        self._task = ray.remote(neuromosaic_trial).options(
            num_cpus=self.settings.num_cpus, num_gpus=self.settings.num_gpus,
            max_retries=self.settings.max_retries, retry_exceptions=False,
        )

    # -- the cluster ---------------------------------------------------------------------------

    def _connect(self) -> None:
        address = self.settings.address.strip()
        if not address and "ray" not in sys.modules:
            self._private_token()
        _import_ray()
        if ray.is_initialized():  # a library user connected already: use that, leave it open
            self._forget_token()
            return
        quiet: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False}
        try:
            if address:
                self._probe(address)
                ray.init(address=address, **quiet)
            else:
                ray.init(include_dashboard=False, _temp_dir=self.settings.temp_dir or None, **quiet)
        except NeuromosaicError:
            raise
        except Exception as exc:  # ray raises ConnectionError, RuntimeError, ValueError...
            self._forget_token()
            where = f"join the Ray cluster at runner.address={address!r}" if address else "start a local Ray cluster"
            raise RayClusterError(f"cannot {where}: {_first_line(exc)}") from None
        self._owns_ray = True
        logger.info(f"ray: {'joined ' + address if address else 'started a local cluster'}: "
                    f"{_describe_resources(ray.cluster_resources())} on {len(_alive_nodes())} node(s)")
        try:
            self._check_feasible()
        except RayClusterError:
            ray.shutdown()
            self._owns_ray = False
            self._forget_token()
            raise

    def _private_token(self) -> None:
        """A private local cluster gets a token of its own through the environment (inherited by
        the Ray processes it starts), unless the user chose a mode: Ray would otherwise write a
        token to ``~/.ray/auth_token``, which later changes how ``ray start`` behaves. Only
        before this process imports ray: Ray reads the mode on import, and a mode set later makes
        the local cluster fail to start."""
        if "RAY_AUTH_MODE" in os.environ or "RAY_AUTH_TOKEN" in os.environ:
            return
        self._env_set = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
        os.environ.update(self._env_set)

    @staticmethod
    def _probe(address: str) -> None:
        """Fail fast, in one line, when nothing listens at ``host:port``."""
        if address == "auto" or "://" in address:
            return
        host, sep, port = address.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ConfigError(f"runner.address={address!r}: expected host:port (the address `ray start --head` "
                              "prints), 'auto', or empty to start a local cluster")
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_TIMEOUT_S).close()
        except OSError as exc:
            raise RayClusterError(
                f"runner.address={address!r}: no Ray cluster answers there ({exc.strerror or exc}); start one "
                "with `ray start --head` or leave runner.address empty to start a local cluster") from None

    def _check_feasible(self) -> None:
        """A trial nobody can run would wait forever: refuse it now, naming the largest node."""
        s = self.settings
        nodes = [n["Resources"] for n in _alive_nodes()]
        if any(r.get("CPU", 0) >= s.num_cpus and r.get("GPU", 0) >= s.num_gpus for r in nodes):
            return
        largest = max(nodes, key=lambda r: (r.get("GPU", 0), r.get("CPU", 0)), default={})
        raise RayClusterError(
            f"no node of the Ray cluster can run a trial with runner.num_cpus={s.num_cpus:g} and runner.num_gpus="
            f"{s.num_gpus:g} (the largest has {largest.get('CPU', 0):g} CPUs and {largest.get('GPU', 0):g} GPUs); "
            "lower them or add a node")

    def _resolve_workers(self) -> int:
        if self.settings.workers != "auto":
            return max(1, int(self.settings.workers))
        total = ray.cluster_resources()
        fits = []
        if self.settings.num_cpus > 0:
            fits.append(total.get("CPU", 0) // self.settings.num_cpus)
        if self.settings.num_gpus > 0:
            fits.append(total.get("GPU", 0) // self.settings.num_gpus)
        return max(1, int(min(fits) if fits else total.get("CPU", 1)))

    # -- trials --------------------------------------------------------------------------------

    def _data_ref(self, path: str) -> Any:
        """The data set's bytes in the object store, put there once per file (and version)."""
        stat = Path(path).stat()
        key = (str(Path(path).resolve()), stat.st_mtime_ns, stat.st_size)
        if key not in self._data:
            self._data[key] = ray.put(Path(path).read_bytes())
        return self._data[key]

    def _limits(self) -> dict[str, Any]:
        # RLIMIT_NPROC counts every process and thread of the sandbox's uid on the node, and every
        # trial there (and any other sandboxed run) shares that uid: a small limit makes
        # concurrent trials fail to start (EAGAIN), so it is a node-wide fork-bomb guard here.
        return {"memory_mb": self.settings.memory_mb, "processes": self.settings.processes}

    async def run_trial(self, job: TrialJob) -> TrialResult:
        trial_dir = Path(job.result_path).parent
        trial_dir.mkdir(parents=True, exist_ok=True)
        unstructured = converter.unstructure(job)
        (trial_dir / "job.json").write_text(json.dumps(unstructured))
        code = Path(job.code_path).read_text() if job.code_path else ""
        checkpoint = Path(job.checkpoint_path) if job.checkpoint_path else None
        state = checkpoint.read_bytes() if checkpoint is not None and checkpoint.is_file() else None
        ref = self._task.remote(unstructured, code, self._data_ref(job.data_path), self._limits(), state)
        log = logger.bind(experiment=job.experiment, trial=job.trial_id)
        try:
            reply = await ref
        except asyncio.CancelledError:
            _cancel(ref)
            raise
        except Exception as exc:  # noqa: BLE001 - every Ray failure becomes a failed trial
            result = self._ray_failure(exc)
            log.warning(f"ray: {result.error.message}")  # type: ignore[union-attr]
            return result
        (trial_dir / "output.log").write_text(reply["output"])
        result = converter.structure(reply["result"], TrialResult)
        weights_path = None
        if reply["weights"] is not None and job.weights_path:
            Path(job.weights_path).parent.mkdir(parents=True, exist_ok=True)
            Path(job.weights_path).write_bytes(reply["weights"])
            weights_path = job.weights_path
        if checkpoint is not None and result.ok:
            _settle_checkpoint(checkpoint, reply.get("checkpoint"))
        # the learning curve and the fidelity go through; ``pruned`` is the scheduler's word, never a trial's
        result = attrs.evolve(result, metrics={**result.metrics, **reply["resources"]}, weights_path=weights_path,
                              pruned=False)
        Path(job.result_path).write_text(json.dumps(converter.unstructure(result)))
        log.debug(f"ray: ran on node {reply['node'][:12]} ({reply['host']}, {reply['isolation']})")
        return result

    def _ray_failure(self, exc: BaseException) -> TrialResult:
        E = ray.exceptions
        retries = self.settings.max_retries
        tried = f" (tried {retries + 1} times)" if retries else " (runner.max_retries=0)"
        if isinstance(exc, E.TaskCancelledError):
            return TrialResult.failure(ErrorClass.CRASH, "ray task was cancelled outside neuromosaic")
        if isinstance(exc, E.OutOfMemoryError):
            return TrialResult.failure(ErrorClass.CRASH, f"ray killed the trial's worker, its node was out of memory{tried}: "
                                                         f"{_first_line(exc)}")
        if isinstance(exc, E.RayTaskError):
            cause = exc.cause if getattr(exc, "cause", None) is not None else exc
            hint = ("; is neuromosaic-runner-ray installed on every node?"
                    if isinstance(cause, ImportError) else "")
            return TrialResult.failure(ErrorClass.RUNTIME, f"ray task failed on its worker: "
                                                           f"{type(cause).__name__}: {_first_line(cause)}{hint}")
        return TrialResult.failure(ErrorClass.CRASH, f"ray worker died{tried}: {type(exc).__name__}: {_first_line(exc)}")

    async def close(self) -> None:
        self._data.clear()
        if self._owns_ray and ray.is_initialized():
            ray.shutdown()
        self._owns_ray = False
        # The token stays in the environment: Ray read the auth mode when this process imported it,
        # and the next local cluster of this process (a Hydra multirun's next job) needs the same.

    def _forget_token(self) -> None:
        for key in self._env_set:
            os.environ.pop(key, None)
        self._env_set = {}


def _settle_checkpoint(path: Path, state: bytes | None) -> None:
    """After a successful segment: keep the checkpoint the harness left, written whole (a temporary
    file renamed over the old one), or delete the old one when it left none (training ended)."""
    if state is None:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(state)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _cancel(ref: Any) -> None:
    try:
        ray.cancel(ref, force=True)  # kills the worker process; the sandbox dies with it
    except Exception as exc:  # noqa: BLE001 - already finished, or the cluster is gone
        logger.debug(f"ray: cancel: {exc}")


def _alive_nodes() -> list[dict[str, Any]]:
    return [n for n in ray.nodes() if n.get("Alive")]


def _describe_resources(resources: dict[str, float]) -> str:
    gpus = resources.get("GPU", 0)
    return f"{resources.get('CPU', 0):g} CPUs" + (f", {gpus:g} GPUs" if gpus else "")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0].strip() if text else type(exc).__name__
