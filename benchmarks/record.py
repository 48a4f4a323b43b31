"""What every benchmark script does with its results: name the command that produced them, then print the
Markdown and write it to ``--out`` when given (benchmarks/results/)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path


def command() -> str:
    """This script's command line, as recorded in its results file."""
    return "python " + " ".join(shlex.quote(a) for a in sys.argv)


def finish(lines: list[str], out: Path | None) -> str:
    text = "\n".join(lines) + "\n"
    print(text)
    if out:
        out.write_text(text)
    return text
