from pathlib import Path

import pytest

from emolab.config import RunConfig, config_from_dict, dump_config, load_config
from emolab.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
PRESETS = sorted((ROOT / "configs").glob("*.yaml"))


def test_there_are_presets():
    assert len(PRESETS) >= 2


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.name)
def test_every_preset_loads_and_names_its_command(path):
    first = path.read_text().splitlines()[0]
    assert first.startswith("# emolab ") and path.name in first, f"{path.name} must start with its command"
    cfg = load_config(path)
    assert cfg.output.name == path.stem
    from emolab.data import list_datasets
    from emolab.models import list_models

    assert cfg.data.name in list_datasets()
    assert cfg.model.name in list_models()


def test_unknown_keys_are_refused_with_valid_keys_listed_and_all_errors_at_once():
    with pytest.raises(ConfigError) as info:
        config_from_dict({"train": {"lrr": 1e-3, "epochs": "three"}, "modle": {}, "data": {"name": 3}})
    problems = info.value.problems
    assert len(problems) == 4
    text = str(info.value)
    assert "train.lrr: unknown key" in text and "lr," in text  # valid keys listed
    assert "modle: unknown key" in text
    assert "train.epochs: expected an integer" in text
    assert "data.name: expected a string" in text


def test_dotted_overrides_and_scientific_notation():
    cfg = config_from_dict({"train": {"lr": "3e-5"}, "model": {"name": "transformer"}, "data": {"name": "csv"}},
                           overrides=["train.lr=2e-5", "model.pooling=cls",
                                                                    "train.patience=2", "data.labels=[a, b]"])
    assert cfg.train.lr == pytest.approx(2e-5)
    assert cfg.model.pooling == "cls"
    assert cfg.train.patience == 2
    assert cfg.data.labels == ["a", "b"]
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        config_from_dict({}, overrides=["train.lr"])


def test_value_checks():
    with pytest.raises(ConfigError) as info:
        config_from_dict({"train": {"epochs": 0, "lr": -1.0, "ema_decay": 1},
                          "model": {"name": "transformer", "dropout": 1.5}})
    assert len(info.value.problems) == 4
    assert any(p.startswith("train.ema_decay: must be in (0, 1)") for p in info.value.problems)


def test_literal_choices_are_checked():
    with pytest.raises(ConfigError, match="data.taxonomy: 'plutchik' is not one of"):
        config_from_dict({"data": {"name": "goemotions", "taxonomy": "plutchik"}})


def test_class_weights_take_true_or_a_named_scheme():
    assert config_from_dict({}, overrides=["train.class_weights=sqrt"]).train.class_weights == "sqrt"
    assert config_from_dict({}, overrides=["train.class_weights=true"]).train.class_weights is True
    with pytest.raises(ConfigError, match="train.class_weights: expected bool or 'balanced' \\| 'sqrt', got 'inverse'"):
        config_from_dict({}, overrides=["train.class_weights=inverse"])


def test_a_bare_no_means_the_choice_no():  # YAML 1.1 reads `no` as false
    assert config_from_dict({}, overrides=["train.mixed_precision=no"]).train.mixed_precision == "no"
    with pytest.raises(ConfigError, match="train.mixed_precision: True is not one of"):
        config_from_dict({}, overrides=["train.mixed_precision=yes"])


