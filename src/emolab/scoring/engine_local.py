"""The local engine of ``emolab score``: one process reads the input chunk by chunk, scores each chunk with
one :class:`~emolab.scoring.predictor.Predictor` and writes it as a part of ``OUT.partial/`` (resumable),
then assembles ``OUT``. Memory holds one chunk at a time, whatever the size of the input."""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from emolab.errors import EmolabError
from emolab.faces.detectors import DEFAULT_MIN_FACE
from emolab.scoring.readers import Source, open_source
from emolab.scoring.writers import PartWriter, output_format, partial_dir

Say = Callable[[str], None]


@dataclass
class ScoreOptions:
    """What ``emolab score`` was asked to do besides model, input and output."""

    column: str | None = None
    id_column: str | None = None
    keep: list[str] = field(default_factory=list)
    chunk_rows: int = 10_000
    batch_size: int | None = None
    threads: int | None = None
    detect: bool = True
    detector: str | None = None
    min_face: int = DEFAULT_MIN_FACE
    align: bool = False

    def __post_init__(self):
        if self.chunk_rows < 1:
            raise EmolabError(f"--chunk-rows must be at least 1, got {self.chunk_rows}", hint="e.g. --chunk-rows 10000")
        if self.batch_size is not None and self.batch_size < 1:
            raise EmolabError(f"--batch-size must be at least 1, got {self.batch_size}", hint="e.g. --batch-size 64")


@dataclass
class ScoreSummary:
    rows_in: int = 0
    rows_out: int = 0
    faces: int = 0
    blanks: int = 0
    errors: int = 0  # unreadable inputs (and, for faces, photos without a face are counted in no_face)
    no_face: int = 0
    seconds: float = 0.0
    resumed_chunks: int = 0
    resumed_rows: int = 0  # input rows scored before a resume (not part of this process's rows/s)

    def add(self, counts: dict) -> None:
        for k in ("rows_in", "rows_out", "faces", "blanks", "errors", "no_face"):
            setattr(self, k, getattr(self, k) + counts.get(k, 0))

    def line(self, out: Path) -> str:
        rate = (self.rows_in - self.resumed_rows) / self.seconds if self.seconds else 0.0
        faces = f", {self.faces:,} faces, {self.no_face:,} without a face" if self.faces or self.no_face else ""
        resumed = (f" (resumed: {self.resumed_chunks} chunk(s), {self.resumed_rows:,} rows, were finished before)"
                   if self.resumed_chunks else "")
        return (f"scored {self.rows_in:,} rows -> {self.rows_out:,} output rows{faces}, {self.blanks:,} blank, "
                f"{self.errors:,} unreadable, in {self.seconds:.1f} s ({rate:,.0f} rows/s){resumed} -> {out}")


def chunk_counts(source_rows: int, scored) -> dict:
    reasons = scored["reason"]
    counts = {"rows_in": source_rows, "rows_out": len(scored),
              "blanks": int((reasons == "blank").sum()),
              "errors": int(reasons.str.startswith("unreadable").sum())}
    if "face" in scored.columns:
        counts["faces"] = int(scored["face"].notna().sum())
        counts["no_face"] = int((reasons == "no face found").sum())
    return counts


def open_job(model_path: Path, input_spec, out: Path, options: ScoreOptions, *, resume: bool, overwrite: bool):
    """(the model's card, the input source) for a scoring into ``out``, the output checked first; an unfinished
    ``OUT.partial/`` is removed only with ``overwrite`` (and kept for ``resume``)."""
    from emolab.models import model_card

    if not model_path.exists():
        raise EmolabError(f"model not found: {model_path}", hint="give a run directory or an `emolab export` folder")
    card = model_card(model_path)
    source = open_source(input_spec, image=card.image, column=options.column, id_column=options.id_column,
                         keep=options.keep)
    check_output(out, source, resume=resume, overwrite=overwrite)
    if overwrite and not resume and partial_dir(out).exists():
        shutil.rmtree(partial_dir(out))
    return card, source


def check_output(out: Path, source: Source, *, resume: bool, overwrite: bool) -> None:
    """Refuse to touch an input, or an existing output without ``--overwrite``."""
    output_format(out)
    inputs = source.files if source.files is not None else [source.path]
    if any(out.resolve() == f.resolve() for f in inputs):
        raise EmolabError(f"--output {out} is the input", hint="write the scores to another file")
    if out.exists() and not overwrite:
        raise EmolabError(f"{out} exists", hint="pass --overwrite to replace it, or choose another --output")
    if out.exists() and out.is_dir():
        raise EmolabError(f"{out} is a folder", hint="give a file name ending .parquet, .csv or .jsonl")
    if partial_dir(out).exists() and not (resume or overwrite):
        raise EmolabError(f"{partial_dir(out)} holds an unfinished scoring",
                          hint="pass --resume to continue it, or --overwrite to start over")


def score(model_path: str | Path, input_spec: str | Path, out: str | Path, options: ScoreOptions | None = None, *,
          resume: bool = False, overwrite: bool = False, progress: bool = True, say: Say = print,
          predictor=None) -> ScoreSummary:
    """Score every row of ``input_spec`` with the model at ``model_path`` into ``out``; returns the counts."""
    from emolab.scoring.predictor import Predictor, model_fingerprint

    options = options or ScoreOptions()
    out = Path(out)
    model_path = Path(model_path)
    card, source = open_job(model_path, input_spec, out, options, resume=resume, overwrite=overwrite)
    fingerprint = {"model": model_fingerprint(model_path), "input": source.fingerprint(),
                   "options": {k: v for k, v in asdict(options).items() if k not in ("batch_size", "threads")}}
    writer = PartWriter(out, fingerprint)
    done = writer.start(resume=resume)
    summary = ScoreSummary(resumed_chunks=done)
    for c in writer.chunks:
        summary.add(c)
    summary.resumed_rows = summary.rows_in
    predictor = predictor or Predictor(model_path, column=source.column, keep_input=source.column in options.keep,
                                       batch_size=options.batch_size, threads=options.threads,
                                       detect=options.detect, detector=options.detector, min_face=options.min_face,
                                       align=options.align)
    start = time.perf_counter()
    with _progress(progress, source.total, summary.rows_in) as advance:
        for chunk in source.chunks(options.chunk_rows, skip=done):
            scored = predictor(chunk)
            counts = chunk_counts(len(chunk), scored)
            writer.write(scored, counts)
            summary.add(counts)
            advance(len(chunk))
    writer.finish()
    summary.seconds = time.perf_counter() - start
    say(summary.line(out))
    return summary


class _progress:
    """A rich progress bar (rows, rows/s, ETA) on a terminal; nothing elsewhere."""

    def __init__(self, show: bool, total: int | None, done: int):
        self.show, self.total, self.done = show, total, done

    def __enter__(self):
        if not self.show:
            return lambda n: None
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        class _Rate(TextColumn):
            def render(self, task):
                from rich.text import Text

                return Text(f"{task.speed or 0:,.0f} rows/s")

        self.bar = Progress(TextColumn("scoring"), BarColumn(), MofNCompleteColumn(), _Rate(""), TimeElapsedColumn(),
                            TextColumn("ETA"), TimeRemainingColumn(), transient=True)
        self.bar.start()
        task = self.bar.add_task("scoring", total=self.total, completed=self.done)
        return lambda n: self.bar.advance(task, n)

    def __exit__(self, *exc):
        if self.show:
            self.bar.stop()
        return False
