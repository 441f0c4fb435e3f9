"""Code generation support: validation of untrusted code and the extract/validate/repair pipeline."""

from neuromosaic_core.codegen.pipeline import CodeGenFailed, CodeGenOutcome, cache_key, extract_code, generate_validated_code
from neuromosaic_core.codegen.validation import CodeRejected, validate_code

__all__ = ["CodeGenFailed", "CodeGenOutcome", "CodeRejected", "cache_key", "extract_code", "generate_validated_code", "validate_code"]
