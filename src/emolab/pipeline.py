"""``emolab run``: data -> train -> evaluate -> write the run directory. Also re-evaluation and prediction."""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from emolab import plots, runfiles
from emolab.config import RunConfig, dump_config
from emolab.data import load_dataset
from emolab.data.stats import dataset_stats, sample_faces
from emolab.errors import EmolabError
from emolab.faces.detectors import DEFAULT_DETECTOR, DEFAULT_MIN_FACE
from emolab.evaluation import evaluate, metrics_markdown, predict, time_inference
from emolab.models import create_model
from emolab.outputs import check_new_files, check_output, unique_names
from emolab.records import Dataset, EpochRecord, TrainLogger
from emolab.rundir import (RunDir, atomic_write, decision_thresholds, environment, git_revision, now_iso,
                           open_run, to_json)
from emolab.sections import replace_checked
from emolab.seeding import seed_everything
from emolab.tracking import Trackers

Say = Callable[[str], None]


def _evaluate_and_write(run: RunDir, model, ds: Dataset, cfg: RunConfig, say: Say) -> dict[str, Any]:
    preds = {s: predict(model, ds.split(s), s, batch_size=cfg.eval.batch_size) for s in cfg.eval.splits}
    metrics = evaluate(preds, threshold=cfg.eval.threshold, tune=cfg.eval.tune_thresholds,
                       ece_bins=cfg.eval.ece_bins, bootstrap=cfg.eval.bootstrap, seed=cfg.seed)
    thresholds = (list(metrics["tuned_thresholds"].values()) if "tuned_thresholds" in metrics
                  else cfg.eval.threshold)
    for p in preds.values():
        run.write_predictions(p, thresholds=thresholds)
    if cfg.eval.timing:
        say("timing inference (batch 1 and 64)")
        sample = ds.split(cfg.eval.splits[-1]).inputs[: cfg.eval.timing_examples]
        metrics["timing"] = time_inference(model, sample, n=cfg.eval.timing_examples)
    if model.num_parameters() is not None:
        metrics["parameters"] = model.num_parameters()
    run.write_json(runfiles.METRICS, metrics)
    title = f"# Metrics: {run.name}\n\nmodel `{cfg.model.name}` ({model.card().summary}), dataset `{cfg.data.name}`\n\n"
    run.write_text(runfiles.METRICS_MD, title + metrics_markdown(metrics, ds.labels.names))
    for s in cfg.eval.splits:
        if "confusion_matrix" in metrics[s]:
            plots.confusion_heatmap(metrics[s]["confusion_matrix"], ds.labels.names,
                                    run.file(runfiles.confusion_plot(s)), title=f"Confusion matrix ({s})")
    return metrics


