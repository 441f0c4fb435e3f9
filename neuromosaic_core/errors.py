"""Errors a user can cause. The CLI prints their message (one line, says what to do) and exits 2."""

from __future__ import annotations


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
