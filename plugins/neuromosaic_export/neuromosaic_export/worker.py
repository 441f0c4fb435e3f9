"""What runs inside the sandbox: ``python -m neuromosaic_export.worker JOB.json``.

Loads the trial's generated module (validated again, as the trial harness does) and its weights,
exports the model in the job's format into the working directory (the sandbox's only writable
place), runs the model on the test inputs batch by batch and, for TorchScript and a
``torch.export`` program, loads the export back from its file and runs it on the same batches; the
outputs go to ``outputs.npz``. It decides nothing: the process that started it compares the
outputs (and runs an ONNX file itself with onnxruntime), checks the files and moves them. A
failure is one line on stderr (``neuromosaic-export-worker: ...``) and exit code 1.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch is imported: one intra-op thread

#: The file each format writes in the working directory (ONNX may add ``model.onnx.data``).
FILES = {"onnx": "model.onnx", "torchscript": "model.pt", "exported-program": "model.pt2"}
OUTPUTS = "outputs.npz"
REPORT = "worker.json"
PREFIX = "neuromosaic-export-worker:"


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def first_line(exc: BaseException, limit: int = 300) -> str:
    """An exception's message in one line, without terminal colours."""
    lines = [line.strip() for line in _ANSI.sub("", str(exc)).splitlines() if line.strip()]
    return lines[0][:limit] if lines else ""


class WorkerError(Exception):
    """A step failed: the message is the one line the user sees."""


def _check_code(code_path: str) -> None:
    """The static validation a trial's code gets, before torch is imported (rejected code costs no
    start-up). Called through the harness module, where the hostile corpus's test seam replaces it."""
    from neuromosaic_core.codegen.validation import CodeRejected
    from neuromosaic_core.harness import training

    try:
        training.validate_code(Path(code_path).read_text())
    except CodeRejected as exc:
        raise WorkerError(f"the trial's code is rejected by validation: {exc}") from None


def _load_model(code_path: str, weights_path: str) -> Any:
    import torch

    from neuromosaic_core.codegen.validation import CodeRejected
    from neuromosaic_core.harness.training import load_generated_module

    try:
        module = load_generated_module(code_path, "neuromosaic_exported_model")
    except CodeRejected as exc:
        raise WorkerError(f"the trial's code is rejected by validation: {exc}") from None
    except Exception as exc:
        raise WorkerError(f"loading the trial's code failed: {type(exc).__name__}: {exc}") from None
    try:
        model = module.Net()
        model.load_state_dict(torch.load(weights_path, map_location="cpu", weights_only=True))
    except Exception as exc:
        raise WorkerError(f"building Net with the trial's weights failed: {type(exc).__name__}: {exc}") from None
    return model.eval()


def _batches(x: Any, size: int) -> Any:
    for i in range(0, len(x), size):
        yield x[i:i + size]


def _export(model: Any, fmt: str, example: Any, target: Path) -> None:
    import torch

    batch = ({0: torch.export.Dim.AUTO},)  # any batch size
    if fmt == "torchscript":
        traced = torch.jit.trace(model, (example,), check_trace=False)
        torch.jit.save(traced, str(target))
    elif fmt == "exported-program":
        program = torch.export.export(model, (example,), dynamic_shapes=batch)
        torch.export.save(program, str(target))
    elif fmt == "onnx":
        torch.onnx.export(model, (example,), str(target), dynamo=True, dynamic_shapes=batch, input_names=["input"],
                          output_names=["output"], external_data=False, verbose=False)
    else:
        raise WorkerError(f"unknown format {fmt!r}")


def _load_export(fmt: str, target: Path) -> Any:
    """A callable numpy batch -> numpy outputs, loaded from the file alone (not from the model object)."""
    import torch

    module = torch.jit.load(str(target)) if fmt == "torchscript" else torch.export.load(str(target)).module()

    def run(x: Any) -> Any:
        with torch.no_grad():
            return module(torch.from_numpy(x)).numpy()

    return run


def run(job: dict[str, Any]) -> dict[str, Any]:
    _check_code(job["code"])
    import numpy as np
    import torch

    torch.set_num_threads(1)
    fmt, batch_size = job["format"], int(job["batch_size"])
    x = np.load(job["inputs"], allow_pickle=False)["x"].astype(np.float32)
    model = _load_model(job["code"], job["weights"])
    reference = []
    with torch.no_grad():
        for xb in _batches(x, batch_size):
            reference.append(model(torch.from_numpy(xb)).numpy())
    target = Path.cwd() / FILES[fmt]
    example = torch.from_numpy(x[:min(len(x), batch_size, 8)])
    try:
        _export(model, fmt, example, target)
    except WorkerError:
        raise
    except Exception as exc:
        root = exc
        while root.__cause__ is not None:  # torch.onnx wraps torch.export's error: say what torch.export said
            root = root.__cause__
        raise WorkerError(f"torch could not export the model as {fmt}: {type(root).__name__}: {first_line(root)}") from None
    outputs = {"reference": np.concatenate(reference).astype(np.float32)}
    if fmt != "onnx":  # an ONNX file is run by the process that started this one, outside the sandbox
        try:
            exported_fn = _load_export(fmt, target)
            exported = [exported_fn(np.ascontiguousarray(xb)) for xb in _batches(x, batch_size)]
        except Exception as exc:
            raise WorkerError(f"the {fmt} export does not load or run: {type(exc).__name__}: {first_line(exc)}") from None
        outputs["exported"] = np.concatenate(exported).astype(np.float32)
    np.savez(OUTPUTS, **outputs)
    versions = {"torch": torch.__version__}
    if fmt == "onnx":
        import onnx
        import onnxscript

        versions.update(onnx=onnx.__version__, onnxscript=onnxscript.__version__)
    return {"versions": versions}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m neuromosaic_export.worker JOB.json", file=sys.stderr)
        return 2
    job = json.loads(Path(args[0]).read_text())
    try:
        report = run(job)
    except WorkerError as exc:
        print(f"{PREFIX} {exc}", file=sys.stderr, flush=True)
        return 1
    except Exception as exc:  # the model's own forward failed, say: one line, as for every failure
        print(f"{PREFIX} {type(exc).__name__}: {first_line(exc)}", file=sys.stderr, flush=True)
        return 1
    Path(REPORT).write_text(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
