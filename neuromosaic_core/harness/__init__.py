"""The trial harness, run as ``python -m neuromosaic_core.harness JOB.json`` by every runner."""

from neuromosaic_core.harness.training import load_generated_module, run_job

__all__ = ["load_generated_module", "run_job"]
