"""Gather everything a report says about a run into one record (pure: reads the run directory only)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emolab.analysis.attributions import highlight_html, highlight_markdown
from emolab.compare import leaderboards
from emolab.config import MOVED_KEYS
from emolab.data import dataset_spec
from emolab.evaluation import metrics_with_intervals
from emolab.records import ModelCard
from emolab import runfiles
from emolab.rundir import open_run
from emolab.report.published import compare_published
from emolab.report.references import LIBRARY_CITATIONS, MODEL_CITATIONS

METRIC_DEFINITIONS = [
    ("accuracy", "share of examples whose top-probability label equals the true label"),
    ("precision / recall / F1 (per class)", "precision = TP / (TP + FP), recall = TP / (TP + FN), F1 = their harmonic mean"),
    ("macro-F1", "unweighted mean of the per-class F1: every class counts the same, so rare classes matter"),
    ("weighted-F1", "per-class F1 averaged with weights = class support"),
    ("cross-entropy", "mean -log p(true label): the training loss, lower is better"),
    ("KL divergence", "mean KL(target || predicted); equals the cross-entropy for one-hot targets"),
    ("ECE", "expected calibration error: |accuracy - confidence| averaged over 15 confidence bins, weighted by bin size"),
    ("micro / macro F1 (multi-label)", "F1 over all label decisions pooled (micro) or averaged per label (macro)"),
]


@dataclass
class ReportData:
    title: str
    run: str
    run_path: str  # as a user types it from where the report was made, for the commands the report prints
    task: str
    dataset: dict[str, Any]
    model: dict[str, Any]
    hardware: dict[str, Any]
    references: list[str]
    training: dict[str, Any]
    metric_definitions: list[tuple[str, str]]
    results: dict[str, Any]
    published: list[dict[str, Any]]
    published_note: str
    timing: dict[str, Any]
    hyperparameters: dict[str, Any]
    hypotheses: list[str]
    misclassified: list[dict[str, Any]]
    tags: list[dict[str, Any]]
    annotations: list[dict[str, Any]]
    ideas: list[str]
    figures: list[tuple[str, str]]
    manifest: dict[str, Any]
    attributions: list[dict[str, Any]] = field(default_factory=list)
    baseline: dict[str, Any] | None = None
    leaderboard: list[dict[str, Any]] = field(default_factory=list)
    compression: list[dict[str, Any]] = field(default_factory=list)
    robustness: dict[str, Any] | None = None  # robustness/robustness.json, when `emolab robustness` has run
    calibration: dict[str, Any] | None = None  # calibration/calibration.json, when the run is calibrated
    modality: str = "text"
    face_figures: list[tuple[str, str]] = field(default_factory=list)  # image runs: instead of highlighted text


def overfitting(history: list[dict]) -> str | None:
    """Flag the epochs where validation loss rose while training loss fell (a practitioner report spotted it by hand)."""
    bad = [h["epoch"] for prev, h in zip(history, history[1:])
           if h.get("val_loss", 0) > prev.get("val_loss", 0) and h.get("train_loss", 0) < prev.get("train_loss", 0)]
    if not bad:
        return None
    return f"validation loss rose while training loss fell at epoch(s) {', '.join(map(str, bad))}: overfitting begins"


def _label_noise(analysis: dict) -> str:
    """What cleanlab's flags say, worded from what was measured (a second opinion, where one exists)."""
    n, errors = analysis["label_issue_count"], max(analysis["errors"], 1)
    said = (f"cleanlab flags {n} of the {analysis['errors']} errors ({n / errors:.0%}) as likely label errors; it "
            "flags only examples the model gets wrong, so their error rate is 100% by construction.")
    check = analysis.get("label_check")
    if check:
        return f"{said} Checked against a second opinion: {check['conclusion']}"
    return (f"{said} Nothing here checks them: treat the share as an upper bound on label noise among the errors "
            "and review a sample of the flagged rows (`analysis/errors.csv`, tag likely_label_error) before "
            "blaming the labels.")


def _stronger_model(card: ModelCard, model_cfg: dict) -> str:
    """The usual lever for this model, named by the keys its own config section has."""
    if "backbone" in model_cfg:
        return "a larger backbone (with hub access, e.g. `--set model.backbone=microsoft/deberta-v3-large`)"
    if card.training == "one-pass" and not card.image:
        return "a fine-tuned transformer (`model.name: transformer`, as in configs/emotion-minilm.yaml)"
    return "a deeper network trained longer"


