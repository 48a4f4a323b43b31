"""The Ray Data engine of ``emolab score`` (``--engine ray``): beyond one machine.

Ray reads the input (``read_text`` / ``read_csv`` / ``read_json`` / ``read_parquet``), scores it with
``map_batches(Predictor, concurrency=workers)`` (an actor pool: each actor loads the model once, the same
:class:`~emolab.scoring.predictor.Predictor` the local engine calls) and writes Parquet with
``write_parquet`` into ``OUT.partial/ray/``, in input order (``preserve_order``); the driver then numbers the
rows and assembles ``OUT`` (Parquet, CSV or JSONL) exactly as the local engine does. Face models: the driver
lists and numbers the image paths (``from_pandas``), the actors read the photos and find the faces.

Ray is an optional extra: ``pip install 'emolab[ray]'``. On a cluster every node needs emolab (and the
model folder and input at the same path, e.g. a shared filesystem); see the README.
"""

from __future__ import annotations

import time
from pathlib import Path

from emolab.errors import EmolabError
from emolab.scoring.engine_local import ScoreOptions, ScoreSummary, Say, chunk_counts, open_job
from emolab.scoring.predictor import FACE_COLUMNS
from emolab.scoring.readers import Source
from emolab.scoring.writers import PartWriter, partial_dir

INSTALL_HINT = "pip install 'emolab[ray]'  (or: pip install 'ray[data]')"


def _ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise EmolabError("--engine ray needs Ray Data, which is not installed", hint=INSTALL_HINT) from None
    return ray


def _read(ray, source: Source):
    """The input as a Ray dataset with the needed columns (texts or image paths, ids, kept columns)."""
    import pyarrow as pa
    from pyarrow import csv as pacsv

    if source.image:  # image paths (a folder, glob, list or a table's column): numbered here, read by the actors
        return ray.data.from_pandas(list(source.chunks(256)))  # blocks of 256 photos spread over the actors
    path = str(source.path.resolve())
    if source.kind == "lines":
        return ray.data.read_text(path, drop_empty_lines=False)
    if source.kind in ("csv", "tsv"):
        return ray.data.read_csv(
            path, parse_options=pacsv.ParseOptions(delimiter="\t" if source.kind == "tsv" else ","),
            convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in source.needed},
                                                 include_columns=source.needed, strings_can_be_null=False))
    if source.kind == "jsonl":
        return ray.data.read_json(path, lines=True).select_columns(source.needed)
    return ray.data.read_parquet(path, columns=source.needed)


def _descendants() -> set[int]:
    import psutil

    return {p.pid for p in psutil.Process().children(recursive=True)}


def _shutdown(ray, *, local: bool, before: set[int]) -> None:
    """Stop the Ray this command started. A local Ray's workers are this process's descendants; one still
    starting when the cluster stops (importing torch) can outlive it as an orphan, so any process that Ray
    started here (a descendant born after ``ray.init``, named for Ray) and that is left after a few seconds
    is terminated by its process id."""
    import psutil

    ours = []
    for proc in psutil.Process().children(recursive=True) if local else []:
        try:
            if proc.pid not in before and "ray" in " ".join(proc.cmdline()).lower():
                ours.append(proc)
        except psutil.Error:
            pass
    ray.shutdown()
    _gone, alive = psutil.wait_procs(ours, timeout=10)
    for proc in alive:
        try:
            proc.terminate()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=5)


def score_ray(model_path: str | Path, input_spec: str | Path, out: str | Path, options: ScoreOptions | None = None,
              *, address: str | None = None, workers: int = 2, resume: bool = False, overwrite: bool = False,
              say: Say = print) -> ScoreSummary:
    """``emolab score --engine ray``: the same output as :func:`emolab.scoring.score`, scored by Ray actors."""
    import pyarrow.parquet as pq

    from emolab.scoring.predictor import Predictor, model_fingerprint

    options = options or ScoreOptions()
    if resume:
        raise EmolabError("--resume is for the local engine", hint="Ray retries failed tasks itself; run again "
                          "with --overwrite, or use --engine local --resume")
    if workers < 1:
        raise EmolabError(f"--workers must be at least 1, got {workers}", hint="e.g. --workers 2")
    ray = _ray()
    out, model_path = Path(out), Path(model_path)
    card, source = open_job(model_path, input_spec, out, options, resume=False, overwrite=overwrite)
    writer = PartWriter(out, {"model": model_fingerprint(model_path), "input": source.fingerprint(), "engine": "ray"})
    writer.start(resume=False)
    staging = writer.dir / "ray"
    started_here = not ray.is_initialized()
    before = _descendants()
    start = time.perf_counter()
    try:
        if started_here:
            if address:
                ray.init(address=address, log_to_driver=False)
            else:  # a local Ray for this command: one CPU slot per actor and one for reading and writing
                ray.init(num_cpus=workers + 1, include_dashboard=False, log_to_driver=False,
                         object_store_memory=512 * 1024 ** 2)
        ray.data.DataContext.get_current().execution_options.preserve_order = True
        ds = _read(ray, source)
        ds = ds.map_batches(Predictor, fn_constructor_args=(str(model_path.resolve()),),
                            fn_constructor_kwargs=dict(column=source.column, keep_input=source.column in options.keep,
                                                       batch_size=options.batch_size, threads=options.threads or 1,
                                                       detect=options.detect, detector=options.detector,
                                                       min_face=options.min_face, align=options.align),
                            concurrency=workers, batch_size=min(options.chunk_rows, 4096), batch_format="pandas")
        ds.write_parquet(str(staging))
        next_row = 0
        summary = ScoreSummary()
        for f in sorted(staging.glob("*.parquet")):  # file names carry the write task's index: input order
            scored = pq.read_table(f).to_pandas()
            if "row" not in scored.columns:
                scored.insert(0, "row", range(next_row, next_row + len(scored)))
                next_row += len(scored)
                rows_in = len(scored)
            else:
                rows_in = scored["row"].nunique()
            scored = scored[["row"] + [c for c in scored.columns if c != "row"]]
            for c in FACE_COLUMNS:  # an all-empty column comes back from Arrow untyped: the local engine's types
                if c in scored.columns:
                    scored[c] = scored[c].astype("Float64" if c == "detector_score" else "Int64")
            counts = chunk_counts(rows_in, scored)
            writer.write(scored, counts)
            summary.add(counts)
            f.unlink()
        staging.rmdir()
        writer.finish()
    finally:
        if started_here:
            _shutdown(ray, local=not address, before=before)
    summary.seconds = time.perf_counter() - start
    say(summary.line(out) + f" (Ray engine, {workers} worker(s))")
    return summary