def test_resolved_config_round_trips(tmp_path):
    cfg = config_from_dict({"train": {"epochs": 7}}, overrides=["seed=3"])
    path = tmp_path / "c.yaml"
    path.write_text(dump_config(cfg))
    again = load_config(path)
    assert again.train.epochs == 7 and again.seed == 3
    assert isinstance(RunConfig().to_dict(), dict)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_every_kind_of_fault_is_reported_at_once_with_did_you_mean():
    raw = {"model": {"name": "transformer", "poolng": "mean", "max_length": "long", "dropout": 2.0},
           "train": {"epochs": 0, "scheduler": "cosin"}, "data": {"name": "emotoin"}}
    with pytest.raises(ConfigError) as info:
        config_from_dict(raw)
    text = "\n".join(info.value.problems)
    assert len(info.value.problems) == 6, text
    assert "model.poolng: unknown key for 'transformer' (did you mean 'pooling'?)" in text
    assert "model.max_length: expected an integer, got 'long'" in text
    assert "model.dropout: must be in [0, 1), got 2.0" in text
    assert "train.epochs: must be at least 1" in text
    assert "train.scheduler: 'cosin' is not one of" in text
    assert "data.name: unknown dataset 'emotoin' (did you mean 'emotion'?)" in text


def test_registry_names_are_checked_before_anything_is_built():
    import numpy as np
    import torch

    torch_state, np_state = torch.random.get_rng_state(), np.random.get_state()[1].copy()
    with pytest.raises(ConfigError) as info:
        config_from_dict({"model": {"name": "vgg"}, "data": {"name": "fer2013"}})
    assert "model.name: unknown model 'vgg' (did you mean 'vgg-fer'?)" in info.value.problems[0]
    with pytest.raises(ConfigError, match="model.pooling: unknown pooling 'meen' \\(did you mean 'mean'\\?\\)"):
        config_from_dict({"model": {"name": "transformer", "pooling": "meen"}})
    with pytest.raises(ConfigError, match="eval.tta: test-time augmentation"):
        config_from_dict({"model": {"name": "tfidf"}, "eval": {"tta": "flip"}})
    assert torch.equal(torch.random.get_rng_state(), torch_state)  # no model was built, no number drawn
    assert np.array_equal(np.random.get_state()[1], np_state)


def test_each_model_and_dataset_owns_its_section():
    from emolab.data import dataset_config
    from emolab.models import model_config

    cfg = config_from_dict({"model": {"name": "vgg-fer", "depths": [1, 1, 2, 2], "augment": {"hflip": True}},
                            "data": {"name": "ferplus", "label_mode": "votes"}})
    assert cfg.model == model_config("vgg-fer", depths=[1, 1, 2, 2], augment=cfg.model.augment)
    assert cfg.model.augment.hflip is True and cfg.data == dataset_config("ferplus", label_mode="votes")
    with pytest.raises(ConfigError, match="model.depths: unknown key for 'cnn-small'"):
        config_from_dict({"model": {"name": "cnn-small", "depths": [1, 1, 1, 1]}})
    with pytest.raises(ConfigError, match="model.augment.shift: must be in \\[0, 1\\)"):
        config_from_dict({"model": {"name": "cnn-small", "augment": {"shift": 1.5}}})


def test_a_run_saved_with_the_old_flat_sections_still_loads():
    from emolab.config import config_from_saved

    old = {"data": {"name": "fer2013", "taxonomy": "original", "text_column": "text", "skip_bad_rows": True},
           "model": {"name": "cnn-small", "backbone": "minilm-l6", "pooling": "mean", "width": 16, "C": 10.0},
           "train": {"epochs": 2, "augment": {"hflip": True, "shift": 0.1}}}
    cfg = config_from_saved(old, source="runs/x/config.yaml")
    assert cfg.model.width == 16 and cfg.model.augment.shift == 0.1 and cfg.data.skip_bad_rows is True


SWEEPS = [p for p in PRESETS if "sweep:" in p.read_text()]


def test_sweep_presets_ship_for_text_and_faces():
    names = {p.name for p in SWEEPS}
    assert {"emotion-tfidf-sweep.yaml", "fer2013-cnn-sweep.yaml"} <= names


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.name)
def test_every_sweep_preset_validates_its_space(path):
    from emolab.sweeps import validate_space

    cfg = load_config(path)
    space = validate_space(cfg, str(path))
    assert space and path.read_text().splitlines()[0].startswith(f"# emolab sweep configs/{path.name} --trials")
    for key, spec in space.items():  # every value the space can produce is a valid config
        values = spec.get("choices") or [spec["low"], spec["high"]]
        for v in values:
            config_from_dict(cfg.to_dict(), overrides=[f"{key}={v}"])


