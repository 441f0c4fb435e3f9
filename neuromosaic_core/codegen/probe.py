"""The sandboxed probe and the fidelity check: does untrusted code build the network the spec asks for?

:func:`probe_code` runs the code once in a sandboxed child process (never in the orchestrator's
process), forked by a warm worker of :mod:`neuromosaic_core.sandbox.pool` that imported torch once
(the local runner's ``mode=pool`` workers; a fresh Python per answer paid ~3 s of start-up): it
re-validates it, builds ``Net()``, runs ``forward`` on a dummy batch in eval mode and records,
in call order, the operations the forward pass runs (``F.linear``, ``F.conv1d``, norms,
activations, dropout, pooling, and softmax/sigmoid, which the contract forbids at the end) through
a ``TorchFunctionMode`` — so modules and functional calls count alike. The worker runs in the
same sandbox as a trial (:mod:`neuromosaic_core.sandbox`: bubblewrap where installed, uid 65534,
no network, hide by default, its job directory the only writable place), each answer's child with
an empty private ``/tmp``, CPU-time, memory, file-size and output limits and a minimal
environment, killed whole on timeout.

:func:`check_fidelity` compares that trace with the spec's analytic layers (``layers.analyse``)
and the parameter count with the spec's, and says what differs in words an LLM can act on. A
graph spec is compared as a graph: the trace records which operation each one reads, and
:mod:`neuromosaic_core.codegen.fidelity` matches that dataflow with the spec's nodes.
"""

from __future__ import annotations

import difflib
import json
import os
import stat
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from neuromosaic_core.codegen.fidelity import Flow, Op, describe_op, expected_graph, graph_fidelity, is_graph
from neuromosaic_core.layers import analyse
from neuromosaic_core.model import ArchitectureSpec
from neuromosaic_core.sandbox import Limits
from neuromosaic_core.sandbox.pool import PoolConfig, SyncWarmPool


@attrs.frozen
class ProbeReport:
    """What the probe saw. ``error`` is set when the code could not be built or run."""

    error: str | None = None
    params: int = 0
    output_shape: tuple[int, ...] = ()
    ops: tuple[Op, ...] = ()
    flow: tuple[Flow, ...] = ()  # per op: the ops it reads (-1: the input) and its output shape
    output_op: int | None = None  # the op whose result forward returned

    @property
    def ok(self) -> bool:
        return self.error is None


def _read_plain(path: Path, limit: int = 1 << 20) -> str | None:
    """A file the sandboxed code's process wrote: read only if it is a plain file (never through a
    link it planted), at most ``limit`` bytes; None otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            return None
        return f.read(limit).decode(errors="replace")


#: The probe's limits but the timeout: a forward pass on a batch of two needs little.
PROBE_LIMITS = Limits(timeout_s=60.0, file_size_mb=16, output_mb=1)
_pool: SyncWarmPool | None = None
_pool_lock = threading.Lock()


def probe_pool() -> SyncWarmPool:
    """The process's warm probe workers (one kept idle), started with the first probe."""
    global _pool
    with _pool_lock:
        if _pool is None:
            from neuromosaic_core.sandbox import resolve_isolation

            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
            _pool = SyncWarmPool(PoolConfig("neuromosaic_core.codegen.probe:main", sys.executable, resolve_isolation("auto"),
                                            PROBE_LIMITS, env, gpu=False), keep_idle=1)
        return _pool


def probe_code(code: str, input_shape: Sequence[int], num_classes: int, timeout: float = 60.0) -> ProbeReport:
    """Build and run ``code``'s ``Net`` once in a sandboxed child process; never raises for bad code."""

    def prepare(job_dir: Path) -> Path:
        (job_dir / "model.py").write_text(code)
        (job_dir / "job.json").write_text(json.dumps({"input_shape": list(input_shape), "num_classes": num_classes}))
        return job_dir / "job.json"

    with tempfile.TemporaryDirectory(prefix="neuromosaic-probe-") as tmp:
        limits = attrs.evolve(PROBE_LIMITS, timeout_s=timeout, cpu_seconds=int(timeout) + 1)
        outcome = probe_pool().run(prepare, limits, into=Path(tmp), keep=["report.json"])
        if outcome.timed_out:
            return ProbeReport(error=f"probe: building and running Net took longer than {timeout:g}s")
        text = _read_plain(Path(tmp, "report.json"))
        try:
            data = json.loads(text) if text is not None else None
        except json.JSONDecodeError:
            data = None
        if not isinstance(data, dict):
            tail = outcome.output.strip().splitlines()[-1:]
            return ProbeReport(error=f"probe: the code crashed the process ({(tail or [outcome.describe()])[0][:300]})")
    flow = tuple((tuple(sources), tuple(shape)) for sources, shape in data.get("flow", []))
    if data.get("error"):
        return ProbeReport(error=str(data["error"]), ops=tuple(tuple(op) for op in data.get("ops", [])), flow=flow)
    return ProbeReport(None, int(data["params"]), tuple(data["output_shape"]), tuple(tuple(op) for op in data["ops"]), flow,
                       data.get("output_op"))


# -- the fidelity check ---------------------------------------------------------------------------


def expected_ops(spec: ArchitectureSpec, input_shape: Sequence[int], num_classes: int) -> tuple[list[Op], int]:
    """The operations a faithful forward pass runs, in order, and the spec's parameter count (for a
    sequential spec; a graph is compared by :func:`~neuromosaic_core.codegen.fidelity.graph_fidelity`)."""
    ops, analysis = expected_graph(spec, input_shape, num_classes)
    return [w.op for w in ops], analysis.params


