"""The output of a scoring: built chunk by chunk in ``OUT.partial/`` and assembled into ``OUT`` at the end.

``OUT.partial/`` holds one Parquet part per finished chunk (``part-00000.parquet``, written under a temporary
name and renamed, so a part that exists is whole) and ``manifest.json``: the fingerprint of model, input and
options, and the chunks finished so far with their counts. A killed scoring leaves both; ``--resume`` reads
the manifest and goes on after its last chunk. The final file (Parquet, CSV or JSONL by ``OUT``'s extension)
is assembled one part at a time into a temporary file beside ``OUT`` and renamed, then the folder removed.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd

from emolab.errors import EmolabError

FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
MANIFEST = "manifest.json"


def output_format(out: Path) -> str:
    fmt = FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise EmolabError(f"{out}: cannot tell the output format from {out.suffix or 'no extension'!r}",
                          hint="end --output with .parquet, .csv or .jsonl")
    return fmt


def partial_dir(out: Path) -> Path:
    return out.with_name(out.name + ".partial")


class PartWriter:
    """Parts and manifest in ``OUT.partial/``."""

    def __init__(self, out: Path, fingerprint: dict):
        self.out, self.dir, self.fingerprint = out, partial_dir(out), fingerprint
        self.chunks: list[dict] = []

    def start(self, *, resume: bool) -> int:
        """Prepare the folder; returns the number of chunks already finished (``resume``: from the manifest)."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            probe = self.dir / ".write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise EmolabError(f"cannot write the output beside {self.out} ({exc.strerror}: {exc.filename})",
                              hint="choose an --output in a folder you can write to") from None
        manifest = self.dir / MANIFEST
        if resume and manifest.is_file():
            saved = json.loads(manifest.read_text())
            if saved.get("fingerprint") != self.fingerprint:
                differ = [k for k in self.fingerprint if saved.get("fingerprint", {}).get(k) != self.fingerprint[k]]
                raise EmolabError(f"{self.dir} was written with another {', '.join(differ)} than this scoring",
                                  hint="run the same command as before with --resume, or --overwrite to start over")
            self.chunks = saved["chunks"]
        listed = {c["part"] for c in self.chunks}
        for stray in self.dir.iterdir():  # a part being written when the process was killed
            if stray.name != MANIFEST and stray.name not in listed:
                stray.unlink()
        self._save()
        return len(self.chunks)

    def write(self, frame: pd.DataFrame, counts: dict) -> None:
        index = len(self.chunks)
        name = f"part-{index:05d}.parquet"
        tmp = self.dir / f".{name}.tmp"
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, self.dir / name)
        self.chunks.append({"part": name, **counts})
        self._save()

    def _save(self) -> None:
        tmp = self.dir / f".{MANIFEST}.tmp"
        tmp.write_text(json.dumps({"fingerprint": self.fingerprint, "chunks": self.chunks}, indent=1))
        os.replace(tmp, self.dir / MANIFEST)

    def parts(self) -> list[Path]:
        return [self.dir / c["part"] for c in self.chunks]

    def finish(self) -> None:
        """Assemble the parts into ``OUT`` (atomically) and remove the folder."""
        assemble(self.parts(), self.out)
        shutil.rmtree(self.dir)


def assemble(parts: list[Path], out: Path) -> None:
    """Concatenate Parquet parts, in order, into ``out`` in its format; one part in memory at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    fmt = output_format(out)
    schemas = [pq.read_schema(p) for p in parts]
    schema = pa.unify_schemas(schemas, promote_options="permissive") if schemas else pa.schema([])
    schema = schema.remove_metadata()
    tmp = out.with_name(f".{out.name}.assembling")
    try:
        if fmt == "parquet":
            with pq.ParquetWriter(tmp, schema) as writer:
                for p in parts:
                    writer.write_table(pq.read_table(p).select(schema.names).cast(schema))
        else:
            with open(tmp, "w", encoding="utf-8", newline="") as fh:
                for i, p in enumerate(parts):
                    frame = pq.read_table(p).to_pandas()
                    if fmt == "csv":
                        frame.to_csv(fh, index=False, header=i == 0, float_format="%.6g")
                    else:
                        text = frame.to_json(orient="records", lines=True, force_ascii=False, double_precision=6)
                        fh.write(text if not text or text.endswith("\n") else text + "\n")
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
