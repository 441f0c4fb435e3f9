"""``neuromosaic-export EXPERIMENT [--trial N] --format FORMAT -o DIR [--db URL]``.

Start-up is light (argparse and the core's error handling): torch, onnx and onnxruntime are
imported only once the export runs. Every error is one line and a non-zero exit (2: the request
cannot be done; 1: the export failed or disagrees with the PyTorch model and was refused).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from neuromosaic_core.errors import run_console_script

PROG = "neuromosaic-export"
FORMATS = ("onnx", "torchscript", "exported-program")  # neuromosaic_export.export.FORMATS, without importing it


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, as every other error
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Export a trial's trained model (the experiment's best by default) with a "
                                            "model card, checked against the PyTorch model on the task's test data.")
    parser.add_argument("experiment", help="experiment name (see `neuromosaic-results list`)")
    parser.add_argument("--trial", type=int, default=None, metavar="N",
                        help="trial number (default: the experiment's best by its search metric)")
    parser.add_argument("--format", required=True, choices=FORMATS, help="onnx, torchscript or exported-program")
    parser.add_argument("-o", "--output", required=True, metavar="DIR", help="directory to write (new or empty)")
    parser.add_argument("--db", "--url", dest="url", default=None,
                        help="results database URL (default: $NEUROMOSAIC_STORAGE_URL or sqlite:///neuromosaic.db)")
    parser.add_argument("--runs", default="runs", metavar="DIR",
                        help="folder of the run directories, used when the paths the database holds do not exist "
                             "here (default: runs)")
    parser.add_argument("--tolerance", type=float, default=1e-4,
                        help="largest absolute difference of outputs accepted (default 1e-4)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds the sandboxed export may take (default 600)")
    parser.add_argument("--isolation", choices=("auto", "bubblewrap", "process-group"), default="auto",
                        help="sandbox for the model's code, as runner.isolation (default auto: bubblewrap where installed)")
    return parser


def open_results(url: str) -> Any:
    """The results database (a seam for tests)."""
    from neuromosaic_core.results import open_results as open_db

    return open_db(url)


def run(args: argparse.Namespace) -> int:
    from neuromosaic_core.results import default_url
    from neuromosaic_export.export import export_trial

    db = open_results(args.url or default_url())
    try:
        done = export_trial(db, args.experiment, args.format, args.output, trial=args.trial, runs=args.runs,
                            tolerance=args.tolerance, timeout_s=args.timeout, isolation=args.isolation)
    finally:
        db.close()
    files = ", ".join([*done.files, "README.md"])
    print(f"exported trial {done.trial} of {args.experiment} as {done.format} to {done.directory} ({files}); "
          f"checked against PyTorch: {done.verification.describe()}")
    return 0


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    run_console_script(PROG, lambda: run(args), quiet=(BrokenPipeError,))


if __name__ == "__main__":  # pragma: no cover
    main()