def check_fidelity(report: ProbeReport, spec: ArchitectureSpec, input_shape: Sequence[int], num_classes: int,
                   tolerance: float = 0.05) -> str | None:
    """None when the probed module matches the spec, else what differs (at most three places).

    When the forward pass failed, the calls it made before failing are compared with the spec's
    layers, so the complaint names the first layer that differs, not only the exception.
    """
    if report.error:
        return report.error + _where_it_went_wrong(report.ops, spec, input_shape, num_classes)
    if tuple(report.output_shape) != (2, num_classes):
        batch = ", ".join(map(str, input_shape))
        return f"shape: forward on a (2, {batch}) batch returned {tuple(report.output_shape)}, expected (2, {num_classes})"
    if is_graph(analyse(spec, input_shape, num_classes)):
        return graph_fidelity(report.ops, report.flow, report.output_op, report.params, spec, input_shape, num_classes, tolerance)
    want, params = expected_ops(spec, input_shape, num_classes)
    a, b = [describe_op(op) for op in want], [describe_op(op) for op in report.ops]
    problems: list[str] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        where = f"after {a[i1 - 1]}" if i1 > 0 else "at the start"
        if tag == "replace":
            problems.append(f"the spec has {', '.join(a[i1:i2])} {where}, the code runs {', '.join(b[j1:j2])}")
        elif tag == "delete":
            problems.append(f"missing {', '.join(a[i1:i2])} {where}")
        elif tag == "insert":
            problems.append(f"extra {', '.join(b[j1:j2])} {where} (not in the spec)")
    if problems:
        return "fidelity: " + "; ".join(problems[:3]) + ("; ..." if len(problems) > 3 else "") + \
            f". The spec's layers in order: {', '.join(a)}"
    if params and abs(report.params - params) > tolerance * params:
        return f"fidelity: the module has {report.params:,} parameters, the spec {params:,} (tolerance {tolerance:.0%})"
    return None


def _where_it_went_wrong(ops: Sequence[Op], spec: ArchitectureSpec, input_shape: Sequence[int], num_classes: int) -> str:
    if not ops:
        return ""
    try:
        if is_graph(analyse(spec, input_shape, num_classes)):
            return f". It fails at {describe_op(ops[-1])}, operation {len(ops)} of the forward pass"
        want = expected_ops(spec, input_shape, num_classes)[0]
    except ValueError:
        return ""
    for i, op in enumerate(ops):
        if i >= len(want):
            return f". The spec has {len(want)} layers; the code runs more: {describe_op(op)} is extra"
        if tuple(op) != tuple(want[i]):
            return (f". Layer {i + 1} is wrong: the spec has {describe_op(want[i])}, the code runs {describe_op(op)}. "
                    f"The spec's layers in order: {', '.join(describe_op(w) for w in want)}")
    return f". The first {len(ops)} layers match the spec; it fails at {describe_op(ops[-1])}"


# -- the child process ----------------------------------------------------------------------------

def _child(directory: str) -> dict[str, Any]:  # pragma: no cover - runs in the sandbox
    import torch

    from neuromosaic_core.codegen.validation import CodeRejected, validate_code
    from neuromosaic_core.harness.training import load_generated_module

    job = json.loads(Path(directory, "job.json").read_text())
    code_path = Path(directory, "model.py")
    try:
        validate_code(code_path.read_text())
    except CodeRejected as exc:
        return {"error": str(exc)}
    torch.set_num_threads(1)
    torch.manual_seed(0)
    try:
        model = load_generated_module(code_path).Net()
        model.eval()
    except Exception as exc:  # noqa: BLE001 - untrusted code: any failure is the answer
        return {"error": f"instantiate: Net() failed: {type(exc).__name__}: {exc}"}
    from neuromosaic_core.codegen.fidelity import trace_forward

    shape = (2, *job["input_shape"])
    try:
        with torch.no_grad():
            out, ops, flow, output_op = trace_forward(model, torch.zeros(shape))
    except Exception as exc:  # noqa: BLE001
        # the calls made up to the failure, the failing one last: the fidelity check says where it went wrong
        return {"error": f"shape: forward on a {shape} batch failed: {type(exc).__name__}: {exc}",
                "ops": getattr(exc, "ops", []), "flow": getattr(exc, "flow", [])}
    if not isinstance(out, torch.Tensor):
        return {"error": f"shape: forward returned {type(out).__name__}, expected a tensor"}
    params = sum(p.numel() for p in model.parameters())
    return {"params": int(params), "output_shape": list(out.shape), "ops": ops, "flow": flow, "output_op": output_op}


def warm_up(directory: str) -> None:  # pragma: no cover - runs in the sandbox
    """Probe a tiny network of our own in this process (the warm worker's warm-up)."""
    from neuromosaic_core.harness.__main__ import WARM_UP_MODEL

    Path(directory, "model.py").write_text(WARM_UP_MODEL)
    Path(directory, "job.json").write_text(json.dumps({"input_shape": [4], "num_classes": 2}))
    _child(directory)


def main(argv: list[str]) -> int:  # pragma: no cover - runs in the sandbox
    """The warm worker's entry: probe the job (``job.json`` beside ``model.py``), write ``report.json``."""
    directory = os.path.dirname(os.path.abspath(argv[0]))
    Path(directory, "report.json").write_text(json.dumps(_child(directory)))
    return 0