def _distributed() -> bool:
    """True under ``accelerate launch`` / ``torchrun`` with several processes."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def _create_run_dir(cfg: RunConfig, *, resume: bool, overwrite: bool) -> tuple[RunDir, bool]:
    """The main process creates the run directory; under data parallelism the others learn its path."""
    name = cfg.output.name or "run"
    overwrite = overwrite or cfg.output.overwrite
    if not _distributed():
        return RunDir.create(cfg.output.dir, name, overwrite=overwrite, resume=resume), True
    from accelerate import PartialState
    from accelerate.utils import broadcast_object_list

    import torch

    state = PartialState(cpu=not torch.cuda.is_available())  # gloo on CPU-only machines
    box = [None]
    if state.is_main_process:
        box = [str(RunDir.create(cfg.output.dir, name, overwrite=overwrite, resume=resume).final)]
    broadcast_object_list(box)
    return RunDir(Path(box[0]), overwrite=True), state.is_main_process


def _analyse_and_report(path: Path, ds: Dataset, say: Say, *, notebook: bool = False) -> None:
    from emolab.analyze import analyze_run
    from emolab.report import write_report

    if not ds.labels.multi_label:
        say("analysing errors")
        analyze_run(path, split="test", say=say)
    write_report(path, say=lambda _m: None)
    if notebook:
        from emolab.report.notebook import write_notebook

        say("writing and running report.ipynb")
        try:
            write_notebook(path, say=lambda _m: None)
        except EmolabError as exc:  # the run itself is complete: say so and keep it
            say(f"warning: report.ipynb not written: {exc.message}; `emolab report RUN --notebook` tries again")
    say(f"report: {path.name.removesuffix('.partial')}/report.html")


class RunLogger(TrainLogger):
    """Where training reports to during ``emolab run``: the run directory (history and steps), the
    trackers, the terminal, and an optional per-epoch callback (sweeps prune with it)."""

    def __init__(self, run_dir: RunDir, trackers: Trackers, say: Say, on_epoch: Callable[[Any], None] | None):
        self.run_dir, self.trackers, self.say, self.callback = run_dir, trackers, say, on_epoch
        self.history: list[EpochRecord] = []

    def on_resume(self, step: int, history: list[EpochRecord]) -> None:
        self.history = list(history)
        self.run_dir.append_steps([], after_step=step)

    def on_steps(self, rows: list[dict]) -> None:
        self.run_dir.append_steps(rows)
        self.trackers.steps(rows)

    def on_epoch(self, record: EpochRecord) -> None:
        self.history.append(record)
        self.run_dir.write_history(self.history)
        self.trackers.epoch(record.to_dict())
        self.say(f"epoch {record.epoch}: " + ", ".join(f"val_{k} {v:.4f}" for k, v in record.validation.items()))
        if self.callback is not None:
            self.callback(record)


def run(cfg: RunConfig, *, resume: bool = False, overwrite: bool = False, say: Say = print,
        on_epoch: Callable[[Any], None] | None = None) -> Path:
    """Train and evaluate one config; returns the finished run directory.

    Under ``accelerate launch`` / ``torchrun`` every process trains its shard of each batch and only
    the main process writes; the others return the run path once training ends. ``on_epoch`` sees every
    epoch record as it is written (sweeps use it to prune).
    """
    from emolab.training import train

    t0 = time.perf_counter()
    seed_everything(cfg.seed)
    run_dir, main = _create_run_dir(cfg, resume=resume, overwrite=overwrite)
    if not main:
        say = lambda _msg: None  # noqa: E731
    say(f"run directory: {run_dir.path}")
    if main:
        run_dir.write_text(runfiles.CONFIG, dump_config(cfg))
    manifest: dict[str, Any] = {"name": run_dir.name, "started": now_iso(), "seed": cfg.seed,
                                "git_revision": git_revision(), **environment()}

    t = time.perf_counter()
    ds = load_dataset(cfg.data, cfg.seed)
    run_dir.timings["data_s"] = time.perf_counter() - t
    say(f"data: {ds.name} " + ", ".join(f"{k} {len(v)}" for k, v in ds.splits.items()))
    manifest["dataset"] = {"name": ds.name, "labels": list(ds.labels.names), "files": ds.files, "info": ds.info,
                           "sizes": {k: len(v) for k, v in ds.splits.items()}}
    if main:
        stats = dataset_stats(ds)
        run_dir.write_json(runfiles.DATA_STATS, stats)
        plots.class_distribution({s: v["class_counts"] for s, v in stats["splits"].items()},
                                 run_dir.file(runfiles.CLASS_DISTRIBUTION_PLOT),
                                 title=f"{ds.name}: class distribution")
        if ds.modality == "image":
            plots.face_grid(sample_faces(ds.split("train"), ds.labels.names), run_dir.file(runfiles.SAMPLE_FACES_PLOT),
                            title=f"{ds.name}: sample training faces per class")

    model = create_model(cfg.model, ds.labels, ds)
    say(f"training {cfg.model.name} ({model.card().summary})")
    trackers = Trackers(cfg.output.trackers if main else [], run_dir.path, cfg.to_dict(), run_dir.name, say)
    logger = RunLogger(run_dir, trackers, say, on_epoch) if main else None

    t = time.perf_counter()
    if resume and not model.supports_resume:
        raise EmolabError(f"model {cfg.model.name!r} keeps no checkpoints, so its interrupted run cannot continue",
                          hint="start it again with --overwrite (this replaces the interrupted folder "
                               f"{run_dir.path.name}, nothing else)")
    history = train(model, ds, cfg, logger, workdir=run_dir.path, resume=resume)
    if not main:
        return run_dir.final
    model.set_inference(cfg.eval)
    run_dir.write_history(history)
    run_dir.timings["train_s"] = time.perf_counter() - t
    model.save(run_dir.path / runfiles.MODEL)
    if not cfg.train.keep_checkpoints:
        shutil.rmtree(run_dir.path / runfiles.CHECKPOINTS, ignore_errors=True)
    if len(history) > 1:
        plots.learning_curves([h.to_dict() for h in history], run_dir.file(runfiles.LEARNING_CURVES_PLOT))
    steps = open_run(run_dir.path).jsonl(runfiles.STEPS)
    if steps:
        plots.step_curves(steps, run_dir.file(runfiles.STEPS_PLOT))

    say("evaluating " + ", ".join(cfg.eval.splits))
    t = time.perf_counter()
    metrics = _evaluate_and_write(run_dir, model, ds, cfg, say)
    run_dir.timings["evaluate_s"] = time.perf_counter() - t
    run_dir.timings["total_s"] = time.perf_counter() - t0
    if cfg.eval.calibrate != "none":
        say(f"calibrating on the validation split (eval.calibrate: {cfg.eval.calibrate})")
        calibrate_run(run_dir.path, method=cfg.eval.calibrate, say=say)
    if cfg.eval.robustness and "test" in cfg.eval.splits and not ds.labels.multi_label:
        from emolab.robustness.evaluate import robustness_run

        t = time.perf_counter()
        say("scoring the test split under perturbations (eval.robustness)")
        robustness_run(run_dir.path, say=lambda _m: None)
        run_dir.timings["robustness_s"] = time.perf_counter() - t
    manifest.update(finished=now_iso(), wall_times=run_dir.timings)
    run_dir.write_json(runfiles.MANIFEST, manifest)
    if cfg.eval.report and "test" in cfg.eval.splits:
        _analyse_and_report(run_dir.path, ds, say, notebook=cfg.eval.notebook)
    else:
        from emolab.report.modelcard import write_model_card

        write_model_card(run_dir.path)  # what the report would also have written
    trackers.finish(metrics, run_dir.path)
    final = run_dir.finalize()
    main = "test" if "test" in metrics else cfg.eval.splits[-1]
    headline = {k: metrics[main][k] for k in ("accuracy", "macro_f1", "micro_f1") if k in metrics[main]}
    say(f"{main}: " + ", ".join(f"{k} {v:.4f}" for k, v in headline.items()) +
        f"  ({run_dir.timings['total_s']:.1f}s)")
    say(f"wrote {final}")
    return final


# --- using a finished run -----------------------------------------------------------------------------


def inference_model(run, *, precision: str = "fp32", tta: str | None = None):
    """The run's model, ready to predict: at ``precision``, with the run's inference settings (an image run with
    another test-time augmentation when ``tta`` is given; --tta on a text run or an unknown mode is an error)."""
    if tta is not None and not run.card.image:
        raise EmolabError(f"--tta applies to image runs; {run.path} holds a {run.card.model!r} text model "
                          f"({run.card.summary})", hint="leave --tta out for text runs")
    eval_cfg = run.config.eval if tta is None else replace_checked(run.config.eval, "eval.", source="--tta", tta=tta)
    model = run.model()
    model.to_precision(precision)
    model.set_inference(eval_cfg)
    return model


def evaluate_run(run_path: str | Path, split: str = "test", *, precision: str = "fp32", tta: str | None = None,
                 say: Say = print) -> dict:
    """Re-score a saved run on one split (optionally in fp16/bf16, image runs with another test-time
    augmentation); writes ``evaluations/<split>-<precision>[-tta-<mode>].json``."""
    run = open_run(run_path)
    cfg = run.config
    model = inference_model(run, precision=precision, tta=tta)
    ds = load_dataset(cfg.data, cfg.seed)
    preds = {split: predict(model, ds.split(split), split, batch_size=cfg.eval.batch_size)}
    if model.labels.multi_label and split != "validation":
        preds = {"validation": predict(model, ds.split("validation"), "validation"), **preds}
    metrics = evaluate(preds, threshold=cfg.eval.threshold, tune=cfg.eval.tune_thresholds,
                       bootstrap=cfg.eval.bootstrap, seed=cfg.seed)[split]
    out = run.path / "evaluations" / f"{split}-{precision}{f'-tta-{tta}' if tta else ''}.json"
    atomic_write(out, to_json(metrics) + "\n")
    say(f"wrote {out}")
    return metrics


def calibrate_run(run_path: str | Path, *, method: str = "auto", overwrite: bool = False,
                  say: Say = print) -> dict[str, Any]:
    """Fit a calibration on the run's validation predictions, measure ECE / NLL / Brier before and after on its
    test split (intervals, paired change), draw both reliability curves, and record the calibration in the
    model card so every later ``predict_proba`` (predict, score, serve, exports) applies it. Writes
    ``calibration/calibration.json``, ``calibration.md`` and ``reliability.png``."""
    from emolab import calibration as cal
    from emolab.models.registry import MODEL_FILE, read_model_card

    run = open_run(run_path)
    card = run.card
    saved = cal.Calibration.of_card(card.extra)
    if saved is not None and not overwrite:
        raise EmolabError(f"{run.path} is calibrated already ({saved.summary()})",
                          hint="add --overwrite to fit it again (the run's predictions are unchanged: it refits the same)")
    if not run.has(runfiles.predictions_npz("validation")):
        raise EmolabError(f"{run.path} has no validation predictions to fit a calibration on",
                          hint="calibration is fitted on the validation split: run the config again with validation in "
                               "eval.splits (and eval.calibrate: temperature to calibrate as part of the run)")
    multi = card.labels.multi_label
    val = run.predictions("validation")
    fitted = cal.fit(val.y_true, val.probs, multi_label=multi, method=method)
    seed, resamples = run.config.seed, run.config.eval.bootstrap
    bins = run.config.eval.ece_bins
    result: dict[str, Any] = {"run": run.name, "fitted_on": "validation", "n_fit": len(val.y_true),
                              "calibration": fitted.to_dict(), "summary": fitted.summary()}
    for split in ("validation", "test"):
        if run.has(runfiles.predictions_npz(split)):
            preds = val if split == "validation" else run.predictions(split)
            result[split] = cal.calibration_metrics(preds.y_true, preds.probs, fitted.apply(preds.probs),
                                                    multi_label=multi, n_bins=bins, resamples=resamples, seed=seed)
    measured = "test" if "test" in result else "validation"
    atomic_write(run.path / runfiles.CALIBRATION_JSON, to_json(result) + "\n")
    if measured == "test":
        md = (f"# Calibration: {run.name}\n\n{fitted.method} scaling fitted on the validation split "
              f"({len(val.y_true)} examples) by minimising the NLL: {fitted.summary()}. Measured on the test split "
              f"({result['test']['n']} examples, {result['test']['ece_kind']} ECE over {bins} bins); in brackets "
              "95% bootstrap intervals, the change on the same resamples.\n\n" + cal.metrics_markdown(result))
        atomic_write(run.path / runfiles.CALIBRATION_MD, md)
    rel = result[measured]["reliability"]
    plots.reliability_comparison({k: {kk: np.asarray(vv) for kk, vv in v.items()} for k, v in rel.items()},
                                 run.path / runfiles.CALIBRATION_PLOT, title=f"Reliability ({measured}): before and after")
    model_folder = run.path / runfiles.MODEL
    raw = read_model_card(model_folder)
    raw["calibration"] = fitted.to_dict()
    atomic_write(model_folder / MODEL_FILE, json.dumps(raw, indent=2))
    ece = result[measured]["ece"]
    change = f" ({ece['relative_change']:+.0%})" if ece["relative_change"] is not None else ""
    say(f"calibrated {run.name}: {fitted.summary()}; {measured} ECE {ece['before']:.4f} -> {ece['after']:.4f}{change}")
    say(f"wrote {run.path / runfiles.CALIBRATION} and the calibration into {model_folder / MODEL_FILE}")
    return result


def face_detector(name: str, align: bool, say: Say = print):
    """The named face detector; says so when ``align`` cannot apply (a detector without landmarks)."""
    from emolab.faces.detectors import alignment_note, create_detector

    note = alignment_note(name, align)
    if note:
        say(note)
    return create_detector(name)


def evaluate_photos_run(run_path: str | Path, folder: str | Path, *, detector: str = DEFAULT_DETECTOR,
                        min_face: int = DEFAULT_MIN_FACE, align: bool = False, say: Say = print) -> dict:
    """``emolab evaluate FACE_RUN --photos FOLDER``: the face model on labelled real photos through the face
    detector; writes ``evaluations/photos-<folder>.json`` and its contact sheet."""
    from emolab.faces.wild import evaluate_photos

    run = open_run(run_path)
    if not run.card.image:
        raise EmolabError(f"--photos applies to face runs; {run.path} holds a text model ({run.card.summary})",
                          hint="leave --photos out for text runs")
    folder = Path(folder)
    out = run.path / "evaluations" / f"photos-{folder.resolve().name}"
    result = evaluate_photos(run.model(), run.card.side, folder,
                             face_detector(detector, align, say), min_face=min_face, align=align,
                             sheet=out.with_suffix(".png"))
    atomic_write(out.with_suffix(".json"), to_json(result) + "\n")
    say(f"wrote {out.with_suffix('.json')}")
    return result


def _image_files(items: list[str]) -> list[Path]:
    from emolab.faces.photos import image_files

    files = []
    for item in map(Path, items):
        if item.is_dir():
            files += image_files(item, recursive=True)  # regular files only: a FIFO named x.png would hang
        elif item.is_file():
            files.append(item)
        elif item.exists():
            raise EmolabError(f"{item}: not a regular file (a FIFO, socket or device); only image files are read",
                              hint="give image files or folders of images")
        else:
            raise EmolabError(f"image not found: {item}", hint="give image files or folders of images")
    if not files:
        raise EmolabError("no images found", hint="give .png/.jpg files or folders holding them")
    return files


def predict_photos(run_path: str | Path, items: list[str], *, detect: bool = True, detector: str = DEFAULT_DETECTOR,
                   min_face: int = DEFAULT_MIN_FACE, align: bool = False, annotate_dir: str | Path | None = None,
                   overwrite: bool = False, say: Say = print):
    """Every face in image files or folders, from a saved face model (``emolab predict FACE_RUN photo.jpg``):
    returns ``(rows, label names)``, one :class:`~emolab.faces.photos.FaceRow` per face or faceless photo; with
    ``annotate_dir`` each photo is also written there (``<stem>.annotated.png``, ``<stem>-2...`` when two inputs
    share a stem) with its boxes and labels drawn; an existing file there is replaced only with ``overwrite``."""
    from emolab.faces.photos import PhotoPredictor, annotate
    from emolab.models import load_model, model_card

    card = model_card(run_path)
    if not card.image:
        raise EmolabError(f"{run_path} holds a text model", hint="give texts, not images, to a text model")
    files = _image_files(items)
    names = unique_names(files, ".annotated.png")
    if annotate_dir is not None:  # before any work: nothing of the user's is replaced unless asked
        check_new_files(Path(annotate_dir), names.values(), overwrite=overwrite, inputs=files)
    predictor = PhotoPredictor(load_model(run_path), card.side,
                               face_detector(detector, align, say) if detect else None, min_face, align)
    rows = predictor.rows(files, keep_photos=annotate_dir is not None)
    if annotate_dir is not None:
        for f in files:
            annotate(predictor.photos[str(f)], [r for r in rows if r.file == str(f)], Path(annotate_dir) / names[f])
        say(f"wrote {len(files)} annotated image(s) to {annotate_dir}")
    return rows, card.labels.names


def predict_video(run_path: str | Path, video: str | Path, *, fps: float = 5.0, output: str | Path | None = None,
                  annotate_dir: str | Path | None = None, detector: str = DEFAULT_DETECTOR, min_face: int = DEFAULT_MIN_FACE,
                  align: bool = False, overwrite: bool = False, say: Say = print):
    """Faces through a video (``emolab predict FACE_RUN clip.mp4 --fps 5``): writes the per-frame, per-track
    CSV (``output``; default ``<video>.emotions.csv`` in ``annotate_dir`` if given, else beside the video), its
    timeline plot beside the CSV, and with ``annotate_dir`` the annotated video; returns the rows. Nothing existing
    is replaced unless ``overwrite``, and the video itself never."""
    from emolab.faces.video import predict_video as run_video
    from emolab.faces.video import timeline_plot, video_csv
    from emolab.models import load_model, model_card

    video = Path(video)
    if not video.is_file():
        raise EmolabError(f"video not found: {video}", hint="give a video file (.mp4, .avi, .mov, ...)")
    card = model_card(run_path)
    if not card.image:
        raise EmolabError(f"{run_path} holds a text model", hint="give a face model's run for videos")
    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and 0 < fps <= 1000):
        raise EmolabError(f"--fps {fps} is not a frame rate", hint="give frames sampled per second, e.g. --fps 5")
    annotated = Path(annotate_dir) / f"{video.stem}.annotated.mp4" if annotate_dir is not None else None
    out = Path(output) if output is not None else (Path(annotate_dir) if annotate_dir is not None
                                                   else video.parent) / f"{video.stem}.emotions.csv"
    plot_file = out.with_suffix(".timeline.png")
    for target, flag in ((out, "--output"), (plot_file, "the timeline plot"), (annotated, "--annotate")):
        if target is not None:
            check_output(target, inputs=[video], overwrite=overwrite, flag=flag)
    rows = run_video(load_model(run_path), card.side, video, face_detector(detector, align, say),
                     fps=fps, min_face=min_face, align=align, annotate=annotated)
    atomic_write(out, video_csv(rows, card.labels.names))
    plot = timeline_plot(rows, card.labels.names, plot_file)
    say(f"{video.name}: {len({r.frame for r in rows})} sampled frames with faces, {len({r.track for r in rows})} "
        f"track(s), {len(rows)} rows -> {out}, {plot}" + (f", {annotated}" if annotated else ""))
    return rows


def predict_inputs(run_path: str | Path, items: list[str]) -> tuple[list[str], list[str], np.ndarray, tuple[str, ...]]:
    """Labels and probabilities for texts, from a saved run or model folder (no network); image models read
    photos through :func:`predict_photos`. Returns (texts, labels, probabilities, names)."""
    from emolab.models import load_model, model_card

    if model_card(run_path).image:
        raise EmolabError(f"{run_path} holds a face model", hint="give it image files: faces are found in them first")
    model = load_model(run_path)
    names = model.labels.names
    filled = [i for i, text in enumerate(items) if text.strip()]  # a blank text keeps its row, with no label
    probs = np.full((len(items), len(names)), np.nan)
    if filled:
        probs[filled] = model.predict_proba([items[i] for i in filled])
    thresholds = decision_thresholds(run_path, names, calibrated=True) if model.labels.multi_label else 0.5
    return items, model.labels.decide(probs, thresholds), probs, names
