"""Robustness: each perturbation does what it says and is seeded; corruptions keep shape and grow with
severity; ``emolab robustness`` on tiny runs writes its files, its figures match scikit-learn, bad input exits 2."""

import json

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from emolab.cli import main
from emolab.config import config_from_dict
from emolab.errors import EmolabError
from emolab.pipeline import run
from emolab.robustness import CORRUPTIONS, PERTURBATIONS, corrupt, perturb
from emolab.robustness.evaluate import robustness_run
from emolab.robustness.text import NAMES, PLACES
from tests.conftest import make_texts
from tests.test_faces import fer_config, write_fer

TEXTS = ["i feel happy today, John said!", "im feeling so alone in london", "i felt rather annoyed",
         "i am feeling calm", "i was feeling scared", "i didnt feel humiliated", "nothing to see here."]


@pytest.mark.parametrize("name", list(PERTURBATIONS))
def test_text_perturbations_are_seeded(name):
    texts = make_texts(30)[0] + TEXTS
    a = perturb(name, texts, severity=4, seed=1)
    assert a == perturb(name, texts, severity=4, seed=1) and len(a) == len(texts)
    assert all(isinstance(t, str) and t for t in a)


def test_text_perturbations_do_what_they_say():
    assert perturb("uppercase", ["i feel ok"]) == ["I FEEL OK"]
    assert perturb("lowercase", ["I Feel OK"]) == ["i feel ok"]
    assert perturb("no-punctuation", ["well, i don't know!"]) == ["well i dont know"]
    assert perturb("no-template", TEXTS[:5]) == ["happy today, John said!", "so alone in london", "rather annoyed",
                                                 "calm", "scared"]
    assert perturb("no-template", ["i didnt feel humiliated"]) == ["i didnt feel humiliated"]
    for sev, extra in ((1, 1), (5, 4)):
        out = perturb("emoji-hashtags", ["i feel ok"], severity=sev)[0]
        assert out.startswith("i feel ok ") and len(out.split()) == 3 + extra
        out = perturb("urls-mentions", ["i feel ok"], severity=sev)[0].split()
        assert len(out) == 3 + extra and sum(w.startswith(("@", "http", "www")) for w in out) == extra
    long = ["the quick brown fox jumps over the lazy dog " * 5] * 20
    changed = [np.mean([a != b for a, b in zip(long[0], t)]) for t in
               (perturb("typos", long, severity=s)[0] for s in (1, 5))]
    assert 0 < changed[0] < changed[1]
    assert perturb("typos", long, severity=3, seed=0) != perturb("typos", long, severity=3, seed=1)


def test_invariance_and_directional_checks_on_hand_made_texts():
    swapped = perturb("swap-names", ["John met mary in london", "no names here"], seed=0)
    words = swapped[0].lower().split()
    assert words[0] != "john" and words[0] in NAMES and words[2] != "mary" and words[2] in NAMES
    assert " ".join(words[4:]) in PLACES and "london" not in swapped[0] and swapped[0].split()[0].istitle()
    assert swapped[1] == "no names here"
    clause = perturb("neutral-clause", ["i feel happy."])[0]
    assert clause.startswith("i feel happy, ") and "." not in clause
    assert perturb("negate", TEXTS) == ["i do not feel happy today, John said!", "i am not feeling so alone in london",
                                        "i did not feel rather annoyed", "i am not feeling calm",
                                        "i was not feeling scared", "i didnt feel humiliated", "nothing to see here."]


def _faces(n=6):
    """Smooth face-like crops: a gradient with dark eyes and mouth."""
    y, x = np.mgrid[:48, :48]
    img = 120 + 60 * np.sin(x / 8.0) * np.cos(y / 10.0)
    img[14:22, 10:20] = img[14:22, 28:38] = 30
    img[32:40, 16:32] = 40
    return np.stack([np.roll(img, i, axis=1) for i in range(n)]).clip(0, 255).astype(np.uint8)


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_image_corruptions_keep_shape_and_grow_with_severity(name):
    images = _faces()
    outs = [corrupt(name, images, severity=s, seed=0) for s in range(1, 6)]
    assert all(o.shape == images.shape and o.dtype == np.uint8 for o in outs)
    assert np.array_equal(outs[2], corrupt(name, images, severity=3, seed=0))
    dist = [np.abs(o.astype(float) - images).mean() for o in outs]
    assert dist[0] > 0 and all(b >= a for a, b in zip(dist, dist[1:])) and dist[-1] > dist[0], dist
    assert corrupt(name, images[:, :40, :40]).shape == (6, 40, 40)  # other sizes scale


