"""Entry point of the trial harness: ``python -m neuromosaic_core.harness JOB.json``.

Reads a :class:`~neuromosaic_core.interfaces.TrialJob` as JSON, runs it, writes the
:class:`~neuromosaic_core.model.TrialResult` to ``job.result_path`` and exits 0; the runner reads
the result file. A missing result file means the process died (crash, out of memory, killed).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch is imported: one intra-op thread


def main(argv: list[str] | None = None) -> int:
    from neuromosaic_core.harness.training import run_job
    from neuromosaic_core.interfaces import TrialJob
    from neuromosaic_core.model import converter

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m neuromosaic_core.harness JOB.json", file=sys.stderr)
        return 2
    job = converter.structure(json.loads(Path(args[0]).read_text()), TrialJob)
    result = run_job(job)
    tmp = Path(job.result_path + ".tmp")
    tmp.write_text(json.dumps(converter.unstructure(result)))
    tmp.replace(job.result_path)  # atomic: a reader never sees half a result
    return 0


if __name__ == "__main__":
    sys.exit(main())
