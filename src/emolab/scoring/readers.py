"""Inputs to score, read as a stream of chunks (``pandas.DataFrame`` of at most ``chunk_rows`` rows).

Each chunk has a ``row`` column (the input row number, from 0), the input column (texts, or image paths
for face models) and the id / kept columns. Formats, by the file's extension:

- ``.txt`` (any other name too): one text a line; an undecodable line becomes a row that says so;
- ``.csv`` / ``.tsv``: pandas' chunked reader, every column read as text;
- ``.jsonl`` / ``.ndjson``: one JSON object a line; a line that is not JSON becomes a row that says so;
- ``.parquet``: ``pyarrow.parquet.ParquetFile.iter_batches``;
- face models: a folder of images (searched recursively), a glob (``'faces/*.png'``) or a list file of
  image paths (relative paths are taken from the list file's folder).
"""

from __future__ import annotations

import glob as globmod
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pandas as pd

from emolab.errors import EmolabError, did_you_mean

TEXT_SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson", ".parquet")
UNREADABLE = "\x00unreadable:"  # marks a line the reader could not decode; the predictor reports it


def _missing_column(path: Path, what: str, name: str, columns: list[str]) -> EmolabError:
    return EmolabError(f"{path}: no column {name!r}{did_you_mean(name, columns)} ({what})",
                       hint=f"columns there: {', '.join(map(str, columns)) or '(none)'}")


@dataclass
class Source:
    """An input file (or set of images) and the columns to read from it."""

    path: Path
    kind: str  # lines | csv | tsv | jsonl | parquet | images
    column: str
    id_column: str | None = None
    keep: list[str] = field(default_factory=list)
    files: list[Path] | None = None  # kind images: the image files, in order
    total: int | None = None  # rows, when cheap to know (for the progress bar and ETA)
    image: bool = False  # the inputs are image paths (a face model)

    @property
    def carried(self) -> list[str]:
        """Columns carried through to the output besides ``row``, in order."""
        cols = [c for c in [self.id_column, *self.keep] if c and c != self.column]
        return list(dict.fromkeys(cols))

    @property
    def needed(self) -> list[str]:
        return list(dict.fromkeys([self.column, *self.carried]))

    def fingerprint(self) -> dict:
        """What identifies the input (a resumed scoring must read the same one)."""
        h = hashlib.sha256()
        for f in self.files if self.files is not None else [self.path]:
            st = f.stat()
            h.update(f"{f.resolve()}:{st.st_size}:{st.st_mtime_ns}\n".encode())
        where = str(self.path.resolve()) if self.path.exists() else str(self.path)
        return {"input": where, "digest": h.hexdigest()[:16]}

    # --- reading ---
    def frames(self, chunk_rows: int) -> Iterator[pd.DataFrame]:
        """Frames of any size (the reader's own) holding the needed columns, in input order."""
        if self.kind == "lines":
            yield from self._lines(chunk_rows)
        elif self.kind in ("csv", "tsv"):
            try:
                reader = pd.read_csv(self.path, sep="\t" if self.kind == "tsv" else ",", dtype=str,
                                     keep_default_na=False, usecols=self.needed, chunksize=chunk_rows)
                for frame in reader:
                    yield frame[self.needed]
            except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
                raise EmolabError(f"{self.path}: not a readable {self.kind.upper()} file ({exc})",
                                  hint="check the file's delimiter, quoting and encoding (UTF-8)") from None
        elif self.kind == "jsonl":
            yield from self._jsonl(chunk_rows)
        elif self.kind == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            try:
                for batch in pq.ParquetFile(self.path).iter_batches(batch_size=chunk_rows, columns=self.needed):
                    yield batch.to_pandas()
            except (pa.ArrowException, OSError) as exc:
                raise EmolabError(f"{self.path}: not a readable Parquet file ({exc})",
                                  hint="write it again (pandas.DataFrame.to_parquet) or give a CSV") from None
        else:  # images
            for start in range(0, len(self.files), chunk_rows):
                yield pd.DataFrame({self.column: [str(f) for f in self.files[start:start + chunk_rows]]})

    def _lines(self, chunk_rows: int) -> Iterator[pd.DataFrame]:
        texts = []
        with open(self.path, "rb") as fh:
            for raw in fh:
                raw = raw.rstrip(b"\n").rstrip(b"\r")
                try:
                    texts.append(raw.decode("utf-8"))
                except UnicodeDecodeError as exc:
                    texts.append(f"{UNREADABLE} not UTF-8 ({exc.reason} at byte {exc.start})")
                if len(texts) == chunk_rows:
                    yield pd.DataFrame({self.column: texts})
                    texts = []
        if texts:
            yield pd.DataFrame({self.column: texts})

    def _jsonl(self, chunk_rows: int) -> Iterator[pd.DataFrame]:
        records = []
        with open(self.path, "rb") as fh:
            for lineno, raw in enumerate(fh, start=1):
                try:
                    rec = json.loads(raw)
                    if not isinstance(rec, dict):
                        raise ValueError("not a JSON object")
                    records.append({c: rec.get(c) for c in self.needed})
                except ValueError as exc:
                    if not raw.strip():
                        records.append({c: None for c in self.needed})
                    else:
                        records.append({**{c: None for c in self.needed},
                                        self.column: f"{UNREADABLE} line {lineno} is not a JSON object ({exc})"})
                if len(records) == chunk_rows:
                    yield pd.DataFrame(records, columns=self.needed)
                    records = []
        if records:
            yield pd.DataFrame(records, columns=self.needed)

    def chunks(self, chunk_rows: int, *, skip: int = 0) -> Iterator[pd.DataFrame]:
        """Chunks of exactly ``chunk_rows`` rows (the last may be shorter) with their ``row`` numbers, from
        chunk ``skip`` on (earlier chunks are read and dropped: they were scored before a resume)."""
        pending: list[pd.DataFrame] = []
        have, row, index = 0, 0, 0
        for frame in self.frames(chunk_rows):
            pending.append(frame.reset_index(drop=True))
            have += len(frame)
            while have >= chunk_rows:
                whole = pd.concat(pending, ignore_index=True)
                chunk, rest = whole.iloc[:chunk_rows], whole.iloc[chunk_rows:]
                pending, have = [rest], len(rest)
                if index >= skip:
                    yield _numbered(chunk, row)
                row, index = row + chunk_rows, index + 1
        if have and index >= skip:
            yield _numbered(pd.concat(pending, ignore_index=True), row)