def test_occlusion_covers_the_right_rows():
    out = corrupt("occlude-eyes", np.full((1, 48, 48), 200, np.uint8), severity=5)
    assert (out[0, 14:22] == 0).all() and (out[0, :14] == 200).all() and (out[0, 22:] == 200).all()
    out = corrupt("occlude-mouth", np.full((1, 48, 48), 200, np.uint8), severity=1)
    assert (out[0, 32:40, 20:28] == 0).all() and (out[0, 32:40, :10] == 200).all()


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    import pandas as pd

    tmp = tmp_path_factory.mktemp("rob")
    texts, ys = make_texts(150)
    pd.DataFrame({"text": texts, "label": ys}).to_csv(tmp / "toy.csv", index=False)
    cfg = config_from_dict({"data": {"name": "csv", "path": str(tmp / "toy.csv"), "test_ratio": 0.4},
                            "model": {"name": "tfidf", "classifier": "logreg", "C": 10.0},
                            "eval": {"timing": False, "report": False, "bootstrap": 200, "robustness": True},
                            "output": {"dir": str(tmp / "runs"), "name": "toy"}})
    out = run(cfg, say=lambda _m: None)
    made = json.loads((out / "robustness" / "robustness.json").read_text())  # eval.robustness: the default suite
    assert made["n"] == 60 and made["severities"] == [3] and len(made["checks"]) == len(PERTURBATIONS)
    return out


