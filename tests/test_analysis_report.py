"""Error analysis (pure functions on predictions) and the HTML/Markdown report of a small run."""

import re
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import yaml

from emolab.analysis.errors import confusion_pairs, misclassified, near_ties
from emolab.analysis.summary import analyze_predictions
from emolab.analysis.tags import TAGS, tag_examples
from emolab.analyze import analyze_run
from emolab.config import config_from_dict
from emolab.errors import EmolabError
from emolab.metrics import confusion_matrix
from emolab.pipeline import run
from emolab.records import LabelSet, Predictions
from tests.conftest import make_texts

NAMES = ("anger", "fear", "joy")


def _preds(seed=0, n=120):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    probs = rng.dirichlet(np.ones(3), size=n)
    texts = [f"text {i}" for i in range(n)]
    return Predictions(np.array([str(i) for i in range(n)]), texts, y, probs, LabelSet(NAMES))


def test_misclassified_are_ranked_confidently_wrong_first():
    p = _preds()
    rows = misclassified(p)
    assert len(rows) == int((p.y_pred != p.y_true).sum())
    conf = [r["confidence"] for r in rows]
    assert conf == sorted(conf, reverse=True)
    assert all(r["true"] != r["pred"] for r in rows)
    ties = near_ties(p, threshold=0.05)
    assert all(r["margin"] < 0.05 for r in ties)


def test_confusion_pairs_agree_with_the_confusion_matrix():
    p = _preds(1)
    cm = confusion_matrix(p.y_true, p.y_pred, 3)
    for pair in confusion_pairs(p):
        assert pair["count"] == cm[NAMES.index(pair["true"]), NAMES.index(pair["pred"])]
    counts = [pair["count"] for pair in confusion_pairs(p)]
    assert counts == sorted(counts, reverse=True)


@pytest.mark.parametrize("text,tag", [
    ("i don t feel particularly agitated", "negation"),
    ("i didn't like it", "negation"),
    ("maybe i feel a bit lost", "hedging"),
    ("i am so very happy", "intensifier"),
    ("i feel strange", "short"),
    ("i feel afraid but also joyful and angry", "several_emotions"),
])
def test_text_tags(text, tag):
    p = Predictions(np.array(["0"]), [text], np.array([0]), np.array([[0.5, 0.3, 0.2]]), LabelSet(NAMES))
    tags = tag_examples(p)
    assert tags[tag][0], (text, tag)
    assert tag in TAGS


def test_tags_do_not_fire_on_plain_text():
    p = Predictions(np.array(["0"]), ["i feel calm and content with my evening at home today"], np.array([0]),
                    np.array([[0.9, 0.05, 0.05]]), LabelSet(NAMES))
    tags = tag_examples(p)
    assert not any(tags[t][0] for t in ("negation", "hedging", "short", "near_tie", "likely_label_error"))


def test_analysis_finds_planted_label_errors():
    rng = np.random.default_rng(0)
    n = 300
    y = rng.integers(0, 3, n)
    probs = np.full((n, 3), 0.02)
    probs[np.arange(n), y] = 0.96
    flipped = np.arange(0, n, 30)  # the model is confident and right; the given labels are wrong here
    given = y.copy()
    given[flipped] = (y[flipped] + 1) % 3
    p = Predictions(np.array([str(i) for i in range(n)]), [f"t {i}" for i in range(n)], given, probs, LabelSet(NAMES))
    result = analyze_predictions(p)
    found = {r["index"] for r in result["label_issues"]}
    assert set(flipped.tolist()) <= found | set(range(n)) and len(found & set(flipped.tolist())) >= 8
    assert result["errors"] == len(flipped)


def test_multi_label_runs_are_refused_clearly():
    p = Predictions(np.array(["0", "1"]), ["a", "b"], np.array([[1, 0, 1], [0, 1, 0]]), np.full((2, 3), 0.5),
                    LabelSet(NAMES, multi_label=True))
    with pytest.raises(EmolabError, match="single-label"):
        analyze_predictions(p)