def _numbered(chunk: pd.DataFrame, first_row: int) -> pd.DataFrame:
    chunk = chunk.reset_index(drop=True)
    chunk.insert(0, "row", range(first_row, first_row + len(chunk)))
    return chunk


def _count_lines(path: Path) -> int:
    n, last = 0, b"\n"
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            n += block.count(b"\n")
            last = block[-1:]
    return n + (last != b"\n")


def _kind(path: Path, image: bool) -> str:
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv", ".parquet"):
        return suffix[1:]
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    return "images" if image else "lines"


def _image_list(spec: str) -> tuple[Path, list[Path]]:
    from emolab.faces.photos import IMAGE_SUFFIXES

    path = Path(spec)
    if any(ch in spec for ch in "*?[") and not path.exists():
        files = sorted(Path(p) for p in globmod.glob(spec, recursive=True) if Path(p).suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise EmolabError(f"no images match {spec!r}", hint="give a folder, a glob such as 'faces/*.png' or a "
                              "list file with one image path a line")
        return path, files
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise EmolabError(f"no images in {path}", hint="give a folder holding .png/.jpg files")
        return path, files
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return path, [path]
    lines = [ln.strip() for ln in path.read_text(encoding="utf-8", errors="replace").splitlines()]
    return path, [p if p.is_absolute() else path.parent / p for p in map(Path, lines)]


def open_source(spec: str | Path, *, image: bool, column: str | None = None, id_column: str | None = None,
                keep: list[str] | None = None) -> Source:
    """The input ``spec`` (a file, or for face models a folder, glob or list file), with its columns checked."""
    spec = str(spec)
    path = Path(spec)
    keep = [k for k in (keep or []) if k]
    if image and (path.is_dir() or (any(ch in spec for ch in "*?[") and not path.exists())):
        path, files = _image_list(spec)
        return Source(path, "images", column or "path", files=files, total=len(files), image=True)
    if not path.exists():
        raise EmolabError(f"input not found: {path}", hint="give a text file (one text a line), a CSV/TSV, JSONL "
                          "or Parquet file" + (", or a folder, glob or list of images" if image else ""))
    if path.is_dir():
        raise EmolabError(f"{path} is a folder", hint="text models read a file: one text a line, CSV/TSV, JSONL or "
                          "Parquet")
    kind = _kind(path, image)
    if kind in ("lines", "images"):
        if column or id_column or keep:
            raise EmolabError(f"{path}: --column, --id-column and --keep name columns of a CSV/TSV, JSONL or Parquet "
                              "file", hint="a plain list has one input a line and no columns; leave them out")
        if kind == "images":
            path, files = _image_list(spec)
            return Source(path, "images", "path", files=files, total=len(files), image=True)
        try:
            return Source(path, "lines", "text", total=_count_lines(path))
        except OSError as exc:
            raise EmolabError(f"{path}: cannot be read ({exc.strerror})", hint="check the file's permissions") from None
    column = column or ("path" if image else "text")
    src = Source(path, kind, column, id_column, keep)
    columns, total = _columns(src)
    for what, name in [("--column", column), ("--id-column", id_column), *(("--keep", k) for k in keep)]:
        if name and name not in columns:
            raise _missing_column(path, what, name, columns)
    if "row" in src.carried:
        raise EmolabError(f"{path}: column 'row' would clash with the output's row numbers",
                          hint="carry it under another name, or leave it out of --id-column / --keep")
    src.total, src.image = total, image
    return src


def _columns(src: Source) -> tuple[list[str], int | None]:
    """The file's columns (and its rows when cheap), or a clear error when it cannot be read."""
    path = src.path
    try:
        if src.kind == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            try:
                meta = pq.ParquetFile(path)
                return list(meta.schema_arrow.names), meta.metadata.num_rows
            except (pa.ArrowException, OSError) as exc:
                raise EmolabError(f"{path}: not a readable Parquet file ({exc})",
                                  hint="write it again (pandas.DataFrame.to_parquet) or give a CSV") from None
        if src.kind in ("csv", "tsv"):
            try:
                head = pd.read_csv(path, sep="\t" if src.kind == "tsv" else ",", dtype=str, nrows=0)
            except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
                raise EmolabError(f"{path}: not a readable {src.kind.upper()} file ({exc})",
                                  hint="the first line must name the columns; check delimiter and encoding") from None
            return list(head.columns), max(_count_lines(path) - 1, 0)
        keys: dict[str, None] = {}
        with open(path, "rb") as fh:  # jsonl: the keys of the first records
            for _, raw in zip(range(100), fh):
                try:
                    rec = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(rec, dict):
                    keys.update(dict.fromkeys(rec))
        if not keys:
            raise EmolabError(f"{path}: no JSON objects in its first lines",
                              hint="JSONL has one JSON object a line, e.g. {\"text\": \"i feel great\"}")
        return list(keys), _count_lines(path)
    except PermissionError as exc:
        raise EmolabError(f"{path}: cannot be read ({exc.strerror})", hint="check the file's permissions") from None