def test_matrix_cells_list_one_factor_at_a_time_and_seeds_per_cell():
    from emolab.config import load_raw
    from emolab.matrix import cells

    path = ROOT / "configs" / "emotion-minilm-ablation.yaml"
    cfg = load_config(path)
    raw = load_raw(path)
    listed = dict(cells(cfg, raw, str(path)))
    assert list(listed) == ["baseline", "augment", "freeze-2", "freeze-4", "cls-pooling", "attention-pooling"]
    assert listed["augment"].model.augment.p == 0.5 and listed["baseline"].model.augment.p == 0.0
    assert listed["freeze-4"].model.freeze_layers == 4 and listed["freeze-4"].model.pooling == "mean"
    assert listed["cls-pooling"].model.pooling == "cls" and all(c.seeds == [1, 2, 3] for c in listed.values())
    # each cell changes only its own factor: one cell's overrides never leak into the next (they once did)
    assert [(c.model.augment.p, c.model.freeze_layers) for c in listed.values()] == \
        [(0.0, 0), (0.5, 0), (0.0, 2), (0.0, 4), (0.0, 0), (0.0, 0)]
    assert raw == load_raw(path)  # the config as read, untouched by the cells' overrides
    with pytest.raises(ConfigError, match="matrix.cells: the name 'x' is used twice"):
        bad = config_from_dict({"matrix": {"cells": [{"name": "x"}, {"name": "x", "seed": 1}]}})
        cells(bad, {}, "m.yaml")


def test_an_old_text_run_whose_train_section_held_image_augmentation_still_loads():
    from emolab.config import config_from_saved

    old = {"model": {"name": "transformer"}, "train": {"augment": {"hflip": False, "rotation": 0.0}}}
    assert config_from_saved(old, source="old").model.augment.p == 0.0
    face = {"model": {"name": "cnn-small"}, "train": {"augment": {"hflip": True}}}
    assert config_from_saved(face, source="old").model.augment.hflip is True


def test_negative_seeds_are_config_errors():
    with pytest.raises(ConfigError, match=r"seed: must be in \[0, 2\*\*32\)"):
        config_from_dict({"seed": -1})
    with pytest.raises(ConfigError, match=r"integers in \[0, 2\*\*32\)"):
        config_from_dict({"seeds": [1, -2]})


BOMB = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi"))


def test_a_yaml_alias_bomb_is_refused_before_it_expands(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)
    assert len(BOMB) < 600  # 9**9 = 387 million strings once expanded
    with pytest.raises(ConfigError, match="expands to more than 100,000 values .* YAML bomb") as info:
        load_config(path)
    assert str(path) in str(info.value)
    with pytest.raises(ConfigError, match="--set"):
        config_from_dict({}, overrides=["matrix.seed=" + BOMB.replace("\n", ", ").join("{}")])
    path.write_text("a: &x [1, *x]\n")
    with pytest.raises(ConfigError, match="line 1: an alias refers to a collection that contains it"):
        load_config(path)
    path.write_text("base: &b {lr: 0.01}\ntrain: {epochs: 2, <<: *b}\n")  # small anchors still work
    with pytest.raises(ConfigError, match="base: unknown key"):
        load_config(path)