@pytest.fixture(scope="module")
def noisy_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("noisy")
    texts, ys = make_texts(300, seed=4)
    rng = np.random.default_rng(0)
    ys = [y if rng.random() > 0.4 else ["anger", "fear", "joy"][rng.integers(3)] for y in ys]
    path = tmp_path / "noisy.csv"
    pd.DataFrame({"text": texts, "label": ys}).to_csv(path, index=False)
    cfg = config_from_dict({"data": {"name": "csv", "path": str(path), "test_ratio": 0.3}, "model": {"name": "tfidf", "C": 1.0},
                            "eval": {"timing": True, "timing_examples": 20},
                            "output": {"dir": str(tmp_path / "runs"), "name": "noisy"}})
    return run(cfg, say=lambda _m: None)


SECTIONS = ["Task", "Dataset", "Models", "Hardware", "References", "How training was checked", "Metrics",
            "Test results", "Compared with published scores", "Training and inference time", "Hyperparameters",
            "Hypotheses about the errors", "Misclassified test samples", "Error tags", "Annotations",
            "Ideas to reduce the errors", "Visualisations", "Reproducibility"]


def _sections(md: str) -> dict[str, str]:
    parts = re.split(r"^#{2,3} (.+)$", md, flags=re.M)
    return {parts[i].strip(): parts[i + 1].strip() for i in range(1, len(parts), 2)}


