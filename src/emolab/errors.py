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


def did_you_mean(name: object, valid) -> str:
    """`` (did you mean 'x'?)`` for a near miss among ``valid``, else an empty string."""
    import difflib

    close = difflib.get_close_matches(str(name), [str(v) for v in valid], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown_name_message(kind: str, name: str, valid) -> str:
    """``unknown model 'vgg' (did you mean 'vgg-fer'?); choose one of: ...``, for one line of a config error."""
    return f"unknown {kind} {name!r}{did_you_mean(name, valid)}; choose one of: {', '.join(sorted(valid))}"


def unknown_name(kind: str, name: str, valid: list[str] | tuple[str, ...]) -> EmolabError:
    """The error for a name missing from a registry, listing the valid names (and the nearest one)."""
    return EmolabError(f"unknown {kind} {name!r}{did_you_mean(name, valid)}",
                       hint=f"choose one of: {', '.join(sorted(valid))}")
