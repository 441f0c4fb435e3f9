"""Errors a user can cause. The CLI prints their message (one line, says what to do) and exits 2."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import NoReturn


class NeuromosaicError(Exception):
    """Base of all user-facing errors: the message is meant for people, not a traceback."""

    exit_code = 2


class ConfigError(NeuromosaicError):
    """A setting is unknown, mistyped or out of range."""


class UnknownComponentError(ConfigError):
    """No installed plugin registers a component of that kind and name."""

    def __init__(self, kind: str, name: str, choices: list[str]) -> None:
        valid = ", ".join(choices) if choices else "none installed"
        super().__init__(f"{kind}={name!r} is not an installed {kind}; valid choices: {valid}")
        self.kind, self.name, self.choices = kind, name, choices


class DuplicateComponentError(NeuromosaicError):
    """Two plugins registered the same name for the same kind."""


class StorageError(NeuromosaicError):
    """The results database cannot be opened or is of an incompatible schema."""


def run_console_script(prog: str, command: Callable[[], int],
                       quiet: tuple[type[BaseException], ...] = ()) -> NoReturn:
    """Exit with ``command()``'s code; an error becomes one line on stderr (``prog: error: ...``)
    and its exit code (2 for a user's mistake, 1 for anything unexpected), never a traceback.
    Exceptions in ``quiet`` end the program with 0 (a reader that left a pipe, say)."""
    try:
        code = command()
    except NeuromosaicError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except quiet:
        sys.exit(0)
    except Exception as exc:
        print(f"{prog}: error: unexpected {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)
    sys.exit(code)