def test_run_writes_a_report_with_every_section(noisy_run):
    md = (noisy_run / "report.md").read_text()
    sections = _sections(md)
    for name in SECTIONS:
        assert name in sections, name
        assert sections[name], f"section {name!r} is empty"
    rows = [line for line in sections["Misclassified test samples"].splitlines() if re.match(r"\| \d+ \|", line)]
    assert len(rows) >= 10
    html = (noisy_run / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 4
    assert not re.search(r'src="(?!data:)', html)  # nothing to fetch: it opens offline
    for name in SECTIONS:
        assert f">{name}</h" in html, name


def test_report_shows_intervals_reads_as_plain_markdown_and_lists_only_applicable_keys(noisy_run):
    import json

    metrics = json.loads((noisy_run / "metrics.json").read_text())
    lo, hi = metrics["test"]["intervals"]["accuracy"]
    assert lo < metrics["test"]["accuracy"] < hi and metrics["test"]["intervals"]["method"]["resamples"] == 1000
    md = (noisy_run / "report.md").read_text()
    assert f"accuracy {metrics['test']['accuracy']:.4f} [{lo:.3f}, {hi:.3f}]" in md
    assert f"{metrics['test']['accuracy']:.4f} [{lo:.3f}, {hi:.3f}]" in (noisy_run / "metrics.md").read_text()
    assert not re.search(r"<(mark|span|div|b|br|img|table)\b", md), "raw HTML in report.md"
    assert "**" in _sections(md)["Why the texts were misread"]  # top words in bold instead of highlighting
    assert "<mark" in (noisy_run / "report.html").read_text()  # the HTML twin keeps its highlighting
    hyper = _sections(md)["Hyperparameters"]
    assert "hflip" not in hyper and "channels_last" not in hyper and "log_every" not in hyper
    tags = _sections(md)["Error tags"]
    assert "likely_label_error has no lift" in tags or "likely_label_error" not in tags


def test_model_card_parses_with_huggingface_hub_and_carries_the_run_metrics(noisy_run):
    import json

    from huggingface_hub import ModelCard

    metrics = json.loads((noisy_run / "metrics.json").read_text())
    card = ModelCard.load(noisy_run / "README.md")
    results = {(r.metric_type, r.metric_config): r for r in card.data.eval_results}
    assert results[("accuracy", None)].metric_value == pytest.approx(metrics["test"]["accuracy"], abs=1e-6)
    assert results[("f1", "macro")].metric_value == pytest.approx(metrics["test"]["macro_f1"], abs=1e-6)
    assert results[("accuracy", None)].dataset_split == "test"
    assert results[("accuracy", None)].metric_args["ci95"] == pytest.approx(metrics["test"]["intervals"]["accuracy"])
    assert card.data.language == ["en"] and "text-classification" in card.data.tags
    for section in ("## Intended use", "## Training data", "## Training procedure", "## Results",
                    "## Limitations", "## How to use"):
        assert section in card.text, section


def test_annotations_round_trip_into_the_report(noisy_run, tmp_path):
    errors = pd.read_csv(noisy_run / "analysis" / "errors.csv", dtype=str, keep_default_na=False)
    assert list(errors.columns)[-2:] == ["annotation", "fix"] and (errors["annotation"] == "").all()
    errors.loc[0, "annotation"] = "label noise: the text is clearly joyful"
    errors.loc[0, "fix"] = "relabel as joy"
    edited = tmp_path / "edited.csv"
    errors.to_csv(edited, index=False)
    result = analyze_run(noisy_run, annotations=edited, say=lambda _m: None)
    assert result["annotations"][0]["fix"] == "relabel as joy"
    from emolab.report import write_report

    write_report(noisy_run, say=lambda _m: None)
    assert "label noise: the text is clearly joyful" in (noisy_run / "report.md").read_text()
    # the run's own errors.csv keeps the annotation when the analysis is run again
    analyze_run(noisy_run, say=lambda _m: None)
    again = pd.read_csv(noisy_run / "analysis" / "errors.csv", dtype=str, keep_default_na=False)
    assert "relabel as joy" in again["fix"].tolist()


def test_report_leaderboard_for_several_runs(noisy_run):
    from emolab.report import write_report

    _html, md = write_report(noisy_run, others=[noisy_run], say=lambda _m: None)
    assert "## Leaderboard" in md.read_text()


def test_report_rejects_a_folder_that_is_not_a_run(tmp_path):
    from emolab.report import write_report

    with pytest.raises(EmolabError, match="not a run directory"):
        write_report(tmp_path)
    assert yaml  # noqa: the fixture's config is YAML


def test_compare_writes_a_leaderboard(noisy_run, tmp_path):
    from emolab.compare import compare, find_runs

    rows = compare(find_runs([str(noisy_run)], str(noisy_run.parent / "*")), tmp_path / "lb", say=lambda _m: None)
    assert rows[0]["run"] == "noisy" and rows[0]["parameters"] > 0 and 0 <= rows[0]["macro_f1"] <= 1
    assert rows[0]["macro_f1_lo"] < rows[0]["macro_f1"] < rows[0]["macro_f1_hi"]
    table = (tmp_path / "lb" / "leaderboard.md").read_text()
    assert "| noisy | csv (noisy.csv) | test | tfidf |" in table and "test macro-F1 [95% CI]" in table
    assert f"{rows[0]['macro_f1']:.4f} [{rows[0]['macro_f1_lo']:.3f}, {rows[0]['macro_f1_hi']:.3f}]" in table
    assert (tmp_path / "lb" / "leaderboard.csv").read_text().startswith("run,dataset,split,model,pooling")
    assert (tmp_path / "lb" / "leaderboard.png").is_file()
    with pytest.raises(EmolabError, match="no runs to compare"):
        find_runs([], str(tmp_path / "nothing-*"))


def test_compare_prints_a_readable_table_and_writes_every_column_to_markdown(noisy_run, tmp_path):
    import os
    import subprocess
    import sys

    from emolab.compare import COLUMNS

    env = {**os.environ, "COLUMNS": "100", "TERM": "dumb", "NO_COLOR": "1"}
    r = subprocess.run([sys.executable, "-m", "emolab.cli", "compare", str(noisy_run), "--out", str(tmp_path / "lb")],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert not [line for line in lines if line.lstrip().startswith("|")], r.stdout  # no Markdown on the terminal
    table = [line for line in lines if line[:1] in "┏┃┡│└"]
    assert table and max(map(len, table)) <= 100, r.stdout  # a table that fits the terminal
    assert any("noisy" in line for line in table) and any("vs best" in line for line in table), r.stdout
    md = (tmp_path / "lb" / "leaderboard.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| run |"))
    assert header.count(" | ") + 1 == len(COLUMNS)  # every column in the file


def _tfidf_run(csv, out, name, **model):
    cfg = config_from_dict({"data": {"name": "csv", "path": str(csv), "test_ratio": 0.3},
                            "model": {"name": "tfidf", **model}, "eval": {"timing": False, "report": False},
                            "output": {"dir": str(out), "name": name}})
    return run(cfg, say=lambda _m: None)


def test_compare_groups_by_dataset_and_tests_runs_against_the_best(noisy_run, tmp_path):
    from emolab.compare import compare
    from emolab.significance import paired_comparison

    noisy_csv = noisy_run.parent.parent / "noisy.csv"
    weak = _tfidf_run(noisy_csv, tmp_path, "weak", C=0.001, max_features=5)  # same test examples, a worse model
    texts, ys = make_texts(200, seed=9)
    other_csv = tmp_path / "other.csv"
    pd.DataFrame({"text": texts, "label": ys}).to_csv(other_csv, index=False)
    other = _tfidf_run(other_csv, tmp_path, "other")
    said = []
    rows = compare([weak, noisy_run, other], tmp_path / "lb", say=said.append)
    by_run = {r["run"]: r for r in rows}
    assert by_run["noisy"]["verdict"] == "best" and by_run["other"]["verdict"] == "best"  # two tables
    assert by_run["noisy"]["dataset"] != by_run["other"]["dataset"]
    w = by_run["weak"]
    assert w["dataset"] == by_run["noisy"]["dataset"] and w["verdict"] == "worse"
    # the same paired test computed directly from the saved predictions
    from emolab.rundir import open_run

    a, b = open_run(weak).predictions("test"), open_run(noisy_run).predictions("test")
    direct = paired_comparison(b.y_true, a.probs.argmax(1), b.probs.argmax(1), b.labels.names)
    assert w["delta_macro_f1"] == pytest.approx(direct["macro_f1"].difference)
    assert w["p_accuracy"] == pytest.approx(direct["accuracy"].p_value)
    md = (tmp_path / "lb" / "leaderboard.md").read_text()
    assert md.count("## csv") == 2 and "weak vs noisy: macro-F1 -" in md and "significantly worse" in md


def test_compare_refuses_a_paired_test_on_different_test_examples(noisy_run, tmp_path):
    from emolab.compare import compare

    small = config_from_dict({"data": {"name": "csv", "path": str(noisy_run.parent.parent / "noisy.csv"),
                                       "test_ratio": 0.3, "max_eval_examples": 40},
                              "model": {"name": "tfidf"}, "eval": {"timing": False, "report": False},
                              "output": {"dir": str(tmp_path), "name": "small"}})
    said = []
    rows = compare([noisy_run, run(small, say=lambda _m: None)], tmp_path / "lb", say=said.append)
    assert {r["verdict"] for r in rows} == {"best", "not tested"}
    assert any("different test examples" in m and "a paired test needs the same examples" in m for m in said)


def test_seeds_run_into_seed_folders_with_a_summary_that_compare_finds(tmp_path):
    from emolab.compare import find_runs
    from emolab.seed_spread import run_seeds

    texts, ys = make_texts(150, seed=2)
    csv = tmp_path / "s.csv"
    pd.DataFrame({"text": texts, "label": ys}).to_csv(csv, index=False)
    cfg = config_from_dict({"data": {"name": "csv", "path": str(csv)}, "model": {"name": "tfidf"},
                            "eval": {"timing": False, "report": False}, "seeds": [3, 5],
                            "output": {"dir": str(tmp_path / "runs"), "name": "spread"}})
    done = run_seeds(cfg, say=lambda _m: None)
    folder = tmp_path / "runs" / "spread"
    assert [p.name for p in done] == ["seed-3", "seed-5"]
    summary = __import__("json").loads((folder / "summary.json").read_text())
    accs = [p["accuracy"] for p in summary["per_seed"]]
    assert summary["seeds"] == [3, 5]
    assert summary["mean_sd"]["accuracy"]["mean"] == pytest.approx(np.mean(accs))
    assert summary["mean_sd"]["accuracy"]["sd"] == pytest.approx(np.std(accs, ddof=1))
    md = (folder / "summary.md").read_text()
    # the CSV's test split is drawn with the seed: the seeds cannot be paired, and the summary says so
    assert "± " in md and "Not tested against each other" in md and "different test examples" in md
    assert (folder / "seed_spread.png").is_file()
    assert sorted(p.name for p in find_runs([], str(tmp_path / "runs" / "*"))) == ["seed-3", "seed-5"]
    assert yaml.safe_load((folder / "seed-5" / "config.yaml").read_text())["seed"] == 5
    said = []  # run again (after an interruption): finished seeds are kept, not retrained into seed-3-2
    assert run_seeds(cfg, say=said.append) == done
    assert any("finished earlier, kept" in m for m in said) and not (folder / "seed-3-2").exists()


def test_bad_seeds_are_config_errors():
    from emolab.errors import ConfigError

    with pytest.raises(ConfigError, match="seeds: expected a list of integers"):
        config_from_dict({"seeds": [1, "two"]})
    with pytest.raises(ConfigError, match="repeats a seed"):
        config_from_dict({"seeds": [1, 1]})


def test_occlusion_finds_the_word_that_drives_the_prediction():
    from emolab.analysis.attributions import explain_errors, highlight_html, occlusion

    def predict_proba(texts):  # a "model" that says joy exactly when the text holds "glad"
        p = np.array([[0.1, 0.1, 0.8] if "glad" in t.split() else [0.45, 0.45, 0.1] for t in texts])
        return p

    words = occlusion(predict_proba, "i am glad today", target=2)
    assert [w for w, _ in words] == ["i", "am", "glad", "today"]
    assert max(words, key=lambda x: x[1])[0] == "glad" and words[2][1] == pytest.approx(np.log(8))
    rows = [{"id": "1", "input": "i am glad today", "true": "anger", "pred": "joy"}]
    explained = explain_errors(predict_proba, rows, list(NAMES))
    assert explained[0]["pred"] == "joy"
    html = highlight_html(explained[0]["words"])
    assert html.count("<mark") == 4 and "rgba(220,40,40,0.80)" in html


@pytest.mark.parametrize("rare_share, wanted", [(0.1, "`train.class_weights: true`"),
                                                (0.005, "`train.class_weights: sqrt`: balanced weights would lie 199x")])
def test_a_rare_weak_class_gets_weights_tempered_by_their_spread(rare_share, wanted):
    from emolab.report.data import _hypotheses_and_ideas

    common = 1 - rare_share
    metrics = {"test": {"per_class": {"common": {"f1": 0.9}, "rare": {"f1": 0.1}}}}
    stats = {"splits": {"train": {"class_shares": {"common": common, "rare": rare_share}}}}
    card = SimpleNamespace(family="transformer", training="loop", image=False)
    _, ideas = _hypotheses_and_ideas(None, metrics, stats, [], card, None)
    assert any(wanted in idea for idea in ideas), ideas


@pytest.mark.parametrize("model", ["tfidf", "transformer"])
def test_advice_comes_from_the_runs_own_config(model):
    from emolab.config import config_from_dict
    from emolab.models import model_class
    from emolab.report.data import _hypotheses_and_ideas

    metrics = {"test": {"per_class": {"common": {"f1": 0.9}, "rare": {"f1": 0.1}}}}
    stats = {"splits": {"train": {"class_shares": {"common": 0.9, "rare": 0.1}}}}
    cfg = config_from_dict({"model": {"name": model}, "train": {"class_weights": True}})
    card = model_class(model).describe(cfg.model, LabelSet(("common", "rare")))
    _, ideas = _hypotheses_and_ideas(None, metrics, stats, [], card, -0.05, cfg=cfg.to_dict())
    text = " ".join(ideas)
    assert "weight the loss by class" not in text and "already weighted" in text, ideas  # it already does
    assert ("model.backbone" in text) == (model == "transformer"), ideas  # a TF-IDF run has no backbone
    assert ("oversample_rare" in text) == (model == "transformer"), ideas


@pytest.mark.parametrize("where", ["elsewhere", "project root", "runs folder"])
def test_the_commands_a_report_prints_run_as_printed(noisy_run, capsys, monkeypatch, where, tmp_path):
    """From where the report was made: the run's own folder, the folder holding runs/, or another place."""
    import os
    import shlex
    import shutil

    from emolab.cli import main

    fresh = tmp_path / "project" / "runs" / noisy_run.name  # a copy: other tests annotate the shared run
    shutil.copytree(noisy_run, fresh)
    shutil.rmtree(fresh / "analysis", ignore_errors=True)
    noisy_run = fresh

    here = {"project root": noisy_run.parent.parent, "runs folder": noisy_run.parent}.get(where)
    if here is not None:
        monkeypatch.chdir(here)
    run_path = os.path.relpath(noisy_run, here) if here else noisy_run
    analyze_run(run_path, say=lambda _m: None)
    from emolab.report import write_report

    write_report(run_path, say=lambda _m: None)
    commands = re.findall(r"`(emolab [^`]+)`", (noisy_run / "report.md").read_text())
    assert any("--annotations" in c for c in commands), commands  # and the rerun command
    for command in commands:
        if "RUN" in command or "CONFIG" in command:  # placeholders, not commands
            continue
        with pytest.raises(SystemExit) as exit_:
            main(shlex.split(command)[1:])
        assert exit_.value.code == 0, (command, capsys.readouterr())


@pytest.mark.parametrize("losses, verdict", [
    ([(0.9, 0.8)], "One epoch only: too few to tell whether the model overfits."),
    ([(0.9, 0.8), (0.5, 0.7)], "No overfitting signal"),
    ([(0.9, 0.7), (0.5, 0.8)], "validation loss rose while training loss fell at epoch(s) 2"),
])
def test_the_overfitting_verdict_comes_from_the_runs_epochs(noisy_run, losses, verdict):
    from emolab.report.data import gather, overfitting
    from emolab.report.render import render_markdown

    data = gather(noisy_run)
    history = [{"epoch": i + 1, "train_loss": t, "val_loss": v, "lr": 1e-3} for i, (t, v) in enumerate(losses)]
    data.training = {**data.training, "history": history, "overfitting": overfitting(history), "best_epoch": 1}
    section = _sections(render_markdown(data, noisy_run))["How training was checked"]
    assert verdict in section, section
    assert ("No overfitting signal" in section) == (verdict == "No overfitting signal"), section


def test_class_weights_change_a_tfidf_model(tmp_path):
    texts, ys = make_texts(240, seed=2)
    keep = [i for i, y in enumerate(ys) if y != "fear" or i % 12 == 2]  # fear becomes rare (1 in 4 kept)
    path = tmp_path / "rare.csv"
    pd.DataFrame({"text": [texts[i] for i in keep], "label": [ys[i] for i in keep]}).to_csv(path, index=False)
    probs = []
    for weighted in (False, True):
        cfg = config_from_dict({"data": {"name": "csv", "path": str(path), "test_ratio": 0.3},
                                "model": {"name": "tfidf", "C": 0.05}, "train": {"class_weights": weighted},
                                "eval": {"timing": False, "report": False, "bootstrap": 0},
                                "output": {"dir": str(tmp_path / "runs"), "name": f"w{weighted}"}})
        probs.append(np.load(run(cfg, say=lambda _m: None) / "predictions_test.npz")["probs"])
    fear = 1  # anger, fear, joy
    assert probs[1][:, fear].mean() > probs[0][:, fear].mean() + 0.01  # the rare class weighs more


def test_confidence_histogram_of_a_run_without_errors(tmp_path):
    import warnings

    from emolab.plots import confidence_histogram

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # numpy's density of an empty group divides by zero
        path = confidence_histogram([0.9, 0.8, 0.95], [], tmp_path / "confidence.png")
    assert path.is_file() and path.stat().st_size > 1000
