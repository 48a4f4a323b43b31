"""Errors a user can cause. The CLI prints them without a traceback and exits with code 2."""

from __future__ import annotations


class EmolabError(Exception):
    """A problem with the user's input: says where (file, line or key) and how to fix it."""

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  fix: {self.hint}"


class ConfigError(EmolabError):
    """One or more invalid config keys or values; ``problems`` holds every one found."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid config {source} ({len(self.problems)} problem(s)):\n{lines}")


class DataError(EmolabError):
    """A dataset file that is missing, malformed or disagrees with its label set."""


def unknown_name(kind: str, name: str, valid: list[str] | tuple[str, ...]) -> EmolabError:
    """The error for a name missing from a registry, listing the valid names."""
    return EmolabError(f"unknown {kind} {name!r}", hint=f"choose one of: {', '.join(sorted(valid))}")
