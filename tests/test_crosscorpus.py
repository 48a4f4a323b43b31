"""``emolab evaluate RUN --data OTHER``: label maps, the mapped metrics against scikit-learn computed by hand,
what is left out and counted, a transformer and an image run, and bad input exiting 2 with the fix."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, f1_score

from emolab.cli import main
from emolab.config import config_from_dict
from emolab.crosscorpus import (LabelMapping, check_label_map, default_label_map, evaluate_on, map_truth,
                                read_label_map)
from emolab.errors import EmolabError
from emolab.pipeline import run
from emolab.rundir import open_run
from tests.conftest import TINY_ENCODER, make_texts
from tests.test_faces import FERPLUS_COLUMNS, USAGES, fer_config, write_fer

SENTIMENT = {"joy": "positive", "anger": "negative", "fear": "negative"}


def quiet(_msg: str) -> None:
    pass


def train(tmp, model: dict, name: str, **train_keys):
    texts, ys = make_texts(150)
    pd.DataFrame({"text": texts, "label": ys}).to_csv(tmp / "toy.csv", index=False)
    cfg = config_from_dict({"data": {"name": "csv", "path": str(tmp / "toy.csv"), "test_ratio": 0.3},
                            "model": model, "train": {"epochs": 1, "batch_size": 16, "lr": 2e-3, **train_keys},
                            "eval": {"timing": False, "report": False, "bootstrap": 200},
                            "output": {"dir": str(tmp / "runs"), "name": name}, "seed": 3})
    return run(cfg, say=quiet)


def other_corpus(tmp, n: int = 90, seed: int = 7) -> dict:
    """A sentiment CSV on other texts (other fillers): positive, negative and neutral (no counterpart)."""
    texts, ys = make_texts(n, seed=seed)
    labels = [SENTIMENT[y] for y in ys]
    for i in range(0, n, 9):
        texts[i], labels[i] = f"the meeting is at {i} today", "neutral"
    path = tmp / "sentiment.csv"
    pd.DataFrame({"text": texts, "label": labels}).to_csv(path, index=False)
    data = {"data": {"name": "csv", "path": str(tmp), "train_file": path.name, "test_file": path.name}}
    (tmp / "sentiment.yaml").write_text(json.dumps(data))  # JSON is YAML
    return {"file": tmp / "sentiment.yaml", "texts": texts, "labels": np.array(labels)}


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    return train(tmp_path_factory.mktemp("cross"), {"name": "tfidf", "classifier": "logreg", "C": 10.0}, "toy")


@pytest.fixture(scope="module")
def other(tmp_path_factory):
    return other_corpus(tmp_path_factory.mktemp("other"))


# --- pure parts --------------------------------------------------------------------------------------------


def test_default_map_matches_names_and_word_forms():
    fer = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
    ferplus = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")
    assert default_label_map(fer, ferplus) == {"angry": "anger", "disgust": "disgust", "fear": "fear",
                                               "happy": "happiness", "sad": "sadness", "surprise": "surprise",
                                               "neutral": "neutral"}
    emotion = ("sadness", "joy", "love", "anger", "fear", "surprise")
    ekman = ("anger", "disgust", "fear", "joy", "sadness", "surprise", "neutral")
    assert sorted(default_label_map(emotion, ekman)) == ["anger", "fear", "joy", "sadness", "surprise"]


def test_inline_and_file_maps(tmp_path):
    assert read_label_map("joy:positive, love:positive,surprise:") == {"joy": "positive", "love": "positive",
                                                                      "surprise": None}
    (tmp_path / "m.yaml").write_text("joy: positive\nsurprise: null\n")
    assert read_label_map(str(tmp_path / "m.yaml")) == {"joy": "positive", "surprise": None}
    (tmp_path / "m.json").write_text('{"joy": "positive"}')
    assert read_label_map(str(tmp_path / "m.json")) == {"joy": "positive"}
    with pytest.raises(EmolabError, match="'joy' is mapped twice"):
        read_label_map("joy:positive,joy:negative")
    with pytest.raises(EmolabError, match="'joy' is not run_label:dataset_label"):
        read_label_map("joy")


def test_probabilities_are_summed_per_target_and_renormalised():
    m = LabelMapping(("joy", "love", "anger", "surprise"), ("negative", "positive"),
                     {"joy": "positive", "love": "positive", "anger": "negative"})
    probs, lost = m.probs(np.array([[0.2, 0.3, 0.1, 0.4], [0.0, 0.0, 0.0, 1.0]]))
    assert m.scored == ("negative", "positive") and m.dropped == ("surprise",)
    assert np.allclose(probs, [[0.1 / 0.6, 0.5 / 0.6], [0.5, 0.5]]) and np.allclose(lost, [0.4, 1.0])


def test_multi_label_truth_keeps_single_labels_of_mapped_classes():
    names = ("anger", "joy", "neutral")
    y = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 1], [0, 0, 0], [0, 1, 0]])
    keep, ids, excluded = map_truth(y, names, {"anger": 0, "joy": 1})
    assert keep.tolist() == [True, True, False, False, False, True] and ids.tolist() == [0, 1, 1]
    assert excluded == {"no_counterpart": {"neutral": 1}, "several_labels": 1, "no_label": 1}


# --- a run on another corpus ----------------------------------------------------------------------------------


def test_mapped_metrics_match_scikit_learn_by_hand(text_run, other, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit) as exit_:
        main(["evaluate", str(text_run), "--data", str(other["file"]), "--label-map", "joy:positive,anger:negative"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "in-domain test, mapped (2)" in out and "left out (10): neutral 10" in out and "fear" in out
    report = json.loads((text_run / "evaluations" / "csv-sentiment-test.json").read_text())
    md = (text_run / "evaluations" / "csv-sentiment-test.md").read_text()
    assert "| fear | – (dropped) |" in md and "left out: 10 labelled 'neutral'" in md

    keep = other["labels"] != "neutral"  # by hand: fear is dropped, the rest renormalised
    probs = open_run(text_run).model().predict_proba([t for t, k in zip(other["texts"], keep) if k])
    names = open_run(text_run).card.labels.names  # anger, fear, joy
    two = probs[:, [names.index("anger"), names.index("joy")]]
    pred = np.array(["negative", "positive"])[two.argmax(1)]
    truth = other["labels"][keep]
    m = report["metrics"]
    assert report["n"] == m["n"] == keep.sum() and report["n_split"] == len(keep)
    assert report["excluded"]["no_counterpart"] == {"neutral": 10}
    assert m["accuracy"] == pytest.approx(accuracy_score(truth, pred))
    assert m["macro_f1"] == pytest.approx(f1_score(truth, pred, average="macro"))
    assert m["per_class"]["negative"]["support"] == (truth == "negative").sum()
    assert report["dropped_mass"] == pytest.approx(probs[:, names.index("fear")].mean())
    assert report["moved"] == (probs.argmax(1) == names.index("fear")).sum()
    lo, hi = m["intervals"]["accuracy"]
    assert lo <= m["accuracy"] <= hi and report["label_map"] == {"anger": "negative", "fear": None, "joy": "positive"}

    own = open_run(text_run).predictions("test")  # the in-domain column through the same map
    kept = own.y_true != names.index("fear")
    own_pred = np.where(own.probs[kept][:, names.index("joy")] > own.probs[kept][:, names.index("anger")], 1, 0)
    own_truth = (own.y_true[kept] == names.index("joy")).astype(int)
    assert report["in_domain_mapped"]["accuracy"] == pytest.approx(accuracy_score(own_truth, own_pred))
    assert report["in_domain"]["accuracy"] == json.loads((text_run / "metrics.json").read_text())["test"]["accuracy"]

    with pytest.raises(SystemExit) as exit_:  # written once; again only with --overwrite
        main(["evaluate", str(text_run), "--data", str(other["file"]), "--label-map", "joy:positive,anger:negative"])
    assert exit_.value.code == 2 and "csv-sentiment-test.json exists" in capsys.readouterr().err
    report = evaluate_on(text_run, str(other["file"]), label_map="joy:positive,anger:negative,fear:negative",
                         overwrite=True, say=quiet)
    pred = np.array(["negative", "positive"])[(probs[:, names.index("joy")] > 0.5).astype(int)]
    assert report.metrics["accuracy"] == pytest.approx(accuracy_score(truth, pred)) and report.dropped_mass == 0


def test_default_map_and_data_overrides(text_run, tmp_path):
    texts, ys = make_texts(40, seed=11)
    ys = ["sadness" if i % 4 == 0 else y for i, y in enumerate(ys)]
    path = tmp_path / "emo.csv"
    pd.DataFrame({"sentence": texts, "emotion": ys}).to_csv(path, index=False)
    (tmp_path / "full.yaml").write_text(f"data:\n  name: csv\n  path: {path}\nmodel:\n  name: tfidf\n")
    report = evaluate_on(text_run, str(tmp_path / "full.yaml"), overrides=["text_column=sentence",
                         "data.label_column=emotion", "data.test_ratio=0.5"], name="mine", say=quiet)
    assert report.label_map == {"anger": "anger", "fear": "fear", "joy": "joy"}
    assert report.scored_labels == ["anger", "fear", "joy"] and "sadness" in report.excluded["no_counterpart"]
    assert report.data["test_ratio"] == 0.5 and (text_run / "evaluations" / "mine.md").is_file()


def test_a_transformer_run_on_another_corpus(tmp_path):
    out = train(tmp_path, {"name": "transformer", "backbone_config": dict(TINY_ENCODER), "pooling": "mean",
                           "max_length": 32}, "tiny", max_steps=2)
    other = other_corpus(tmp_path, n=30)
    report = evaluate_on(out, str(other["file"]), label_map=",".join(f"{k}:{v}" for k, v in SENTIMENT.items()),
                         say=quiet)
    probs = open_run(out).model().predict_proba([t for t, y in zip(other["texts"], other["labels"]) if y != "neutral"])
    names = open_run(out).card.labels.names
    pred = np.where(probs[:, names.index("joy")] > 0.5, "positive", "negative")
    truth = other["labels"][other["labels"] != "neutral"]
    assert report.metrics["accuracy"] == pytest.approx(accuracy_score(truth, pred))


def test_an_image_run_on_ferplus_maps_by_name_and_counts_contempt(tmp_path, other):
    write_fer(tmp_path / "fer", n=84)
    rows = ["Usage,Image name," + ",".join(FERPLUS_COLUMNS)]
    for i in range(84):
        v = [0] * 10
        v[(i * 5) % 8] = 8  # majority labels cycle through the 8 FER+ classes (contempt included)
        rows.append(f"{USAGES[i % 10]},fer{i:07d}.png," + ",".join(map(str, v)))
    (tmp_path / "fer" / "fer2013new.csv").write_text("\n".join(rows) + "\n")
    raw = fer_config(tmp_path, tmp_path / "fer", epochs=1)
    raw["eval"].update(report=False, bootstrap=100)
    out = run(config_from_dict(raw), say=quiet)
    report = evaluate_on(out, "ferplus", overrides=[f"data.path={tmp_path / 'fer'}"], say=quiet)
    assert report.label_map["happy"] == "happiness" and report.label_map["angry"] == "anger"
    assert "contempt" not in report.scored_labels and len(report.scored_labels) == 7
    assert report.n + report.excluded["no_counterpart"]["contempt"] == report.n_split
    assert (out / "evaluations" / "ferplus-test.json").is_file() and report.in_domain_mapped["n"] > 0
    with pytest.raises(EmolabError, match="reads images .*; dataset 'csv' holds texts"):
        evaluate_on(out, str(other["file"]), say=quiet)


# --- bad input ------------------------------------------------------------------------------------------------


def test_a_map_with_one_shared_label_is_refused():
    with pytest.raises(EmolabError, match="only 'joy' of d has a counterpart"):
        check_label_map({"joy": "joy"}, ("joy", "anger"), ("joy", "calm"), source="x", dataset="d")


@pytest.mark.parametrize("args,expected", [
    (["--label-map", "jyo:positive,anger:negative"], "'jyo' is not a label of the run (did you mean 'joy'?)"),
    (["--label-map", "joy:postive,anger:negative"], "'postive' is not a label of csv (did you mean 'positive'?)"),
    ([], "no label of csv has a counterpart among the run's labels"),
    (["--set", "data.label_colum=label"], "data.label_colum: unknown key"),
    (["--label-map", "joy"], "'joy' is not run_label:dataset_label"),
    (["--label-map", "joy:positive,anger:negative", "--tta", "flip"], "--tta applies to image runs"),
])
def test_bad_input_exits_2(text_run, other, capsys, args, expected):
    with pytest.raises(SystemExit) as exit_:
        main(["evaluate", str(text_run), "--data", str(other["file"]), "--name", "x", *args])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and expected in " ".join(err.split()) and "Traceback" not in err, err
    assert "fix:" in err or "invalid config" in err


@pytest.mark.parametrize("make,expected", [
    (lambda p: p.write_text("- name: csv\n"), "expected a data section"),
    (lambda p: p.write_text("data:\n  name: goemotion\n"), "unknown dataset 'goemotion' (did you mean 'goemotions'?)"),
    (lambda p: p.write_text("data: [\n"), "not valid YAML"),
    (lambda p: None, "no such file, and no dataset of that name"),
])
def test_a_bad_data_file_exits_2(text_run, tmp_path, capsys, make, expected):
    make(tmp_path / "d.yaml")
    with pytest.raises(SystemExit) as exit_:
        main(["evaluate", str(text_run), "--data", str(tmp_path / "d.yaml")])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and expected in " ".join(err.split()) and "Traceback" not in err, err


def test_data_options_need_data(text_run, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["evaluate", str(text_run), "--label-map", "joy:positive"])
    assert exit_.value.code == 2 and "go with --data" in capsys.readouterr().err