def test_duplicate_keys_are_refused_with_their_line(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("seed: 1\ntrain:\n  lr: 0.1\n  epochs: 2\n  lr: 0.2\n")
    with pytest.raises(ConfigError, match=r"line 5: duplicate key 'lr' \(first on line 3\)") as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_a_set_value_that_is_not_yaml_names_the_set(tmp_path):
    with pytest.raises(ConfigError, match=r"(?s)--set .*'train.lr=\[1': the value '\[1': not valid YAML"):
        config_from_dict({}, overrides=["train.lr=[1"])
    with pytest.raises(ConfigError, match="'seed=2024-13-45'.*month must be in 1..12"):
        config_from_dict({}, overrides=["seed=2024-13-45"])  # YAML's timestamp rule raised a ValueError


def test_seeds_must_fit_numpy_and_torch():
    assert config_from_dict({}, overrides=[f"seed={2 ** 32 - 1}"]).seed == 2 ** 32 - 1
    for bad in (2 ** 32, -1):
        with pytest.raises(ConfigError, match=r"seed: must be in \[0, 2\*\*32\)"):
            config_from_dict({}, overrides=[f"seed={bad}"])
    with pytest.raises(ConfigError, match=r"seeds: expected a list of integers in \[0, 2\*\*32\).*4294967296"):
        config_from_dict({"seeds": [1, 2 ** 32]})


@pytest.mark.parametrize("key", ["data.max_train_examples", "data.max_eval_examples", "train.max_steps",
                                 "train.log_every", "train.num_threads", "train.patience", "eval.ece_bins",
                                 "eval.timing_examples", "model.max_features"])
def test_counts_must_be_positive(key):
    with pytest.raises(ConfigError, match=f"{key}: must be at least 1"):
        config_from_dict({}, overrides=[f"{key}=0"])
    config_from_dict({}, overrides=[f"{key}=1"])


def test_cli_prints_config_problems_without_a_traceback(tmp_path):
    from tests.test_cli import emolab

    path = tmp_path / "dup.yaml"
    path.write_text("seed: 1\nseed: 2\n")
    res = emolab("run", path, cwd=tmp_path)
    assert res.returncode == 2 and "line 2: duplicate key 'seed'" in res.stderr and "Traceback" not in res.stderr
    path.write_text("model: {name: tfidf}\n")
    res = emolab("run", path, "--set", "data.max_train_examples=0", cwd=tmp_path)
    assert res.returncode == 2 and "data.max_train_examples: must be at least 1" in res.stderr, res.stderr
    assert not (tmp_path / "runs").exists()  # refused before a run directory was made
    res = emolab("run", path, "--set", "train.lr={", cwd=tmp_path)
    assert res.returncode == 2 and "'train.lr={'" in res.stderr and "Traceback" not in res.stderr


# --- each key in the section that owns it; one loader; one rule for `3e-5` --------------------------------


@pytest.mark.parametrize("model, key, applies", [("cnn-small", "channels_last", True),
                                                 ("resnet18-fer", "channels_last", True),
                                                 ("mlp", "channels_last", False),  # no convolutions
                                                 ("transformer", "channels_last", False),
                                                 ("transformer", "group_by_length", True),
                                                 ("vgg-fer", "group_by_length", False),
                                                 ("tfidf", "group_by_length", False)])
def test_an_old_config_with_the_train_keys_that_moved_to_the_model_still_loads_and_means_the_same(
        tmp_path, model, key, applies):
    import yaml

    from emolab.config import config_from_saved, read_yaml

    old = {"model": {"name": model}, "train": {"epochs": 2, key: False}}
    new = {"model": {"name": model, **({key: False} if applies else {})}, "train": {"epochs": 2}}
    expected = config_from_dict(new)
    assert getattr(expected.model, key, None) is (False if applies else None)
    assert config_from_dict(old) == expected  # a user's config that still writes train.<key>
    assert config_from_dict({"model": {"name": model}, "train": {"epochs": 2}},
                            overrides=[f"train.{key}=false"]) == expected  # --set train.<key>=false
    path = tmp_path / "config.yaml"  # a run saved before the move: its config.yaml, as dump_config wrote it
    saved = {**expected.to_dict(), "train": {**expected.to_dict()["train"], key: False}}
    saved["model"] = {k: v for k, v in saved["model"].items() if k != key}
    path.write_text(yaml.safe_dump(saved, sort_keys=False))
    assert config_from_saved(read_yaml(path), source=str(path)) == expected
    assert key not in expected.to_dict()["train"] and (key in expected.to_dict()["model"]) is applies


def test_a_moved_key_set_in_both_places_with_different_values_is_one_error():
    with pytest.raises(ConfigError) as info:
        config_from_dict({"model": {"name": "cnn-small", "channels_last": True}, "train": {"channels_last": False}})
    assert info.value.problems == ["train.channels_last: False here and True in model.channels_last, where the key "
                                   "has moved; set model.channels_last only"]
    same = {"model": {"name": "cnn-small", "channels_last": False}, "train": {"channels_last": False}}
    assert config_from_dict(same).model.channels_last is False


@pytest.mark.parametrize("raw, key", [
    ({"model": {"name": "vgg-fer", "crop_size": 4}}, "model.crop_size"),
    ({"model": {"name": "vgg-fer", "crop_size": 40.5}}, "model.crop_size"),
    ({"model": {"name": "cnn-small", "crop_size": True}}, "model.crop_size"),
    ({"model": {"name": "mlp", "crop_size": "big"}}, "model.crop_size"),
    ({"model": {"name": "vgg-fer", "depths": [2, 2, 0, 2]}}, "model.depths"),
    ({"model": {"name": "vgg-fer", "depths": [2, 2, 2]}}, "model.depths"),
    ({"model": {"name": "vgg-fer", "depths": [True, 2, 2, 2]}}, "model.depths"),
    ({"model": {"name": "vgg-fer", "depths": 3}}, "model.depths"),
    ({"model": {"name": "vgg-fer"}, "eval": {"tta": "twenty-crop"}}, "eval.tta"),
    ({"model": {"name": "tfidf"}, "eval": {"tta": "flip"}}, "eval.tta"),
], ids=lambda v: str(v) if isinstance(v, str) else None)
def test_a_bad_crop_size_depths_or_tta_is_one_error_naming_the_key(raw, key):
    with pytest.raises(ConfigError) as info:
        config_from_dict(raw)
    assert len(info.value.problems) == 1 and info.value.problems[0].startswith(f"{key}: "), info.value.problems
    if key.startswith("model."):  # the same single error from the Python constructor of a section
        from emolab.models import model_config

        with pytest.raises(ConfigError) as again:
            model_config(**raw["model"])
        assert again.value.problems == info.value.problems


def test_a_model_card_config_is_rebuilt_by_the_config_loader(tmp_path):
    """Cards written before each model had its own section held every family's keys (nested ones too); they are
    dropped, the rest typed and checked like a config file, and a bad value names the key and the card."""
    from emolab.models.registry import MODEL_FILE, model_config_class

    old = {"name": "cnn-small", "width": 16, "backbone": "minilm-l6", "C": 10, "dropout": 0,
           "augment": {"hflip": True, "p": 0.5}}
    cfg = model_config_class("cnn-small").from_saved(old)
    assert cfg == model_config_class("cnn-small")(name="cnn-small", width=16, dropout=0.0, augment=cfg.augment)
    assert cfg.augment.hflip is True and isinstance(cfg.dropout, float)
    text = model_config_class("transformer").from_saved({"name": "transformer", "augment": {"p": 0.5, "delete": 0.1,
                                                                                            "hflip": False}})
    assert text.augment.p == 0.5 and text.augment.delete == 0.1 and text.group_by_length is True
    card = str(tmp_path / MODEL_FILE)
    with pytest.raises(ConfigError) as info:
        model_config_class("vgg-fer").from_saved({"name": "vgg-fer", "depths": [1, 0, 1, 1]}, source=card)
    assert info.value.source == card and info.value.problems[0].startswith("model.depths: ")


def test_exponent_floats_read_the_same_through_every_loader(tmp_path):
    """PyYAML reads `3e-5` (no dot) as a string; a config file, a --set value, a Python mapping, a saved run,
    matrix and sweep values and a model card's section all read it as the number, by one rule."""
    from emolab.config import config_from_saved, load_raw, parse_override, read_yaml
    from emolab.models.registry import model_config_class
    from emolab.sections import yaml_numbers

    path = tmp_path / "c.yaml"
    path.write_text("model: {name: transformer, backbone_config: {layer_norm_eps: 1e-12}}\n"
                    "train: {lr: 3e-5, ema_decay: 9.99e-1}\n"
                    "sweep: {space: {train.lr: {type: loguniform, low: 1e-5, high: 1E-3}}}\n"
                    "matrix: {train.weight_decay: [1e-2, 0.1]}\n")
    readers = {
        "file": load_config(path),
        "--set": config_from_dict({}, overrides=["model.name=transformer",
                                                 "model.backbone_config={layer_norm_eps: 1e-12}",
                                                 "train.lr=3e-5", "train.ema_decay=9.99e-1",
                                                 "sweep.space={train.lr: {type: loguniform, low: 1e-5, high: 1E-3}}",
                                                 "matrix={train.weight_decay: [1e-2, 0.1]}", "output.name=c"]),
        "mapping": config_from_dict({"model": {"name": "transformer", "backbone_config": {"layer_norm_eps": "1e-12"}},
                                     "train": {"lr": "3e-5", "ema_decay": "9.99e-1"},
                                     "sweep": {"space": {"train.lr": {"type": "loguniform", "low": "1e-5",
                                                                      "high": "1E-3"}}},
                                     "matrix": {"train.weight_decay": ["1e-2", 0.1]}, "output": {"name": "c"}}),
        "load_raw": config_from_dict(load_raw(path)),
    }
    path.write_text(dump_config(readers["file"]))
    readers["saved run"] = config_from_saved(read_yaml(path), source=str(path))
    for name, cfg in readers.items():
        assert cfg == readers["file"], name
        assert cfg.train.lr == 3e-5 and cfg.train.ema_decay == 0.999, name
        assert cfg.model.backbone_config == {"layer_norm_eps": 1e-12}, name
        assert cfg.sweep.space["train.lr"]["low"] == 1e-5 and cfg.matrix["train.weight_decay"] == [0.01, 0.1], name
    assert parse_override("train.lr=3e-5") == (["train", "lr"], 3e-5)
    card = model_config_class("tfidf").from_saved({"name": "tfidf", "C": "1e1"})
    assert card.C == 10.0
    assert yaml_numbers(["1e5", "+2.5E-3", ".5e1", "1e", "e5", "1e5x", "run-1e5", "12"]) == \
        [1e5, 2.5e-3, 5.0, "1e", "e5", "1e5x", "run-1e5", "12"]


def test_a_tta_given_on_the_command_line_is_checked_by_the_eval_section():
    from emolab.config import EvalConfig
    from emolab.sections import replace_checked

    assert replace_checked(EvalConfig(), "eval.", source="--tta", tta="dense").tta == "dense"
    with pytest.raises(ConfigError) as info:
        replace_checked(EvalConfig(), "eval.", source="--tta", tta="twenty-crop")
    assert info.value.source == "--tta" and info.value.problems == [
        "eval.tta: 'twenty-crop' is not one of 'none' | 'flip' | 'ten-crop' | 'dense'"]


def test_an_older_sweep_or_matrix_over_a_moved_key_still_runs():
    from emolab.matrix import cells
    from emolab.sweeps import validate_space

    space = {"train.group_by_length": {"type": "categorical", "choices": [True, False]}}
    cfg = config_from_dict({"model": {"name": "transformer"}, "sweep": {"space": space}})
    assert validate_space(cfg, "s.yaml") == space
    assert config_from_dict(cfg.to_dict(), overrides=["train.group_by_length=false"]).model.group_by_length is False
    raw = {"model": {"name": "cnn-small"}, "matrix": {"train.channels_last": [True, False]}}
    assert [c.model.channels_last for _, c in cells(config_from_dict(raw), raw, "m.yaml")] == [True, False]
