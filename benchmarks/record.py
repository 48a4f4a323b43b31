"""What every benchmark script does with its results, in one way: a :class:`Record` started with the script
holds the command line that produced them and the machine they were measured on; ``finish`` prints the
Markdown and, given ``--out`` (benchmarks/results/NAME.md), writes it there and NAME.json beside it holding
the command, the machine and the script's figures (the numbers behind the Markdown).

    record = Record()  # first thing in main(): the command, the UTC time and the load average before
    ...                # measure; build `lines` (the Markdown) and `figures` (a dict of what was measured)
    record.finish(lines, args.out, figures)

Results files are named in kebab-case (``score-throughput.md``).
"""

from __future__ import annotations

import json
import math
import os
import platform
import shlex
import sys
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from emolab.outputs import atomic_write

# the libraries that do the measured work, by their distribution names: the installed versions are recorded (the
# commands a benchmark starts as processes run the same installation)
LIBRARIES = {"emolab": ("emolab",), "torch": ("torch",), "onnxruntime": ("onnxruntime", "onnxruntime-gpu"),
             "transformers": ("transformers",)}


def command() -> str:
    """This script's command line, as recorded in its results."""
    return "python " + " ".join(shlex.quote(a) for a in sys.argv)


def load_average() -> list[float]:
    """The 1 / 5 / 15-minute load average: above the core count, other work shared the cores."""
    return [round(x, 2) for x in os.getloadavg()]


def versions() -> dict[str, str]:
    """The installed version of each of :data:`LIBRARIES` (absent when not installed)."""
    found = {}
    for name, distributions in LIBRARIES.items():
        for distribution in distributions:
            try:
                found[name] = metadata.version(distribution)
                break
            except metadata.PackageNotFoundError:
                continue
    return found


def plain(value):
    """``value`` as JSON can hold it: numpy numbers and arrays as numbers and lists, paths as text, NaN and
    infinities as null."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [plain(v) for v in value]
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return plain(value.tolist())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    return value


class Record:
    """One benchmark's record, started when the script starts."""

    def __init__(self) -> None:
        self.command = command()
        self.started = datetime.now(timezone.utc)
        self.load_before = load_average()
        self._clock = time.perf_counter()
        self._machine: dict | None = None

    def machine(self) -> dict:
        """CPU count, platform, library versions, GPU, load average before and after, UTC start and wall minutes.
        The first call fixes the values at the end of the measurements, so the Markdown that quotes them and
        the JSON agree."""
        if self._machine is None:
            self._machine = self._now()
        return self._machine

    def _now(self) -> dict:
        gpu = None  # named when the script used torch and torch sees a GPU (torch is not imported to ask)
        if "torch" in sys.modules and sys.modules["torch"].cuda.is_available():
            gpu = sys.modules["torch"].cuda.get_device_name()
        return {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                "processor": platform.processor() or platform.machine(), "python": platform.python_version(),
                "versions": versions(), "gpu": gpu, "load_before": self.load_before, "load_after": load_average(),
                "started_utc": f"{self.started:%Y-%m-%d %H:%M}",
                "wall_minutes": round((time.perf_counter() - self._clock) / 60, 2)}

    def save(self, lines: list[str], out: Path | str | None, figures: dict) -> str:
        """Write the Markdown to ``out`` and the command, machine and figures to ``out`` with ``.json``; the
        Markdown. Called again as results come in, it rewrites both (an interrupted benchmark keeps them)."""
        text = "\n".join(lines) + "\n"
        if out:
            out = Path(out)
            record = {"command": self.command, "machine": self._machine or self._now(), "figures": figures}
            atomic_write(out, text)
            atomic_write(out.with_suffix(".json"), json.dumps(plain(record), indent=1, ensure_ascii=False) + "\n")
        return text

    def finish(self, lines: list[str], out: Path | str | None, figures: dict) -> str:
        """The end of the benchmark: print the Markdown and save it (and the JSON) when ``out`` is given."""
        self.machine()
        text = self.save(lines, out, figures)
        print(text)
        return text
