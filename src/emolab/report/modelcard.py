"""A Hugging Face model card (``README.md``) for a run or an export: YAML front matter written by
``huggingface_hub.ModelCardData`` (license, language, tags, datasets, ``model-index`` with each test metric)
and a body rendered from the same record as the report (intended use, data, hyperparameters, results with
intervals, per-class table, limitations from the error analysis, how to load it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from emolab.data import dataset_spec
from emolab.report.data import ReportData, gather
from emolab.rundir import atomic_write

METRICS = (("accuracy", "accuracy", "Accuracy", None), ("macro_f1", "f1", "Macro F1", "macro"),
           ("weighted_f1", "f1", "Weighted F1", "weighted"), ("micro_f1", "f1", "Micro F1", "micro"))


def card_data(data: ReportData, name: str, *, library: str = "emolab"):
    """The front matter: ``model-index`` lists every test metric (and its interval as metric args)."""
    from huggingface_hub import EvalResult, ModelCardData

    image = data.modality == "image"
    task = "image-classification" if image else "text-classification"
    dataset = data.dataset["name"]
    hub_id = dataset_spec(dataset).hub_id or dataset
    test = data.results.get("test", {})
    results = [EvalResult(task_type=task, dataset_type=hub_id, dataset_name=dataset, dataset_split="test",
                          dataset_config=data.dataset["config"].get("taxonomy"), metric_type=kind,
                          metric_name=title, metric_config=config, metric_value=round(float(test[key]), 6),
                          metric_args={"ci95": [round(v, 6) for v in test.get("intervals", {}).get(key, [])]} or None)
               for key, kind, title, config in METRICS if key in test]
    return ModelCardData(
        model_name=name, license="other", license_name="see-training-data",
        language=None if image else ["en"], library_name=library, pipeline_tag=task,
        tags=["emolab", "emotion-recognition" if image else "emotion-classification", task,
              data.model["name"]], datasets=[hub_id] if dataset_spec(dataset).hub_id else None,
        eval_results=results or None)


def _usage(data: ReportData, run: Path, export: dict | None) -> str:
    example = "face.jpg" if data.modality == "image" else '"i feel wonderful today"'
    if export and export["format"].startswith("hf"):
        return ("```python\nfrom transformers import pipeline\n\n"
                "classify = pipeline(\"text-classification\", model=\"PATH/TO/THIS/FOLDER\", trust_remote_code=True)\n"
                "classify(\"i feel wonderful today\", top_k=None)\n```\n\n"
                "`trust_remote_code` runs `modeling_emolab.py` from this folder (emolab's pooling head); read it first.")
    where = "THIS_FOLDER" if export else run.name
    lines = [f"With emolab installed:\n\n```bash\nemolab predict {where} {example}\nemolab serve {where}   # HTTP API and demo page"
             "\n```"]
    if export:
        lines.append("`model.onnx` runs in ONNX Runtime directly; `config.json` and the tokenizer files beside it "
                     "name the labels and the inputs.")
    else:
        lines.append(f"In Python: `emolab.models.load_model(\"{where}/model\").predict_proba([...])` returns "
                     "one row of class probabilities per input.")
    return "\n\n".join(lines)


def model_card(run_path: str | Path, *, export: dict[str, Any] | None = None, data: ReportData | None = None) -> str:
    """The card's text for a run, or for an export of it (``{"format", "title", "note"}``)."""
    from huggingface_hub import ModelCard

    from emolab.report.templating import environment

    run = Path(run_path)
    data = data or gather(run)
    name = f"{data.run}-{export['format']}" if export else data.run
    labels = list((data.dataset.get("stats") or {}).get("labels") or [])
    test = data.results.get("test", {})
    headline = [k for k, *_ in METRICS if k in test]
    body = environment(run).get_template("modelcard.md.j2").render(
        r=data, name=name, export=export, labels=labels, headline=headline,
        domain=dataset_spec(data.dataset["name"]).domain or f"the texts of {data.dataset['name']}",
        limitations=data.hypotheses, usage=_usage(data, run, export))
    meta = card_data(data, name, library="transformers" if export and export["format"].startswith("hf") else "emolab")
    return str(ModelCard(f"---\n{meta.to_yaml()}\n---\n\n{body}"))


def write_model_card(run_path: str | Path, folder: str | Path | None = None, *,
                     export: dict[str, Any] | None = None, data: ReportData | None = None) -> Path:
    """Write ``README.md`` into ``folder`` (default: the run directory)."""
    out = Path(folder or run_path) / "README.md"
    atomic_write(out, model_card(run_path, export=export, data=data))
    return out
