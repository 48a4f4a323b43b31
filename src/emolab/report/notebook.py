"""``emolab report RUN --notebook``: the report as a Jupyter notebook a reader can rerun and change.

Every section is a short Markdown cell and a code cell that computes it from the run's files through
emolab's public run reader (``emolab.rundir.open_run``), relative to the notebook's own folder, so the
notebook works wherever the run directory is moved. It is built with ``nbformat``, executed once with
``nbclient`` on a local kernel (no network; progress bars off) so it ships with its outputs, figures as PNG,
and is written without widget metadata: GitHub's renderer shows it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from emolab import runfiles
from emolab.errors import EmolabError
from emolab.rundir import atomic_write, open_run

SETUP = '''\
import os
import sys

sys.path[:] = [p for p in sys.path if p not in ("", ".", os.getcwd())]  # import nothing from the run folder
import warnings

os.environ["TQDM_DISABLE"] = "1"  # no progress-bar widgets in the saved notebook
warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm's note (with this machine's paths)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from emolab.evaluation import metrics_with_intervals
from emolab.rundir import open_run

%config InlineBackend.figure_formats = ["png"]
pd.set_option("display.max_colwidth", 120)

RUN = Path(".").resolve()  # this notebook sits in its run directory; change RUN to read another run
run = open_run(RUN)
card, config, manifest = run.card, run.raw_config, run.manifest
metrics = metrics_with_intervals(run)  # metrics.json, with 95% bootstrap intervals
analysis = run.json("analysis/analysis.json")
stats = run.json("data_stats.json")
print(f"run {run.name}: {card.model} ({card.summary}) on {config['data']['name']}")'''

TASK = '''\
labels = list(card.labels.names)
kind = "multi-label" if card.labels.multi_label else "single-label"
print(f"{kind} classification of {'face images' if card.image else 'text'} into {len(labels)} classes: {', '.join(labels)}")'''

DATASET = '''\
table = pd.DataFrame({split: {"examples": s["n"], **{lab: s["class_counts"][lab] for lab in stats["labels"]}}
                      for split, s in stats["splits"].items()}).T
table'''

HYPERPARAMETERS = '''\
from emolab.report.data import train_hyperparameters

model_keys = pd.Series(card.hyperparameters, name="model", dtype=object)
train_keys = pd.Series(train_hyperparameters(config["train"], card) if card.training == "loop" else {},
                       name="train", dtype=object)
display(model_keys.to_frame())
train_keys.to_frame()'''

CURVES = '''\
history = pd.DataFrame(run.history).set_index("epoch")
columns = [c for c in ("train_loss", "val_loss", "train_accuracy", "val_accuracy", "val_macro_f1") if c in history]
fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
history[[c for c in columns if c.endswith("loss")]].plot(ax=axes[0], marker="o", title="loss")
history[[c for c in columns if not c.endswith("loss")]].plot(ax=axes[1], marker="o", title="accuracy / macro-F1")
plt.tight_layout()
history[columns].round(4)'''

METRICS = '''\
from emolab.significance import with_interval

keys = ["micro_f1", "macro_f1", "subset_accuracy"] if card.labels.multi_label else ["accuracy", "macro_f1", "weighted_f1"]
rows = {split: {k: with_interval(metrics[split][k], metrics[split].get("intervals", {}).get(k)) for k in keys}
        for split in ("train", "validation", "test") if split in metrics}
main = "test" if "test" in metrics else list(rows)[-1]  # a run scored without a test split: its last split
test = metrics[main]
headline = "micro_f1" if card.labels.multi_label else "accuracy"
print(f"{main} {headline} {test[headline]:.4f}, macro-F1 {test['macro_f1']:.4f} (n={test['n']})")
pd.DataFrame(rows).T'''

PER_CLASS = '''\
ci = test.get("intervals", {}).get("per_class_f1", {})
per_class = pd.DataFrame(test["per_class"]).T
per_class["f1 [95% CI]"] = [with_interval(row["f1"], ci.get(name)) for name, row in per_class.iterrows()]
per_class.round(4)'''

CONFUSION = '''\
from sklearn.metrics import ConfusionMatrixDisplay

cm = np.array(test["confusion_matrix"])
fig, ax = plt.subplots(figsize=(1 + 0.8 * len(labels), 0.8 * len(labels)))
ConfusionMatrixDisplay(cm, display_labels=labels).plot(ax=ax, cmap="Blues", colorbar=False, xticks_rotation=45)
ax.set_title(f"{main} confusion matrix (rows: true label)")
plt.tight_layout()'''

MISCLASSIFIED = '''\
columns = ["id", "input", "true", "pred", "confidence", "margin"]
errors = pd.DataFrame([{k: r[k] for k in columns} for r in analysis["misclassified"]], columns=columns)
print(f"{analysis['errors']} errors of {analysis['n']} test examples; the most confidently wrong first")
errors.head(15)'''

TAGS = '''\
tags = pd.DataFrame(analysis["tag_stats"]).T
tags.insert(0, "rule", pd.Series(analysis["tags"]))
tags.round(3)'''

ANNOTATIONS = '''\
notes = analysis.get("annotations", [])
print("\\n".join(f"{a['id']}: {a['annotation']} (fix: {a['fix']})" for a in notes) or
      "No annotations yet: fill analysis/errors.csv and run `emolab analyze RUN --annotations RUN/analysis/errors.csv`.")'''

PUBLISHED = '''\
from emolab.report.published import compare_published

rows, paragraph, _ = compare_published(run.config.to_dict(), card, metrics, stats, manifest.get("hardware", {}).get("gpu"))
display(Markdown(paragraph or "No published numbers are recorded for this dataset."))
pd.DataFrame(rows)[["model", "metric", "split", "published", "ours", "verdict"]] if rows else None'''

TIMING = '''\
pd.Series({**{k: round(v, 1) for k, v in manifest.get("wall_times", {}).items()},
           **{k: round(v, 2) for k, v in metrics.get("timing", {}).items()}}, name="value").to_frame()'''

REPRODUCE = '''\
print(f"git revision {manifest.get('git_revision')}, seed {manifest.get('seed')}, "
      f"started {manifest.get('started')}, finished {manifest.get('finished')}")
print("packages:", ", ".join(f"{k} {v}" for k, v in manifest.get("packages", {}).items()))
for name, sha in manifest.get("dataset", {}).get("files", {}).items():
    print(f"{name}: sha256 {sha}")
print(f"rerun: emolab run {run.name}/config.yaml")'''

TRY_TEXT = '''\
model = run.model()  # the saved model (safetensors / ONNX), offline
texts = ["i feel wonderful today", "i am so scared of what comes next", "this makes me furious"]  # change me
probs = model.predict_proba(texts)
pd.DataFrame(probs, index=texts, columns=labels).round(3)'''

TRY_FACE = '''\
import dataclasses
from importlib import resources

from emolab.pipeline import predict_photos

photo = resources.files("matplotlib") / "mpl-data" / "sample_data" / "grace_hopper.jpg"  # change me
faces, _ = predict_photos(RUN, [str(photo)], say=lambda _m: None)  # finds the faces first, one row per face
pd.DataFrame([dataclasses.asdict(f) for f in faces])'''


def _cells(run) -> list[tuple[str, str]]:
    """(Markdown, code) pairs for the sections this run has files for."""
    has_analysis = run.has(runfiles.ANALYSIS_JSON)
    out = [
        (f"# emolab report: {run.name}\n\nThe run's report as cells you can rerun and change. Each cell reads the "
         "run directory this notebook sits in through emolab's run reader; move the folder anywhere and rerun.",
         SETUP),
        ("## Task", TASK),
    ]
    if run.has(runfiles.DATA_STATS):
        out.append(("## Dataset\nExamples per split and class.", DATASET))
    out.append(("## Hyperparameters\nThe model's own settings and the training settings that applied to it.",
                HYPERPARAMETERS))
    if len(run.history) > 1:
        out.append(("## Learning curves\nTraining and validation loss and scores per epoch: validation loss rising "
                    "while training loss falls means overfitting.", CURVES))
    out.append(("## Metrics\nHeadline metrics with 95% percentile-bootstrap intervals over the examples of each "
                "split: how far a number would move on another sample of the same size.", METRICS))
    scored = run.metrics.get("test") or next((run.metrics[s] for s in ("validation", "train") if s in run.metrics), {})
    if "per_class" in scored:
        out.append(("### Per-class results", PER_CLASS))
    if "confusion_matrix" in scored:
        out.append(("## Confusion matrix\nCounts of true (rows) against predicted (columns) labels on the test "
                    "split.", CONFUSION))
    if has_analysis:
        out += [("## Misclassified test examples", MISCLASSIFIED),
                ("## Error tags\nError rate with and without each tag; a lift above 1 means the tag goes with "
                 "errors (cleanlab's flags mark only errors, so they carry no lift).", TAGS),
                ("## Annotations", ANNOTATIONS)]
    out += [("## Compared with published scores\nLevel: the published figure lies inside this run's interval.",
             PUBLISHED),
            ("## Training and inference time\nWall-clock seconds per stage; inference latency and throughput.",
             TIMING),
            ("## Reproducibility", REPRODUCE)]
    if run.card.image:
        out.append(("## Try it on a photo (optional)\nFaces are found with MTCNN (weights from the facenet-"
                    "pytorch wheel), cropped the way FER2013 frames faces and classified.", TRY_FACE))
    else:
        out.append(("## Try it on your own texts (optional)", TRY_TEXT))
    return out


def build_notebook(run_path: str | Path):
    """The notebook for a run, not yet executed (``nbformat`` v4)."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    run = open_run(run_path)
    nb = new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                                "language_info": {"name": "python"}})
    for markdown, code in _cells(run):
        nb.cells += [new_markdown_cell(markdown), new_code_cell(code)]
    nbformat.validate(nb)
    return nb