def _rare_class_idea(worst: str, shares: dict, train_cfg: dict, model_cfg: dict) -> str:
    spread = max(shares.values()) / max(min(shares.values()), 1e-12)  # = the balanced weights' spread
    if train_cfg.get("class_weights"):
        more = ("oversample it (`model.augment.oversample_rare`) or collect more examples of it"
                if "oversample_rare" in (model_cfg.get("augment") or {}) else "collect more examples of it")
        return (f"{worst} is rare and scores lowest although the loss is already weighted by class "
                f"(`train.class_weights: {str(train_cfg['class_weights']).lower()}`): {more}.")
    weights = ("`train.class_weights: true`" if spread <= 20 else
               f"`train.class_weights: sqrt`: balanced weights would lie {spread:.0f}x apart, a spread that "
               f"stalled FER+ training")
    return f"{worst} is rare and scores lowest: weight the loss by class ({weights}) or oversample it."


def _hypotheses_and_ideas(analysis: dict | None, metrics: dict, stats: dict | None, history: list[dict],
                          card: ModelCard, gap: float | None, gpu: str | None = None,
                          cfg: dict | None = None, calibrated: dict | None = None) -> tuple[list[str], list[str]]:
    """What the run's numbers suggest, and ideas worded from its own config (never a key it already sets or one
    its model does not take)."""
    hyp, ideas = [], []
    cfg = cfg or {}
    stronger = _stronger_model(card, cfg.get("model", {}))
    test = metrics.get("test", {})
    per_class = test.get("per_class", {})
    if per_class and stats:
        shares = stats["splits"]["train"]["class_shares"]
        worst = min(per_class, key=lambda n: per_class[n]["f1"])
        rarest = min(shares, key=shares.get)
        hyp.append(f"The weakest class is **{worst}** (F1 {per_class[worst]['f1']:.3f}, {shares[worst]:.1%} of the "
                   f"training data); the rarest is {rarest} ({shares[rarest]:.1%}).")
        if worst == rarest or shares[worst] < 0.5 / len(shares):
            ideas.append(_rare_class_idea(worst, shares, cfg.get("train", {}), cfg.get("model", {})))
    if analysis:
        inputs = "images" if analysis.get("modality") == "image" else "texts"
        pairs = analysis["confusion_pairs"]
        if pairs:
            top = pairs[0]
            hyp.append(f"The most frequent confusion is {top['true']} → {top['pred']} ({top['count']} errors, "
                       f"{top['share_of_true']:.1%} of {top['true']}).")
            reverse = next((p for p in pairs if p["true"] == top["pred"] and p["pred"] == top["true"]), None)
            if reverse and reverse["count"] >= 0.5 * top["count"]:
                hyp.append(f"The confusion runs both ways ({top['pred']} → {top['true']}: {reverse['count']}): the two "
                           f"labels overlap in meaning, so many such {inputs} would be ambiguous to people too.")
                ideas.append(f"Write down what separates {top['true']} from {top['pred']} and review those labels "
                             f"(annotate `analysis/errors.csv`), or merge the classes if the distinction is not needed.")
        for name, s in analysis["tag_stats"].items():
            if name != "likely_label_error" and s["tagged_errors"] >= 5 and s["lift"] >= 1.2:
                hyp.append(f"Errors concentrate on {inputs} "
                           f"tagged **{name}**: error rate {s['error_rate_tagged']:.1%} "
                           f"vs {s['error_rate_untagged']:.1%} without ({s['tagged_errors']} errors).")
                idea = {
                    "negation": "Negation trips the model: add training examples with negated emotions (augmentation) "
                                f"or try {stronger}, which composes meaning better.",
                    "hedging": "Hedged texts are misread: they carry weaker signal; more data of that kind or "
                               f"{stronger} may help.",
                    "truncated": "Truncated inputs fail more often: raise `model.max_length`.",
                    "several_emotions": "Texts with words of several emotions are confused: the task may need "
                                        "multi-label outputs, or a model that weighs context over keywords.",
                    "low_contrast": "Low-contrast faces fail more often: equalise histograms when loading, or add "
                                    "brightness/contrast augmentation.",
                    "short": "Very short texts fail more often: they carry little signal; consider abstaining "
                             "below a confidence threshold.",
                    "likely_label_error": "Many errors are probably label noise: relabel the flagged examples or "
                                          "train with cleanlab-filtered labels.",
                    "near_tie": "Near-ties (top-2 margin < 0.1) go wrong far more often than the rest: ensembling or "
                                f"{stronger} would sharpen them, or the model could abstain on them.",
                }.get(name)
                if idea and idea not in ideas:
                    ideas.append(idea)
        if analysis["label_issue_count"]:
            hyp.append(_label_noise(analysis))
        if analysis["errors"]:
            share = sum(1 for r in analysis["misclassified"] if r["margin"] < 0.1) / max(len(analysis["misclassified"]), 1)
            if share < 0.3:
                hyp.append("Most of the listed errors are confident (top-2 margin ≥ 0.1): the model is sure and wrong, "
                           f"which points at ambiguous {inputs} or noisy labels more than at indecision.")
    ece = test.get("ece")
    if ece is not None and ece > 0.05:
        if calibrated and "test" in calibrated:
            after = calibrated["test"]["ece"]["after"]
            hyp.append(f"As trained, the model is miscalibrated (ECE {ece:.3f}); its calibration "
                       f"({calibrated['summary']}) brings the test ECE to {after:.3f} (see Calibration).")
        else:
            hyp.append(f"The model is miscalibrated (ECE {ece:.3f}).")
            ideas.append("Calibrate the probabilities before using them as confidences: `emolab calibrate RUN` fits a "
                         "temperature on the validation split (or set eval.calibrate: temperature).")
    flag = overfitting(history)
    if flag:
        hyp.append(flag.capitalize() + ".")
        ideas.append("Stop earlier (`train.patience`), add dropout or weight decay, or lower the learning rate.")
    if gap is not None and gap < -0.005 and card.image:
        lever = ("more epochs, stronger augmentation or an ensemble of seeds (runs with `--set seed=N`; average their "
                 "`predictions_test.npz` probabilities) are the usual levers" if gpu else
                 "a deeper CNN trained longer is the usual lever (on a GPU: "
                 "`emolab run configs/fer2013-resnet18-gpu.yaml`)")
        ideas.append(f"The run is {abs(gap):.3f} below the best published score on this split: {lever}.")
    elif gap is not None and gap < -0.005:
        ideas.append(f"The run is {abs(gap):.3f} below the best published score on this split: {stronger} is the "
                     "usual lever.")
    if not ideas:
        ideas.append(f"No single failure pattern stands out; gains would come from more data or {stronger}.")
    return hyp, ideas


