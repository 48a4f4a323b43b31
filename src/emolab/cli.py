"""The ``emolab`` command line: each command parses its arguments and calls one library function."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from emolab.errors import EmolabError
from emolab.faces.detectors import DEFAULT_DETECTOR, DEFAULT_MIN_FACE, list_detectors
from emolab.outputs import check_output
from emolab.serving.settings import Limits, ServeSettings

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Train, compare, evaluate, analyse, compress and report emotion and sentiment classifiers.")
data_app = typer.Typer(no_args_is_help=True, help="Inspect datasets.")
app.add_typer(data_app, name="data")
console = Console()
err_console = Console(stderr=True)

SetOpt = typer.Option(None, "--set", help="Dotted config override, e.g. --set train.lr=3e-5 (repeatable).")
DETECTOR_HELP = f"Images: the face detector ({', '.join(list_detectors())}; haar needs nothing beyond OpenCV)"
ALIGN_HELP = "Images: turn each face crop so the eyes are level (detectors with landmarks: mtcnn)"


def _say(msg: str) -> None:
    console.print(msg, highlight=False, soft_wrap=True)


def _version(value: bool) -> None:
    if value:
        from importlib import metadata

        _say(f"emolab {metadata.version('emolab')}")
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
    trust_pickle: bool = typer.Option(False, "--trust-pickle", help="Load TF-IDF runs saved as pickles by older "
                                      "emolab versions (this can run code from the file; only for files you trust)."),
):
    if trust_pickle:
        import os

        from emolab.models.classical import TRUST_PICKLE_ENV

        os.environ[TRUST_PICKLE_ENV] = "1"


@app.command()
def run(
    config: Path = typer.Argument(..., help="YAML config, e.g. configs/emotion-minilm.yaml"),
    set_: Optional[List[str]] = SetOpt,
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run from its last checkpoint."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing run of the same name."),
    seeds: Optional[int] = typer.Option(None, "--seeds", min=1, help="Run once per seed (the config's seed, +1, "
                                        "...) into runs/<name>/seed-<s>/ and summarise the spread."),
):
    """Train, evaluate and write runs/<name>/ for CONFIG."""
    from emolab.config import load_config
    from emolab.pipeline import run as run_pipeline

    cfg = load_config(config, set_ or [])
    if seeds:
        cfg.seeds = [cfg.seed + i for i in range(seeds)]
    if cfg.matrix:
        from emolab.config import load_raw
        from emolab.matrix import run_matrix

        run_matrix(cfg, load_raw(config, set_ or []), str(config), overwrite=overwrite, resume=resume, say=_say)
        return
    if cfg.seeds:
        from emolab.seed_spread import run_seeds

        run_seeds(cfg, overwrite=overwrite, resume=resume, say=_say)
        return
    run_pipeline(cfg, resume=resume, overwrite=overwrite, say=_say)


@app.command()
def evaluate(
    run_dir: Path = typer.Argument(..., help="A run directory, e.g. runs/emotion-minilm"),
    split: str = typer.Option("test", help="train, validation or test"),
    precision: str = typer.Option("fp32", help="fp32, fp16 or bf16"),
    tta: Optional[str] = typer.Option(None, help="image runs: none, flip, ten-crop or dense (default: the run's)"),
    photos: Optional[Path] = typer.Option(None, "--photos", help="Face runs: a folder of labelled real photos "
                                          "(<class>/*.jpg) to score through the face detector"),
    detector: str = typer.Option(DEFAULT_DETECTOR, "--detector", help=DETECTOR_HELP),
    min_face: int = typer.Option(DEFAULT_MIN_FACE, "--min-face", min=1, help="Photos: the smallest face side to look for, in pixels"),
    align: bool = typer.Option(False, "--align", help=ALIGN_HELP),
    data: Optional[str] = typer.Option(None, "--data", help="Another corpus: a dataset name (sst2) or a YAML "
                                       "file with a data section; the run is scored on its --split"),
    label_map: Optional[str] = typer.Option(None, "--label-map", help="With --data: run labels onto the dataset's, "
                                            "joy:positive,love:positive,... or a YAML / JSON file (default: same names)"),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="With --data: a data key, e.g. --set "
                                             "data.taxonomy=ekman (repeatable)"),
    name: Optional[str] = typer.Option(None, "--name", help="With --data: the output name in RUN/evaluations/ "
                                       "(default: <dataset>[-<variant>]-<split>)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="With --data: replace an earlier evaluation of that name"),
):
    """Re-evaluate a saved run on a split, another corpus or photos.

    One split of the run's own data; with --data, another corpus through a
    label map; with --photos, a face run on labelled photos."""
    from emolab.pipeline import evaluate_photos_run, evaluate_run

    if data is None and (label_map or set_ or name or overwrite):
        raise EmolabError("--label-map, --set, --name and --overwrite go with --data",
                          hint="add --data DATASET_OR_FILE, e.g. --data sst2")
    if data is not None:
        if photos is not None:
            raise EmolabError("--data and --photos are two different evaluations", hint="give one of them")
        _evaluate_on(run_dir, data, set_ or [], label_map, split, name, overwrite, precision, tta)
        return
    if photos is not None:
        r = evaluate_photos_run(run_dir, photos, detector=detector, min_face=min_face, align=align, say=_say)
        table = Table(title=f"{run_dir.name} on {photos} (through the {detector} face detector)")
        table.add_column("metric")
        table.add_column("value", justify="right")
        table.add_row("photos", str(r["photos"]))
        table.add_row("detection rate", f"{r['detection_rate']:.4f}")
        for k in ("accuracy", "macro_f1", "end_to_end_accuracy"):
            if k in r:
                table.add_row(k.replace("_", " ") + (" (faces found)" if k != "end_to_end_accuracy" else ""),
                              f"{r[k]:.4f}")
        console.print(table)
        return
    m = evaluate_run(run_dir, split, precision=precision, tta=tta, say=_say)
    table = Table(title=f"{run_dir.name}: {split} ({precision}{f', tta {tta}' if tta else ''})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in m.items():
        if isinstance(v, float):
            table.add_row(k, f"{v:.4f}")
    console.print(table)


def _evaluate_on(run_dir, data, overrides, label_map, split, name, overwrite, precision, tta) -> None:
    from emolab.crosscorpus import evaluate_on, side_by_side

    r = evaluate_on(run_dir, data, overrides=overrides, label_map=label_map, split=split, name=name,
                    overwrite=overwrite, precision=precision, tta=tta, say=_say)
    header, rows = side_by_side(r)
    table = Table(title=f"{r.run} on {r.dataset}, {r.split}: {r.n} of {r.n_split} examples scored")
    for i, title in enumerate(header):
        table.add_column(title, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    mapped = ", ".join(f"{k}->{v}" for k, v in r.label_map.items() if v)
    dropped = [k for k, v in r.label_map.items() if not v]
    _say(f"map: {mapped}" + (f"; dropped (probability renormalised away): {', '.join(dropped)}" if dropped else ""))
    left = {**r.excluded["no_counterpart"], **({"several labels": r.excluded["several_labels"]}
                                                if r.excluded["several_labels"] else {})}
    if left:
        top = sorted(left.items(), key=lambda kv: -kv[1])
        rest = f" and {len(top) - 6} more labels ({sum(v for _, v in top[6:])})" if len(top) > 6 else ""
        _say(f"left out ({sum(left.values())}): " + ", ".join(f"{k} {v}" for k, v in top[:6]) + rest +
             f"; full counts in {r.name}.md")


@app.command()
def predict(
    run_dir: Path = typer.Argument(..., help="A run directory"),
    texts: Optional[List[str]] = typer.Argument(None, help="Texts to classify (image runs: image files or folders)"),
    input: Optional[Path] = typer.Option(None, "--input", help="A file with one text per line"),
    output: Optional[Path] = typer.Option(None, "--output", help="Write a CSV of labels and probabilities here"),
    no_detect: bool = typer.Option(False, "--no-detect", help="Images: classify each image whole, no face detection"),
    min_face: int = typer.Option(DEFAULT_MIN_FACE, "--min-face", min=1, help="Images: the smallest face side to look for, in pixels"),
    detector: str = typer.Option(DEFAULT_DETECTOR, "--detector", help=DETECTOR_HELP),
    align: bool = typer.Option(False, "--align", help=ALIGN_HELP),
    annotate: Optional[Path] = typer.Option(None, "--annotate", help="Images: write each photo with its boxes and "
                                            "labels drawn into this folder (videos: the annotated video and its CSV)"),
    fps: float = typer.Option(5.0, "--fps", help="Videos: frames sampled per second"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files (never an input)"),
):
    """Label texts, or every face in photos and videos.

    Print (or write) the predicted label and probabilities for each text, or
    for every face in each image (faces are found first; small square images
    are taken as cropped faces)."""
    from emolab.models import model_card
    from emolab.pipeline import predict_inputs
    from emolab.rundir import atomic_write

    items = list(texts or [])
    for i, text in enumerate(items, start=1):
        if not text.strip():  # the server's rule too: an empty text is refused, not labelled
            raise EmolabError(f"input {i} is empty", hint="give a text with words in it")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # bytes the terminal could not decode arrive as lone surrogates
            raise EmolabError(f"input {i} is not valid UTF-8 text", hint="pass UTF-8 text (check the terminal's "
                              "encoding), or put the texts in a UTF-8 file and use --input") from None
    if input is not None:
        from emolab.data.text import read_lines

        if not input.is_file():
            raise EmolabError(f"file not found: {input}", hint="--input takes a text file, one text per line")
        items += read_lines(input)  # a blank line keeps its row, with an empty label
    if not items:
        raise EmolabError("nothing to classify", hint='give texts (image runs: image paths) as arguments or --input FILE')
    if not (math.isfinite(fps) and fps > 0):
        raise EmolabError(f"--fps {fps} is not a frame rate", hint="give frames sampled per second, e.g. --fps 5")
    given = [Path(i) for i in items if len(i) < 4096 and Path(i).exists()] + ([input] if input is not None else [])
    if model_card(run_dir).image:
        from emolab.faces.video import VIDEO_SUFFIXES
        from emolab.pipeline import predict_video

        items = [i for i in items if i.strip()]

        videos = [i for i in items if Path(i).suffix.lower() in VIDEO_SUFFIXES]
        photos = [i for i in items if i not in videos]
        if output is not None and (len(videos) != 1 or photos):
            check_output(output, inputs=given, overwrite=overwrite)
        for video in videos:
            predict_video(run_dir, video, fps=fps, output=output if len(videos) == 1 and not photos else None,
                          annotate_dir=annotate, detector=detector, min_face=min_face, align=align,
                          overwrite=overwrite, say=_say)
        if photos:
            _predict_photos(run_dir, photos, None if videos else output, detect=not no_detect, detector=detector,
                            min_face=min_face, align=align, annotate_dir=annotate, overwrite=overwrite)
        return
    if annotate is not None:
        raise EmolabError("--annotate applies to face models (photos and videos)", hint="leave --annotate out for text")
    if output is not None:  # before any work: never an input, never an existing file unless asked
        check_output(output, inputs=given, overwrite=overwrite)
    items, labels, probs, names = predict_inputs(run_dir, items)
    if output is not None:
        import csv
        import io

        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["input", "label"] + [f"p_{n}" for n in names])
        for text, lab, p in zip(items, labels, probs):
            w.writerow([text, lab] + [f"{x:.6f}" if x == x else "" for x in p])  # blank text: no probabilities
        atomic_write(output, buf.getvalue())
        _say(f"wrote {len(items)} predictions to {output}")
        return
    table = Table()
    table.add_column("text")
    table.add_column("label")
    table.add_column("probabilities")
    for text, lab, p in zip(items, labels, probs):
        top = sorted(zip(names, p), key=lambda x: -x[1])[:3] if lab else []
        table.add_row(text, lab, ", ".join(f"{n} {v:.3f}" for n, v in top))
    console.print(table)


@app.command()
def score(
    model: Path = typer.Argument(..., help="A run directory, its model/ folder, an `emolab export` folder or a "
                                 "compressed model"),
    input: str = typer.Argument(..., help="Texts: a file with one text a line, CSV/TSV, JSONL or Parquet. Face "
                                "models: a folder, glob or list file of images (or a table with --column)"),
    output: Path = typer.Option(..., "--output", "-o", help="Where to write: .parquet, .csv or .jsonl (the format "
                                "follows the extension; built in OUTPUT.partial/ until done)"),
    column: Optional[str] = typer.Option(None, "--column", help="The column holding the text (face models: image "
                                         "path); default text (path)"),
    id_column: Optional[str] = typer.Option(None, "--id-column", help="A column to carry through as the row's id"),
    keep: Optional[str] = typer.Option(None, "--keep", help="More columns to carry through, comma-separated"),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted scoring from its last finished chunk"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output"),
    chunk_rows: int = typer.Option(10_000, "--chunk-rows", help="Rows read, scored and written at a time (memory)"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Texts per model call (default: 64 for "
                                             "neural models, the whole chunk for TF-IDF)"),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads for the model"),
    engine: str = typer.Option("local", "--engine", help="local, or ray (pip install 'emolab[ray]')"),
    address: Optional[str] = typer.Option(None, "--address", help="Ray: the cluster (auto, ray://host:10001); default "
                                          "a local Ray started for this command"),
    workers: int = typer.Option(2, "--workers", help="Ray: model actors (each loads the model once)"),
    no_detect: bool = typer.Option(False, "--no-detect", help="Images: classify each image whole"),
    min_face: int = typer.Option(DEFAULT_MIN_FACE, "--min-face", min=1, help="Images: the smallest face side to look for, in pixels"),
    detector: str = typer.Option(DEFAULT_DETECTOR, "--detector", help=DETECTOR_HELP),
    align: bool = typer.Option(False, "--align", help=ALIGN_HELP),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar"),
):
    """Score a whole corpus, streamed and resumable.

    One output row per input row (faces: per face), in order."""
    from emolab.scoring import ScoreOptions

    kept = [k.strip() for k in (keep or "").split(",") if k.strip()]
    options = ScoreOptions(column=column, id_column=id_column, keep=kept,
                           chunk_rows=chunk_rows, batch_size=batch_size, threads=threads, detect=not no_detect,
                           detector=detector, min_face=min_face, align=align)
    if engine == "local":
        from emolab.scoring import score as run_score

        run_score(model, input, output, options, resume=resume, overwrite=overwrite,
                  progress=not quiet and console.is_terminal, say=_say)
    elif engine == "ray":
        from emolab.scoring.engine_ray import score_ray

        score_ray(model, input, output, options, address=address, workers=workers, resume=resume,
                  overwrite=overwrite, say=_say)
    else:
        from emolab.errors import unknown_name

        raise unknown_name("--engine", engine, ["local", "ray"])


def _predict_photos(run_dir: Path, items: list[str], output: Optional[Path], **options) -> None:
    from emolab.faces.photos import rows_csv
    from emolab.pipeline import predict_photos
    from emolab.rundir import atomic_write

    rows, names = predict_photos(run_dir, items, say=_say, **options)
    faces = sum(r.face is not None for r in rows)
    summary = (f"{len({r.file for r in rows})} image(s), {faces} face(s), "
               f"{sum(r.face is None for r in rows)} without a face found")
    if output is not None:
        atomic_write(output, rows_csv(rows, names))
        _say(f"wrote {len(rows)} rows to {output} ({summary})")
        return
    table = Table()
    for col in ("image", "face", "box", "label", "probabilities"):
        table.add_column(col, overflow="fold")  # whole paths, wrapped, never cut to a shared prefix
    for r in rows:
        box = r.photo_box()
        top = sorted(zip(names, r.probs), key=lambda x: -x[1])[:3] if r.probs is not None else []
        table.add_row(r.file, "-" if r.face is None else str(r.face),
                      f"{box['xmin']},{box['ymin']},{box['xmax']},{box['ymax']}" if box else ("whole image" if r.face == 0 else "-"),
                      r.label, ", ".join(f"{n} {v:.3f}" for n, v in top))
    console.print(table)
    _say(summary)


@app.command()
def analyze(
    run_dir: Path = typer.Argument(..., help="A run directory"),
    split: str = typer.Option("test", help="The split whose errors to analyse"),
    annotations: Optional[Path] = typer.Option(None, help="An edited errors.csv whose annotation/fix columns to keep"),
    top: int = typer.Option(20, help="How many errors, near-ties and label issues to list"),
):
    """Rank errors, confusions and likely label errors.

    Ranked errors, confusion pairs, likely label errors and error tags; writes RUN/analysis/."""
    from emolab.analyze import analyze_run

    analyze_run(run_dir, split=split, annotations=annotations, top=top, say=_say)


@app.command()
def robustness(
    run_dir: Path = typer.Argument(..., help="A run directory"),
    suite: Optional[str] = typer.Option(None, "--suite", help="text or image (default: the run's modality)"),
    severity: Optional[List[int]] = typer.Option(None, "--severity", help="1 (mild) to 5 (harsh), repeatable "
                                                 "(default: 3 for text, all five for images)"),
    split: str = typer.Option("test", help="The split to perturb"),
    max_examples: Optional[int] = typer.Option(None, "--max-examples", help="Score a seeded random subset of this size"),
    only: Optional[List[str]] = typer.Option(None, "--only", help="Run only this perturbation (repeatable)"),
    baseline: Optional[Path] = typer.Option(None, "--baseline", help="A run to compute the mean corruption error against"),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of the perturbations and intervals (default: the run's)"),
):
    """Score a run under seeded perturbations.

    Typos, casing, emoji, negation (text); noise, blur, occlusion (images); writes RUN/robustness/."""
    from emolab.robustness.evaluate import TABLE_HEADER, robustness_run, table_rows

    r = robustness_run(run_dir, suite=suite, severities=severity, split=split, max_examples=max_examples,
                       only=only, baseline=baseline, seed=seed, say=_say)
    table = Table(title=f"{r.run}: {r.suite} suite on {r.split} ({r.n} examples)")
    for i, name in enumerate(TABLE_HEADER):
        table.add_column(name, justify="left" if i < 2 else "right")
    for row in table_rows(r):
        table.add_row(*row)
    console.print(table)
    if r.baseline:
        _say(f"mCE vs {r.baseline['run']}: {r.baseline['mce']:.3f} (relative {r.baseline['relative_mce']:.3f})")


@app.command()
def calibrate(
    run_dir: Path = typer.Argument(..., help="A run directory with validation predictions"),
    method: str = typer.Option("auto", "--method", help="auto (temperature; platt for multi-label runs), temperature "
                               "(one per label for multi-label runs) or platt (multi-label: slope and offset per label)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Fit again over an earlier calibration"),
):
    """Calibrate a run's probabilities on its validation split.

    Fit a calibration on the validation split, store it in the model card
    (predict, score, serve and exports apply it) and measure ECE / NLL / Brier
    before and after on the test split; writes RUN/calibration/."""
    from emolab.calibration import METHODS
    from emolab.errors import unknown_name
    from emolab.pipeline import calibrate_run

    if method not in METHODS:
        raise unknown_name("calibration method", method, METHODS)
    r = calibrate_run(run_dir, method=method, overwrite=overwrite, say=_say)
    split = "test" if "test" in r else "validation"
    table = Table(title=f"{r['run']}: {r['summary']} ({split} split, {r[split]['n']} examples)")
    for name in ("metric", "before", "after", "change"):
        table.add_column(name, justify="left" if name == "metric" else "right")
    for key, name in (("ece", "ECE"), ("nll", "NLL"), ("brier", "Brier")):
        row = r[split][key]
        table.add_row(name, f"{row['before']:.4f}", f"{row['after']:.4f}", f"{row['change']:+.4f}")
    if "accuracy" in r[split]:
        acc = r[split]["accuracy"]
        table.add_row("accuracy", f"{acc['before']:.4f}", f"{acc['after']:.4f}", f"{acc['after'] - acc['before']:+.4f}")
    console.print(table)


@app.command()
def report(
    run_dir: Path = typer.Argument(..., help="A run directory"),
    others: Optional[List[Path]] = typer.Argument(None, help="More runs for a leaderboard section"),
    notebook: bool = typer.Option(False, "--notebook", help="Also write RUN/report.ipynb, executed with its outputs"),
):
    """Write a run's report and model card.

    RUN/report.html (self-contained), RUN/report.md and the model card RUN/README.md."""
    from emolab.report import write_report

    write_report(run_dir, others=others or [], say=_say)
    if notebook:
        from emolab.report.notebook import write_notebook

        write_notebook(run_dir, say=_say)


@app.command()
def sweep(
    config: Path = typer.Argument(..., help="YAML config with a sweep: section"),
    trials: int = typer.Option(..., "--trials", help="Finished trials the study should hold (all workers together)"),
    storage: Optional[str] = typer.Option(None, help="Optuna storage URL (e.g. postgresql://...); default SQLite"),
    study: Optional[str] = typer.Option(None, help="Study name (default: the config's stem)"),
    set_: Optional[List[str]] = SetOpt,
):
    """Hyperparameter search with Optuna.

    Run it on several machines with one --storage to share a study."""
    from emolab.config import load_config, load_raw
    from emolab.sweeps import sweep as run_sweep

    cfg = load_config(config, set_ or [])
    run_sweep(config, load_raw(config, set_ or []), cfg, trials=trials, storage=storage,
              study_name=study, say=_say)


@app.command()
def sanity(
    config: Path = typer.Argument(..., help="YAML config"),
    overfit: int = typer.Option(20, "--overfit", help="How many training examples to memorise"),
    epochs: int = typer.Option(40, help="Epochs over those examples"),
    set_: Optional[List[str]] = SetOpt,
    run_dir: Optional[Path] = typer.Option(None, "--run", help="Also record the result in this run (for its report)"),
):
    """Check that a model can overfit a few examples.

    It must reach 100% training accuracy; exits 1 if it cannot."""
    from emolab import runfiles
    from emolab.config import load_config
    from emolab.rundir import atomic_write, to_json
    from emolab.sanity import failure_hint, sanity_check

    result = sanity_check(load_config(config, set_ or []), n=overfit, epochs=epochs, say=_say)
    if run_dir is not None:
        atomic_write(run_dir / runfiles.SANITY, to_json(result) + "\n")
    if not result["passed"]:
        err_console.print(f"[bold red]sanity check failed:[/] {failure_hint()}")
        raise typer.Exit(1)


@app.command()
def compare(
    runs: Optional[List[Path]] = typer.Argument(None, help="Run directories"),
    glob: Optional[str] = typer.Option(None, "--glob", help="e.g. 'runs/*'"),
    out: Path = typer.Option(Path("runs/leaderboard"), help="Where the leaderboard files go"),
    sort_by: str = typer.Option("macro_f1", help="Column to sort by (descending; ascending for losses, times and "
                                "sizes); every run is tested against the best by macro-F1"),
):
    """One leaderboard over runs, each tested against the best.

    Markdown, CSV, bar chart and overlaid learning curves."""
    from emolab.compare import compare as compare_runs
    from emolab.compare import find_runs

    from emolab.compare import terminal_tables

    rows = compare_runs(find_runs([str(r) for r in runs or []], glob), out, sort_by=sort_by, say=lambda _m: None)
    for table, verdicts in terminal_tables(rows):
        console.print(table)
        for v in verdicts:
            _say(v)
    _say(f"wrote {out / 'leaderboard.md'} (every column), leaderboard.csv and leaderboard.png")


def _csv(value: str, cast=str) -> tuple:
    return tuple(cast(v.strip()) for v in value.split(",") if v.strip())


@app.command()
def compress(
    run_dir: Path = typer.Argument(..., help="A run directory, e.g. runs/emotion-minilm"),
    methods: str = typer.Option("fp16,prune-unstructured,prune-structured,dynamic-int8,onnx-int8,distill",
                                help="Comma-separated: fp16, bf16, prune-unstructured, prune-structured, "
                                     "prune-channels, dynamic-int8, onnx, onnx-int8 (static, batched), "
                                     "onnx-int8-dynamic (text, one text at a time), distill"),
    tolerance: float = typer.Option(0.01, help="Accuracy drop allowed when picking the sparsity (0.01 = 1 point)"),
    sparsities: str = typer.Option("0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9", help="Unstructured sweep grid"),
    scopes: str = typer.Option("global,layer", help="Unstructured ranking: global and/or layer"),
    recovery_epochs: int = typer.Option(1, help="Fine-tune epochs after structured pruning"),
    sweep_recovery_epochs: int = typer.Option(0, help="Fine-tune epochs per unstructured sweep point"),
    head_fraction: float = typer.Option(0.5, help="prune-structured: attention heads removed per layer"),
    ffn_fraction: float = typer.Option(0.5, help="prune-structured: feed-forward neurons removed per layer"),
    channel_fraction: float = typer.Option(0.5, help="prune-channels: conv channels removed per layer"),
    distill_epochs: int = typer.Option(2, help="Epochs of distillation for the half-depth student"),
    temperature: float = typer.Option(2.0, help="Distillation temperature"),
    max_eval_examples: Optional[int] = typer.Option(None, help="Score every method on N test examples"),
    half_eval_examples: Optional[int] = typer.Option(500, help="Score fp16/bf16 (slow on CPU) on the first N"),
    max_train_examples: Optional[int] = typer.Option(None, help="Training examples for fine-tunes and distillation"),
    max_train_steps: Optional[int] = typer.Option(None, help="Cap on optimizer steps of every fine-tune"),
    timing_examples: int = typer.Option(100, help="Examples timed per round"),
    timing_rounds: int = typer.Option(3, help="Interleaved timing rounds (medians are reported)"),
    threads: Optional[int] = typer.Option(None, help="CPU threads for PyTorch and ONNX Runtime alike"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing RUN/compression/"),
):
    """Compress a run's model with each method.

    Writes RUN/compression/ (table, Pareto and sparsity plots)."""
    from emolab.compression import CompressOptions
    from emolab.compression import compress as run_compress

    options = CompressOptions(
        methods=_csv(methods), tolerance=tolerance, sparsities=_csv(sparsities, float), scopes=_csv(scopes),
        recovery_epochs=recovery_epochs, sweep_recovery_epochs=sweep_recovery_epochs, distill_epochs=distill_epochs,
        head_fraction=head_fraction, ffn_fraction=ffn_fraction, channel_fraction=channel_fraction,
        temperature=temperature, max_eval_examples=max_eval_examples, half_eval_examples=half_eval_examples,
        max_train_examples=max_train_examples, max_train_steps=max_train_steps, timing_examples=timing_examples,
        timing_rounds=timing_rounds, threads=threads)
    run_compress(run_dir, options, overwrite=overwrite, say=_say)


@app.command()
def export(
    run_dir: Path = typer.Argument(..., help="A run directory"),
    format: str = typer.Option("onnx", "--format", help="Export format: onnx (emolab predict and serve load it) or hf "
                                                       "(a transformers model folder, text runs)"),
    int8: bool = typer.Option(False, "--int8", help="--format onnx only: static int8 (ONNX Runtime: int8 "
                                                    "weights, activation scales calibrated on training data; "
                                                    "batched like fp32)"),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default RUN/exports/<format>[-int8])"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output folder"),
):
    """Export a run as an ONNX or Hugging Face model folder.

    A deployable model folder; `emolab predict` loads an ONNX one like a run."""
    from emolab.export import export_run

    export_run(run_dir, format=format, int8=int8, out=out, overwrite=overwrite, say=_say)


@data_app.command("stats")
def data_stats(
    name: str = typer.Argument(..., help="Dataset name: emotion, goemotions, sst2, csv, fer2013, ferplus, imagefolder"),
    set_: Optional[List[str]] = SetOpt,
    path: Optional[str] = typer.Option(None, help="Folder (or file, for csv) holding the dataset"),
    taxonomy: Optional[str] = typer.Option(None, help="goemotions: original, ekman or sentiment (default: all)"),
    out: Path = typer.Option(Path("runs/data-stats"), help="Where the plot and stats.json go"),
):
    """Split sizes, class balance, lengths, duplicates and leakage.

    Split sizes, class counts and shares, text lengths, duplicates, leakage and a class plot."""
    from emolab.config import config_from_dict
    from emolab.data import dataset_spec
    from emolab.dataset_report import show_stats

    overrides = list(set_ or []) + [f"data.name={name}"] + ([f"data.path={path}"] if path else [])
    cfg = config_from_dict({}, source="command line", overrides=overrides)
    taxonomies = [taxonomy] if taxonomy else (list(dataset_spec(name).taxonomies) or [None])
    show_stats(cfg, taxonomies, out, console)


@data_app.command("augment")
def data_augment(
    config: Path = typer.Argument(..., help="A text config whose model.augment is set"),
    per_class: int = typer.Option(3, "--per-class", help="Training examples shown per class"),
    epoch: int = typer.Option(1, help="Which epoch's augmentations to show (each epoch draws afresh)"),
    set_: Optional[List[str]] = SetOpt,
):
    """Show training texts beside their augmented versions.

    What augmentation makes of the training texts: what the model will be trained on."""
    from emolab.config import load_config
    from emolab.data import load_dataset
    from emolab.models.text_augment import preview

    cfg = load_config(config, set_ or [])
    rows = preview(cfg, load_dataset(cfg.data, cfg.seed), per_class=per_class, epoch=epoch)
    table = Table("class", "training text", "augmented (epoch %d)" % epoch, "operation", show_lines=True)
    for r in rows:
        table.add_row(r["label"], r["text"], r["augmented"], r["operation"])
    console.print(table)


@data_app.command("list")
def data_list():
    """The registered dataset names."""
    from emolab.data import list_datasets

    for n in list_datasets():
        _say(n)


_SERVE, _LIMITS = ServeSettings(models=[]), Limits()  # the defaults of `emolab serve`, owned by the settings


@app.command()
def serve(
    ctx: typer.Context,
    models: List[str] = typer.Argument(..., help="Run directories, compressed model folders (RUN/compression/"
                                       "models/...) or `emolab export` folders; NAME=PATH names one"),
    host: str = typer.Option(_SERVE.host, help="Address to listen on (loopback unless you say otherwise)"),
    port: int = typer.Option(_SERVE.port, min=1, max=65535, help="TCP port"),
    workers: int = typer.Option(_SERVE.workers, help="Server processes, each holding the models (stateless; "
                                "metrics shared)"),
    max_batch: int = typer.Option(_SERVE.max_batch, help="Most items in one model call (micro-batching)"),
    max_wait_ms: float = typer.Option(_SERVE.max_wait_ms, help="How long a batch waits for more requests (0: it "
                                      "takes the requests that queued while the model was busy, and waits for none)"),
    batch: Optional[List[str]] = typer.Option(None, "--batch", help="One model's own batching, NAME.KEY=VALUE with "
                                              "KEY max_batch or max_wait_ms, e.g. --batch faces.max_batch=8 "
                                              "(repeatable; other models and keys: --max-batch, --max-wait-ms)"),
    threads: Optional[int] = typer.Option(_SERVE.threads, help="Inference threads per worker (PyTorch, ONNX "
                                          "Runtime); default: the runtimes' own"),
    max_text_chars: int = typer.Option(_LIMITS.max_text_chars, help="Longest text accepted"),
    max_items: int = typer.Option(_LIMITS.max_items, help="Most inputs in one request"),
    max_image_bytes: int = typer.Option(_LIMITS.max_image_bytes, help="Largest image file accepted"),
    max_image_pixels: int = typer.Option(_LIMITS.max_image_pixels, help="Most pixels in an image (width x height)"),
    max_request_pixels: int = typer.Option(_LIMITS.max_request_pixels, help="Most pixels in all the images of one "
                                           "request"),
    max_body_bytes: int = typer.Option(_LIMITS.max_body_bytes, help="Largest request body"),
    timeout_s: float = typer.Option(_LIMITS.timeout_s, help="Per-request timeout (answered 504)"),
    body_timeout_s: float = typer.Option(_LIMITS.body_timeout_s, help="Time a client has to send a request body "
                                         "(answered 408)"),
    max_connections: int = typer.Option(_SERVE.max_connections, help="Open connections served at once (beyond: 503)"),
    api_key: Optional[str] = typer.Option(_SERVE.api_key, envvar="EMOLAB_API_KEY", help="Require this key on every "
                                          "route but /health and the API docs (/docs, /openapi.json) (header "
                                          "'Authorization: Bearer KEY' or 'X-API-Key'). "
                                          "Set it in the environment variable EMOLAB_API_KEY: given as "
                                          "--api-key it shows in the process list (ps) to every local user"),
    cors_origin: Optional[List[str]] = typer.Option(None, help="Allow browser calls from this origin (repeatable)"),
    detector: str = typer.Option(_SERVE.detector, "--detector", help=DETECTOR_HELP),
    align: bool = typer.Option(_SERVE.align_faces, "--align", help=ALIGN_HELP),
):
    """Serve models over HTTP, with a demo page at /.

    A JSON API, Prometheus metrics and OpenAPI docs (/docs)."""
    from emolab.faces.detectors import alignment_note
    from emolab.serving import serve as run_server
    from emolab.serving.settings import BatchSettings, batch_overrides

    names = [m.rpartition("=")[0] or Path(m.rpartition("=")[2]).resolve().name for m in models]
    if len(set(names)) != len(names):  # before any model loads or worker starts
        twice = sorted({n for n in names if names.count(n) > 1})
        raise EmolabError(f"two served models would share the name {twice[0]!r}",
                          hint="serve each model once, or name them: emolab serve a=PATH b=PATH")
    note = alignment_note(detector, align)  # an unknown name: a clear error before any worker starts
    if note:
        _say(note)
    source = ctx.get_parameter_source("api_key")  # typer's own copy of click's ParameterSource: by name
    if source is not None and source.name == "COMMANDLINE":
        _say("warning: --api-key puts the key in the process's command line, readable by every local user "
             "(ps); set EMOLAB_API_KEY in the environment instead")

    limits = Limits(max_text_chars=max_text_chars, max_items=max_items, max_image_bytes=max_image_bytes,
                    max_image_pixels=max_image_pixels, max_request_pixels=max_request_pixels,
                    max_body_bytes=max_body_bytes, timeout_s=timeout_s, body_timeout_s=body_timeout_s)
    batching = batch_overrides(list(batch or []), BatchSettings(max_batch, max_wait_ms))
    run_server(ServeSettings(models=list(models), host=host, port=port, workers=workers, max_batch=max_batch,
                             max_wait_ms=max_wait_ms, batching=batching, threads=threads, limits=limits,
                             api_key=api_key, cors_origins=list(cors_origin or []), detector=detector,
                             align_faces=align, max_connections=max_connections), say=_say)


RESUMABLE = {"run": "emolab run CONFIG --resume"}


def _click_exceptions() -> tuple[type, ...]:
    """Click's exception classes: Typer raises its bundled copy of Click's, which are not click's own."""
    import click

    classes: list[type] = [click.exceptions.ClickException]
    try:
        from typer._click import exceptions as bundled

        classes.append(bundled.ClickException)
    except ImportError:  # pragma: no cover - a Typer without a bundled Click
        pass
    return tuple(classes)


def _interrupted(argv: list[str]) -> int:
    command = next((a for a in argv if not a.startswith("-")), "")
    hint = RESUMABLE.get(command)
    err_console.print("interrupted" + (f"; continue where it stopped with: {hint}" if hint else ""), highlight=False)
    return 130


def main(argv: Optional[List[str]] = None) -> None:
    """Entry point: user errors (bad input, usage mistakes) print without a traceback and exit 2; a failed check
    exits 1; Ctrl-C exits 130."""
    import click

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        code = app(args=argv, prog_name="emolab", standalone_mode=False)
    except EmolabError as exc:  # the message is text, not markup: "emolab[ray]" and paths with [ ] print as they are
        err_console.print("[bold red]error:[/]", escape(str(exc)), highlight=False)
        sys.exit(2)
    except (KeyboardInterrupt, click.exceptions.Abort, typer.Abort):
        sys.exit(_interrupted(argv))
    except _click_exceptions() as exc:  # usage errors: the usage line, the message and Typer's did-you-mean
        exc.show()
        sys.exit(exc.exit_code if isinstance(getattr(exc, "exit_code", None), int) else 2)
    if code == 130:  # Typer turns Ctrl-C into an exit code of 130
        sys.exit(_interrupted(argv))
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    main()
