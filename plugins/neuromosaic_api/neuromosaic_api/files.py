"""Files under a run directory, served only when they really lie inside it.

A requested relative path is joined to the base directory and resolved (``..`` collapsed,
symbolic links followed) before it is checked, so ``..``, an absolute path, an encoded slash
(decoded before routing) and a symbolic link pointing elsewhere all end outside the base and are
refused the same way as a missing file (404): the client learns nothing about the rest of the
file system.
"""

from __future__ import annotations

import re
from pathlib import Path

#: What an experiment name may look like to become a directory name under the runs root.
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


def inside(base: Path, relative: str) -> Path | None:
    """The regular file ``base/relative`` resolves to when it lies inside ``base``, else None."""
    if not relative or "\x00" in relative:
        return None
    try:
        root = base.resolve()
        candidate = (root / relative).resolve()
    except (OSError, RuntimeError, ValueError):  # a symlink loop, a name too long
        return None
    if not candidate.is_relative_to(root) or not candidate.is_file():
        return None
    return candidate


def run_dir(runs: Path, experiment: str) -> Path | None:
    """``runs/<experiment>`` when the name is a plain directory name (no separators, no ``..``)."""
    if not SAFE_NAME.match(experiment):  # starts with a letter or digit: never "." or ".."
        return None
    return runs / experiment


def list_files(base: Path) -> list[str]:
    """Regular files under ``base`` that resolve inside it, as sorted relative POSIX paths."""
    if not base.is_dir():
        return []
    found = []
    for path in base.rglob("*"):
        relative = path.relative_to(base).as_posix()
        if inside(base, relative) is not None:
            found.append(relative)
    return sorted(found)