# train keys that steer how the run was executed, not what was learned
OPERATIONAL = ("log_every", "num_threads", "keep_checkpoints", "max_steps")


def train_hyperparameters(train: dict, card: ModelCard) -> dict[str, Any]:
    """The train section as it applied to this model: no momentum unless SGD, none of the operational keys, and
    none of the keys that moved to the model section (an older run's saved train section still holds them; runs
    written since list them among the model's hyperparameters)."""
    skip = set(OPERATIONAL) | {key for section, key in MOVED_KEYS if section == "train"}
    if train.get("optimizer") != "sgd":
        skip.add("momentum")
    if train.get("scheduler") in ("constant", "plateau"):
        skip.add("warmup_ratio")
    return {k: v for k, v in train.items() if k not in skip}


def gather(run_path: str | Path, *, others: list[str | Path] = ()) -> ReportData:
    reader = open_run(run_path)
    run, run_name, card = reader.path, reader.name, reader.card
    cfg = reader.config.to_dict()
    manifest, metrics, history = reader.manifest, metrics_with_intervals(reader), reader.history
    stats = reader.json(runfiles.DATA_STATS)
    analysis = reader.json(runfiles.ANALYSIS_JSON)
    gpu = manifest.get("hardware", {}).get("gpu")
    published, note, gap = compare_published(cfg, card, metrics, stats, gpu)
    hyp, ideas = _hypotheses_and_ideas(analysis, metrics, stats, history, card, gap, gpu, cfg,
                                       reader.json(runfiles.CALIBRATION_JSON))
    data_name = cfg["data"]["name"]
    citation = dataset_spec(data_name).citation
    modality = card.modality
    faces = [(caption, rel) for caption, rel in [
        ("Most confidently misclassified test faces (true → predicted, confidence)", runfiles.MISCLASSIFIED_FACES_PLOT),
        ("Occlusion maps: where the model looked when it misread these faces", runfiles.OCCLUSION_FACES_PLOT),
    ] if (run / rel).is_file()]
    figures = [(caption, rel) for caption, rel in [
        ("Sample training faces per class", runfiles.SAMPLE_FACES_PLOT),
        ("Class distribution per split", runfiles.CLASS_DISTRIBUTION_PLOT),
        ("Learning curves (train vs validation)", runfiles.LEARNING_CURVES_PLOT),
        ("Learning rate, gradient norm and loss per optimizer step", runfiles.STEPS_PLOT),
        ("Confusion matrix, test split (row-normalised)", runfiles.confusion_plot("test")),
        ("Per-class precision, recall and F1 (test)", runfiles.PER_CLASS_PLOT),
        ("Confidence of right vs wrong predictions (test)", runfiles.CONFIDENCE_PLOT),
        ("Reliability diagram (test)", runfiles.RELIABILITY_PLOT),
        ("Reliability before and after calibration", runfiles.CALIBRATION_PLOT),
        ("Compression: accuracy vs batch-1 latency", runfiles.PARETO_PLOT),
        ("Unstructured pruning: accuracy vs sparsity (fp32)", runfiles.sparsity_plot("fp32")),
        ("Unstructured pruning: accuracy vs sparsity (fp16)", runfiles.sparsity_plot("fp16")),
    ] if (run / rel).is_file()]
    tag_rows = []
    if analysis:
        for name, s in analysis["tag_stats"].items():
            tag_rows.append({"tag": name, "rule": analysis["tags"][name], **s})
    steps = run / runfiles.STEPS
    training = {
        "history": history,
        "overfitting": overfitting(history),
        "learning_curves": (run / runfiles.LEARNING_CURVES_PLOT).is_file(),
        "steps_logged": sum(1 for _ in steps.open()) if steps.is_file() else 0,
        "sanity": reader.json(runfiles.SANITY),
        "best_epoch": max(history, key=lambda h: h.get("val_macro_f1", 0))["epoch"] if history else None,
    }
    timing = {"wall_times": manifest.get("wall_times", {}), **metrics.get("timing", {})}
    leaderboard = ([row for rows in leaderboards([run, *map(Path, others)], say=lambda _m: None) for row in rows]
                   if others else [])
    return ReportData(
        title=f"emolab report: {run_name}",
        run=run_name,
        run_path=_as_typed(run.with_name(run_name)),  # a report written inside <name>.partial: the final path
        task=("Multi-label" if card.labels.multi_label else "Single-label") +
             f" emotion / sentiment classification of {_inputs(card)} "
             f"into {len((stats or {}).get('labels', []))} classes "
             f"({', '.join((stats or {}).get('labels', []))}).",
        dataset={"name": data_name, "config": cfg["data"], "stats": stats, "citation": citation},
        model={"name": card.model, "summary": card.summary, "family": card.family,
               "parameters": metrics.get("parameters"), "config": cfg["model"]},
        hardware={**manifest.get("hardware", {}), "platform": manifest.get("platform"), "python": manifest.get("python")},
        references=list(dict.fromkeys(c for c in [citation,
                                                  MODEL_CITATIONS.get(card.citation or ""), *LIBRARY_CITATIONS] if c)),
        training=training,
        metric_definitions=METRIC_DEFINITIONS,
        results={s: metrics[s] for s in ("validation", "test") if s in metrics},
        published=published,
        published_note=note,
        timing=timing,
        hyperparameters={"model": card.hyperparameters,
                         "train": train_hyperparameters(cfg["train"], card) if card.training == "loop" else {},
                         "seed": cfg["seed"]},
        hypotheses=hyp,
        misclassified=(analysis or {}).get("misclassified", []),
        tags=tag_rows,
        annotations=(analysis or {}).get("annotations", []),
        ideas=ideas,
        figures=figures,
        manifest=manifest,
        attributions=[{**a, "html": highlight_html(a["words"]), "markdown": highlight_markdown(a["words"])} for a in (analysis or {}).get("attributions", [])],
        baseline=(analysis or {}).get("baseline"),
        leaderboard=leaderboard,
        compression=reader.json(runfiles.COMPRESSION_RESULTS) or [],
        robustness=reader.json(runfiles.ROBUSTNESS_JSON),
        calibration=reader.json(runfiles.CALIBRATION_JSON),
        modality=modality,
        face_figures=faces,
    )


def _as_typed(path: Path) -> str:
    """The run's path as a user would type it from where the report was made (relative when below it)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(Path(path).resolve())


def _inputs(card: ModelCard) -> str:
    if card.image:
        return f"{card.side}x{card.side} face images"
    return "text"