def test_command_writes_its_files_and_matches_scikit_learn(text_run, capsys, monkeypatch):
    from emolab.data import load_dataset
    from emolab.rundir import open_run

    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit) as exit_:
        main(["robustness", str(text_run), "--severity", "2", "--max-examples", "50"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "typos" in out and "negate" in out and "flip rate" in out
    folder = text_run / "robustness"
    report = json.loads((folder / "robustness.json").read_text())
    md = (folder / "robustness.md").read_text()
    assert report["suite"] == "text" and report["n"] == 50 and report["severities"] == [2]
    assert {c["name"] for c in report["checks"]} == set(PERTURBATIONS)
    assert "| typos | perturbation | 2 |" in md and "## Invariance and directional checks" in md

    r = open_run(text_run)  # perturb again by hand and score with scikit-learn
    test = load_dataset(r.config.data, r.config.seed).split("test")
    test = test.subset(np.sort(np.random.default_rng(r.config.seed).choice(len(test), 50, replace=False)))
    model = r.model()
    clean = model.predict_proba(test.inputs).argmax(1)
    saved = np.load(folder / "predictions.npz")
    assert np.array_equal(saved["clean"], clean) and np.array_equal(saved["ids"], test.ids.astype(str))
    for c in report["checks"]:
        pred = model.predict_proba(perturb(c["name"], test.inputs, severity=c["severity"] or 3,
                                           seed=r.config.seed)).argmax(1)
        assert np.array_equal(saved[c["name"] if c["severity"] is None else f"{c['name']}@2"], pred)
        assert c["accuracy"] == pytest.approx(accuracy_score(test.labels, pred))
        assert c["macro_f1"] == pytest.approx(f1_score(test.labels, pred, average="macro"))
        assert c["flip_rate"] == pytest.approx(np.mean(pred != clean))
        assert c["vs_clean"]["accuracy"]["difference"] == pytest.approx(
            accuracy_score(test.labels, pred) - accuracy_score(test.labels, clean))
        lo, hi = c["accuracy_interval"]
        assert lo <= c["accuracy"] <= hi
        assert len(c["examples"]) == min(5, int((pred != clean).sum()))
        confidences = [e["confidence"] for e in c["examples"]]
        assert confidences == sorted(confidences, reverse=True)


def test_the_report_gets_a_robustness_section(text_run):
    from emolab.report import write_report

    write_report(text_run, say=lambda _m: None)
    md = (text_run / "report.md").read_text()
    section = md.split("## Robustness", 1)[1].split("\n## ", 1)[0]
    assert "| typos | perturbation |" in section and "flip rate" in section
    assert ">Robustness</h" in (text_run / "report.html").read_text()


@pytest.mark.parametrize("args,expected", [
    (["--only", "typoz"], "unknown text perturbation 'typoz' (did you mean 'typos'?)"),
    (["--severity", "6"], "--severity 6 is outside 1..5"),
    (["--severity", "0"], "--severity 0 is outside 1..5"),
    (["--suite", "image"], "--suite image does not fit the run"),
    (["--suite", "audio"], "unknown suite 'audio'"),
    (["--split", "nope"], "has no split 'nope'"),
])
def test_bad_input_exits_2(text_run, capsys, args, expected):
    with pytest.raises(SystemExit) as exit_:
        main(["robustness", str(text_run), *args])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and expected in " ".join(err.split()) and "Traceback" not in err, err


def test_mean_corruption_error_by_hand():
    from emolab.robustness.evaluate import CheckResult, mean_corruption_error

    def check(name, sev, acc):
        return CheckResult(name, "corruption", sev, "", 10, 10, acc, [], 0.0, [], {}, 0.0, 0.0, 0.0)

    checks = [check("blur", 1, 0.8), check("blur", 2, 0.6), check("jpeg", 1, 0.9)]
    base = {"blur@1": 0.3, "blur@2": 0.5, "jpeg@1": 0.2}
    out = mean_corruption_error(checks, base, clean_error=0.1, base_clean_error=0.2)
    assert out["per_perturbation"]["blur"]["ce"] == pytest.approx(0.6 / 0.8)
    assert out["per_perturbation"]["jpeg"]["ce"] == pytest.approx(0.5)
    assert out["mce"] == pytest.approx((0.75 + 0.5) / 2)
    assert out["per_perturbation"]["blur"]["relative_ce"] == pytest.approx((0.6 - 0.2) / (0.8 - 0.4))
    assert np.isnan(out["per_perturbation"]["jpeg"]["relative_ce"]) and out["relative_mce"] == pytest.approx(1.0)


@pytest.mark.slow
def test_image_run_with_itself_as_baseline_has_mce_one(tmp_path):
    write_fer(tmp_path / "fer", n=84)
    raw = fer_config(tmp_path, tmp_path / "fer", epochs=1)
    raw["eval"]["report"] = False
    out = run(config_from_dict(raw), say=lambda _m: None)
    with pytest.raises(EmolabError, match="--suite text does not fit"):
        robustness_run(out, suite="text", say=lambda _m: None)
    report = robustness_run(out, only=["blur", "occlude-mouth"], severities=[1, 5], baseline=out, say=lambda _m: None)
    assert [c.key for c in report.checks] == ["blur@1", "blur@5", "occlude-mouth@1", "occlude-mouth@5"]
    assert report.baseline["mce"] == pytest.approx(1.0) and report.suite == "image"
    md = (out / "robustness" / "robustness.md").read_text()
    assert "Corruption error relative to faces" in md and "test index" in md or "flips" in md


def test_only_what_the_model_reads_differently_is_predicted_again():
    """An uncased model reads an uppercased text as the clean one: it keeps its clean prediction, unpredicted;
    texts it reads differently are predicted (and get their own scores)."""
    from emolab.robustness.evaluate import _predict_changed

    class Uncased:
        asked: list = []

        def as_read(self, inputs):
            return [t.lower() for t in inputs]

        def predict_proba(self, inputs, batch_size=64):
            self.asked += list(inputs)
            return np.tile([0.0, 1.0], (len(inputs), 1))

    clean = ["i feel fine", "so sad", "what a day"]
    perturbed = ["I FEEL FINE", "so sad!", "what a day"]
    clean_probs = np.tile([1.0, 0.0], (3, 1))
    model = Uncased()
    probs = _predict_changed(model, "text", clean, perturbed, clean_probs, 8)
    assert model.asked == ["so sad!"]
    assert probs[:, 1].tolist() == [0.0, 1.0, 0.0]


def test_a_transformer_reads_what_its_tokenizer_keeps(tmp_path):
    from emolab.config import config_from_dict
    from emolab.models import create_model
    from emolab.records import LabelSet
    from tests.conftest import TINY_ENCODER

    cfg = config_from_dict({"data": {"name": "emotion"}, "model": {"name": "transformer", "max_length": 8,
                                                                    "backbone_config": dict(TINY_ENCODER)}})
    model = create_model(cfg.model, LabelSet(["a", "b"]))
    long = "i feel " + "very " * 20
    read = model.as_read(["i feel fine", "i feel fine", long, long + "extra words at the end"])
    assert read[0] == read[1] and read[2] == read[3] and read[0] != read[2]
