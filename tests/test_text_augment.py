"""Text augmentation: each operation, its seeding, its protected words, and its place in training (train split
only, resumable bit for bit, multi-label label sets kept)."""

import json
from collections import Counter

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from emolab.config import config_from_dict
from emolab.errors import ConfigError
from emolab.models.text_augment import (TextAugmentConfig, TextAugmenter, carries_emotion, neighbour_table,
                                        oversampled_positions, random_deletion, random_insertion, random_swap,
                                        substitution)
from emolab.pipeline import run
from emolab.training import train
from tests.conftest import TINY_ENCODER, crash_after_first_epoch

TEXT = "i walked the dog to the old house near the river today and felt calm".split()
TABLE = {"dog": ["cat", "puppy"], "house": ["home", "cottage"], "river": ["lake"], "old": ["ancient"]}


def rng(seed=0):
    return np.random.default_rng(seed)


def test_deletion_keeps_a_subsequence_and_never_empties_a_text():
    out = random_deletion(TEXT, 0.3, rng())
    it = iter(TEXT)
    assert all(w in it for w in out) and 0 < len(out) < len(TEXT)  # an order-preserving subsequence
    assert len(random_deletion(["alone", "here"], 1.0, rng())) == 1
    assert random_deletion(["one"], 1.0, rng()) == ["one"]


def test_swap_is_a_permutation_moving_words():
    out = random_swap(TEXT, 0.2, rng(1))
    assert Counter(out) == Counter(TEXT) and out != TEXT


def test_insertion_adds_neighbours_of_words_in_the_text():
    out = random_insertion(TEXT, 0.2, rng(2), TABLE)
    added = Counter(out) - Counter(TEXT)
    assert sum(added.values()) == round(0.2 * len(TEXT))
    assert set(added) <= {w for ws in TABLE.values() for w in ws}
    assert random_insertion(["no", "known", "words"], 0.5, rng(), TABLE) == ["no", "known", "words"]


def test_substitution_replaces_only_words_with_neighbours():
    out = substitution(TEXT, 0.2, rng(3), TABLE)
    assert len(out) == len(TEXT)
    changed = [(a, b) for a, b in zip(TEXT, out) if a != b]
    assert len(changed) == round(0.2 * len(TEXT)) and all(b in TABLE[a] for a, b in changed)


def test_the_lexicon_protects_emotion_words_their_inflections_and_negators():
    assert carries_emotion("scare") and carries_emotion("scared") and carries_emotion("happy")
    assert carries_emotion("sad")  # missing from nrclex's copy; a protected seed word
    assert carries_emotion("didnt") and carries_emotion("never")
    assert not carries_emotion("house") and not carries_emotion("river")


def test_glove_neighbours_never_involve_emotion_words():
    vocab = set("i walked the dog to the old house near the river today and felt calm happy scared angry "
                "office room door cat puppy home lake building road city".split())
    table = neighbour_table(vocab, 5, protect={"joy"})
    assert "house" in table and set(table["house"]) <= vocab
    for word, near in table.items():
        assert not carries_emotion(word) and not any(carries_emotion(w) for w in near), (word, near)
    assert "happy" not in table and "scared" not in table and "calm" not in table


def test_augmenter_is_reproducible_per_example_and_differs_across_epochs():
    texts = [" ".join(TEXT)] * 4
    cfg = TextAugmentConfig(p=1.0, delete=0.2, swap=0.2)
    a, b = TextAugmenter(cfg, seed=5), TextAugmenter(cfg, seed=5)
    assert [a(t, 1, i) for i, t in enumerate(texts)] == [b(t, 1, i) for i, t in enumerate(texts)]
    assert [a(t, 1, i) for i, t in enumerate(texts)] != [a(t, 2, i) for i, t in enumerate(texts)]
    assert TextAugmenter(cfg, seed=6)(texts[0], 1, 0) != a(texts[0], 1, 0) or \
        TextAugmenter(cfg, seed=6)(texts[1], 1, 1) != a(texts[1], 1, 1)
    assert a(texts[2], 1, 2) == a(texts[2], 1, 2)  # no hidden state: the order of draws does not matter
    off = TextAugmenter(TextAugmentConfig(p=0.0, delete=0.5), seed=5)
    assert off(texts[0], 1, 0) == texts[0]


def test_p_is_the_share_of_examples_augmented():
    cfg = TextAugmentConfig(p=0.3, swap=0.5)
    aug = TextAugmenter(cfg, seed=0)
    text = " ".join(TEXT)
    changed = np.mean([aug(text, 1, i) != text for i in range(2000)])
    assert 0.26 < changed < 0.34