def _strip_widgets(nb) -> None:
    """No widget state anywhere (GitHub refuses notebooks whose ``metadata.widgets`` lacks ``state``)."""
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        cell.metadata.pop("widgets", None)
        for out in cell.get("outputs", []):
            out.get("data", {}).pop("application/vnd.jupyter.widget-view+json", None)


def execute_notebook(nb, folder: Path, *, timeout: int = 600):
    """Run every cell on a local kernel of this Python (cwd: the run directory)."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    import tempfile

    from jupyter_client.manager import KernelManager

    env_path = os.environ.get("PATH", "")
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env_path}"  # the kernel runs this Python
    try:
        with tempfile.TemporaryDirectory() as sockets:  # local sockets, not TCP ports
            km = KernelManager(kernel_name="python3", transport="ipc", ip=str(Path(sockets) / "kernel"))
            NotebookClient(nb, km=km, timeout=timeout, resources={"metadata": {"path": str(folder)}},
                           extra_arguments=["--IPKernelApp.log_level=ERROR"]).execute()
    except CellExecutionError as exc:
        cell = next((line for line in str(exc).splitlines()[2:] if line.strip() and not line.startswith("-")), "")
        raise EmolabError(f"the notebook of {folder} failed in the cell starting {cell.strip()!r}: "
                          f"{exc.ename}: {exc.evalue}",
                          hint="open it with `jupyter notebook` to see the failing cell") from None
    finally:
        os.environ["PATH"] = env_path
    return nb


def write_notebook(run_path: str | Path, *, execute: bool = True, say=print) -> Path:
    """Write ``RUN/report.ipynb`` (executed, with outputs, unless ``execute`` is False)."""
    import nbformat

    folder = Path(run_path)
    nb = build_notebook(folder)
    if execute:
        execute_notebook(nb, folder)
    _strip_widgets(nb)
    nbformat.validate(nb)
    out = folder / "report.ipynb"
    atomic_write(out, nbformat.writes(nb))
    say(f"wrote {out}")
    return out