def test_oversampling_repeats_rare_classes_and_keeps_multi_label_sets():
    y = np.array([0] * 80 + [1] * 15 + [2] * 5)
    pos = oversampled_positions(y, 0.5, seed=0)
    counts = np.bincount(y[pos])
    assert counts.tolist() == [80, 40, 40] and (pos[:100] == np.arange(100)).all()
    multi = np.zeros((10, 3), int)
    multi[:8, 0] = 1
    multi[8:, [0, 2]] = 1  # two examples carry the rare label 2 (with 0)
    pos = oversampled_positions(multi, 1.0, seed=0)
    assert set(map(tuple, multi[pos])) == set(map(tuple, multi))  # label sets travel whole
    assert multi[pos][:, 2].sum() == 8  # up to the largest group (8 examples whose rarest label is 0)


@pytest.mark.parametrize("bad,match", [
    ({"p": 1.5, "delete": 0.1}, "model.augment.p: a probability or share in \\[0, 1\\]"),
    ({"p": 0.5}, "every operation is 0"),
    ({"p": 0.5, "deletion": 0.1}, "model.augment.deletion: unknown key"),
    ({"swap": -0.1}, "model.augment.swap"),
    ({"oversample_rare": 2.0}, "model.augment.oversample_rare"),
])
def test_bad_augmentation_settings_are_config_errors(bad, match):
    with pytest.raises(ConfigError, match=match):
        config_from_dict({"model": {"name": "transformer", "augment": bad}})


def _config(tmp_path, csv, name, **augment):
    return config_from_dict({
        "data": {"name": "csv", "path": str(csv), "text_column": "sentence", "label_column": "emotion"},
        "model": {"name": "transformer", "backbone_config": dict(TINY_ENCODER), "max_length": 32,
                  "augment": {"p": 0.8, "delete": 0.2, "swap": 0.2, **augment}},
        "train": {"epochs": 3, "batch_size": 8, "lr": 1e-3},
        "eval": {"timing": False, "report": False},
        "output": {"dir": str(tmp_path / name), "name": "r"}, "seed": 3})


def test_only_training_texts_are_augmented(tmp_path, tiny_csv, monkeypatch):
    from emolab.data import load_dataset

    seen = []
    original = TextAugmenter.draw

    def spy(self, text, epoch, position):
        seen.append(text)
        return original(self, text, epoch, position)

    monkeypatch.setattr(TextAugmenter, "draw", spy)
    cfg = _config(tmp_path, tiny_csv, "a")
    out = run(cfg, say=lambda _m: None)
    ds = load_dataset(cfg.data, cfg.seed)
    train = set(ds.split("train").inputs)
    assert seen and set(seen) <= train
    assert not set(seen) & (set(ds.split("validation").inputs) | set(ds.split("test").inputs)) - train
    import pandas as pd

    scored = pd.read_csv(out / "predictions_test.csv", keep_default_na=False)["input"].tolist()
    assert scored == list(ds.split("test").inputs)  # test predictions are of the texts as given


def test_resume_with_augmentation_ends_bit_identical(tmp_path, tiny_csv):
    straight = run(_config(tmp_path, tiny_csv, "a", oversample_rare=1.0), say=lambda _m: None)
    cfg = _config(tmp_path, tiny_csv, "b", oversample_rare=1.0)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, say=crash_after_first_epoch)
    resumed = run(cfg, resume=True, say=lambda _m: None)
    a = load_file(str(straight / "model" / "model.safetensors"))
    b = load_file(str(resumed / "model" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    la = [json.loads(x)["val_loss"] for x in (straight / "history.jsonl").read_text().splitlines()]
    lb = [json.loads(x)["val_loss"] for x in (resumed / "history.jsonl").read_text().splitlines()]
    assert la == lb


def test_augmentation_changes_training_and_multi_label_runs_keep_their_sets(tmp_path):
    from emolab.models import create_model
    from emolab.models.text import AugmentedTexts
    from tests.conftest import multi_label_dataset

    ds = multi_label_dataset(60)
    y = ds.split("train").labels
    cfg = _config(tmp_path, "unused", "m", oversample_rare=0.8)
    model = create_model(cfg.model, ds.labels)
    task = model.task(ds, cfg)
    assert isinstance(task.train_set, AugmentedTexts) and len(task.train_set) > 60
    task.train_set.start_epoch(1)
    for i in range(len(task.train_set)):
        src = task.train_set.positions[i]
        assert (task.train_set[i]["labels"] == y[src]).all()
    assert type(task.val_set).__name__ == "EncodedTexts"
    history = train(model, ds, cfg)
    assert "micro_f1" in history[-1].validation
