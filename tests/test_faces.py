"""Faces: FER2013 / FER+ / image-folder loading, the CNN registry, batch augmentation, test-time
augmentation and a whole run, on tiny synthetic 48x48 images (learnable: each class lights one patch)."""

from __future__ import annotations

import dataclasses
import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from emolab.config import config_from_dict
from emolab.data import load_dataset
from emolab.data.images import FERPLUS_COLUMNS, FERPLUS_LABELS, ferplus_targets
from emolab.errors import DataError, EmolabError
from emolab.labels import FER2013_LABELS
from emolab.models import create_model, list_models, load_model, model_class, model_config
from emolab.models.image_augment import AugmentConfig, batch_augmenter, tta_views
from emolab.pipeline import evaluate_run, run
from emolab.records import LabelSet
from emolab.training import train
from tests.conftest import SHARED, crash_after_first_epoch
from tests.test_cli import emolab

USAGES = ["Training"] * 8 + ["PublicTest", "PrivateTest"]
REFERENCE_MIN_ACCURACY = 0.40


def face(label: int, rng: np.random.Generator) -> np.ndarray:
    """Noise with a bright 12x12 patch at a position given by the label."""
    img = rng.integers(0, 90, size=(48, 48))
    r, c = divmod(label, 3)
    img[r * 16: r * 16 + 12, c * 16: c * 16 + 12] = 230
    return img.astype(np.uint8)


def write_fer(folder: Path, n: int = 210, *, gz: bool = False, classes: int = 7, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    lines = ["emotion,pixels,Usage"]
    for i in range(n):
        y = i % classes
        lines.append(f"{y},{' '.join(map(str, face(y, rng).ravel()))},{USAGES[i % len(USAGES)]}")
    folder.mkdir(parents=True, exist_ok=True)
    text = "\n".join(lines) + "\n"
    if gz:
        path = folder / "fer2013.csv.gz"
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path = folder / "fer2013.csv"
        path.write_text(text)
    return path


def fer_config(tmp_path: Path, folder: Path, model: str = "cnn-small", augment: dict | None = None, **train) -> dict:
    section = {"name": model}
    if model_class(model).training == "loop":  # a pretrained reference takes no size keys
        section.update(width=8, hidden_size=32, dropout=0.1, **({"augment": augment} if augment else {}))
    return {
        "data": {"name": "fer2013", "path": str(folder)},
        "model": section,
        "train": {"epochs": 3, "batch_size": 16, "lr": 0.02, "optimizer": "sgd", "scheduler": "onecycle",
                  "warmup_ratio": 0.3, "weight_decay": 0.0, **train},
        "eval": {"timing": False, "batch_size": 32},
        "output": {"dir": str(tmp_path / "runs"), "name": "faces"},
        "seed": 3,
    }


def quiet(_msg: str) -> None:
    pass


# --- data ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_fer2013_csv_splits_by_usage(tmp_path, gz):
    write_fer(tmp_path / "fer", 70, gz=gz)
    ds = load_dataset(config_from_dict({"data": {"name": "fer2013", "path": str(tmp_path / "fer")}}).data)
    assert ds.modality == "image" and ds.labels.names == FER2013_LABELS
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 56, "validation": 7, "test": 7}
    train = ds.split("train")
    assert train.inputs.dtype == np.uint8 and train.inputs.shape == (56, 48, 48)
    assert train.labels[:3].tolist() == [0, 1, 2]  # file order kept
    assert train.inputs[0, 2, 2] == 230  # class 0's patch is top-left


def test_bad_pixel_rows_name_the_line_or_are_skipped_and_counted(tmp_path):
    path = write_fer(tmp_path / "fer", 30)
    lines = path.read_text().splitlines()
    lines[4] = "2,1 2 3,Training"  # too few values, line 5 of the file
    lines[9] = "1," + " ".join(["7"] * 2303 + ["x"]) + ",Training"  # unparseable, line 10
    path.write_text("\n".join(lines) + "\n")
    cfg = config_from_dict({"data": {"name": "fer2013", "path": str(tmp_path / "fer")}})
    with pytest.raises(DataError, match=r"fer2013.csv:5: pixels: 3 values, expected 2304"):
        load_dataset(cfg.data)
    lines[4] = path.read_text().splitlines()[5]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"fer2013.csv:10: pixels: unparseable value 'x'"):
        load_dataset(cfg.data)
    cfg = config_from_dict({"data": {"name": "fer2013", "path": str(tmp_path / "fer"), "skip_bad_rows": True}})
    ds = load_dataset(cfg.data)
    assert ds.info["skipped_rows"] == 1 and ds.info["skipped_lines"] == [10]
    assert sum(len(s) for s in ds.splits.values()) == 29


def test_fer2013_cli_error_has_no_traceback(tmp_path):
    folder = tmp_path / "fer"
    folder.mkdir()
    (folder / "fer2013.csv").write_text("emotion,pixels,Usage\n9,1 2,Training\n")
    res = emolab("data", "stats", "fer2013", "--path", folder, "--out", tmp_path / "stats", cwd=tmp_path)
    assert res.returncode == 2
    assert "fer2013.csv:2: emotion '9' is not a class id 0..6" in res.stderr
    assert "Traceback" not in res.stderr


def test_ferplus_majority_protocol():
    votes = np.array([
        [6, 0, 1, 1, 0, 0, 0, 0, 2, 0],  # single votes dropped: neutral 6 of 8 -> neutral
        [4, 0, 0, 1, 3, 2, 0, 0, 0, 0],  # 4 of 9 is no majority -> dropped
        [0, 0, 0, 0, 0, 0, 0, 0, 6, 4],  # majority "unknown" -> dropped
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 10],  # not a face -> dropped
        [0, 1, 0, 0, 0, 0, 0, 9, 0, 0],  # contempt
        [1, 1, 1, 1, 1, 1, 1, 1, 1, 1],  # only single votes -> dropped
    ])
    keep, top, shares = ferplus_targets(votes)
    assert keep.tolist() == [True, False, False, False, True, False]
    assert top[0] == 0 and top[4] == 7
    assert shares[0].tolist() == [1, 0, 0, 0, 0, 0, 0, 0]
    assert shares[1].sum() == pytest.approx(1.0)


@pytest.mark.parametrize("mode", ["majority", "votes"])
def test_ferplus_loader(tmp_path, mode):
    write_fer(tmp_path / "fer", 20)
    rows = ["Usage,Image name," + ",".join(FERPLUS_COLUMNS)]
    for i in range(20):
        v = [0] * 10
        v[i % 10] = 7
        v[(i + 1) % 8] = 3
        rows.append(f"{USAGES[i % 10]},fer{i:07d}.png," + ",".join(map(str, v)))
    (tmp_path / "fer" / "fer2013new.csv").write_text("\n".join(rows) + "\n")
    cfg = config_from_dict({"data": {"name": "ferplus", "path": str(tmp_path / "fer"), "label_mode": mode}})
    ds = load_dataset(cfg.data)
    assert len(ds.labels) == 8
    assert sum(len(s) for s in ds.splits.values()) == 16  # rows whose majority is unknown / not a face dropped
    assert sum(ds.info["dropped_no_majority"].values()) == 4
    train = ds.split("train")
    assert set(train.labels.tolist()) <= set(range(8))
    if mode == "votes":
        assert np.allclose(train.soft_labels.sum(axis=1), 1.0)
        assert (train.soft_labels.argmax(axis=1) == train.labels).all()
    else:
        assert train.soft_labels is None


def test_ferplus_rows_must_align(tmp_path):
    write_fer(tmp_path / "fer", 20)
    (tmp_path / "fer" / "fer2013new.csv").write_text("Usage,Image name," + ",".join(FERPLUS_COLUMNS) +
                                                     "\nTraining,a.png,10,0,0,0,0,0,0,0,0,0\n")
    cfg = config_from_dict({"data": {"name": "ferplus", "path": str(tmp_path / "fer")}})
    with pytest.raises(DataError, match="has 1 rows but fer2013.csv has 20"):
        load_dataset(cfg.data)


def test_image_folder_layout(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 10), ("test", 3)):
        for k, name in enumerate(("happy", "sad")):
            (tmp_path / split / name).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(face(k, rng)).resize((64, 64)).convert("RGB").save(tmp_path / split / name / f"{i}.png")
    cfg = config_from_dict({"data": {"name": "imagefolder", "path": str(tmp_path), "validation_ratio": 0.2}})
    ds = load_dataset(cfg.data)
    assert ds.labels.names == ("happy", "sad")
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 16, "validation": 4, "test": 6}
    assert ds.split("test").inputs.shape == (6, 48, 48)
    (tmp_path / "test" / "angry").mkdir()
    with pytest.raises(DataError, match="unknown class folder 'angry'"):
        load_dataset(cfg.data)


@pytest.mark.slow  # long end to end (30 s): make test-slow keeps the default run under 10 minutes
@pytest.mark.skipif(not (SHARED / "fer2013" / "fer2013.csv.gz").is_file(), reason="shared FER2013 not found")
def test_shared_fer2013_and_ferplus_sizes():
    fer = load_dataset(config_from_dict({"data": {"name": "fer2013"}}).data)
    assert {k: len(v) for k, v in fer.splits.items()} == {"train": 28556, "validation": 3579, "test": 3573}
    assert np.bincount(fer.split("test").labels).tolist() == [489, 55, 527, 876, 588, 414, 624]
    plus = load_dataset(config_from_dict({"data": {"name": "ferplus"}}).data)
    assert {k: len(v) for k, v in plus.splits.items()} == {"train": 25055, "validation": 3199, "test": 3152}


# --- models and augmentation -------------------------------------------------------------------------


TRAINABLE_FACE_MODELS = sorted(n for n in list_models() if model_class(n).modality == "image"
                               and model_class(n).training == "loop")


def build(name: str, **values):
    """The network of face model ``name`` for FER2013's 7 labels; ``width`` is dropped for models without one."""
    cls = model_class(name)
    owned = {f.name for f in dataclasses.fields(cls.config_class)}
    return cls.build(model_config(name, **{k: v for k, v in values.items() if k in owned}), LabelSet(FER2013_LABELS))


def test_the_face_models_are_registered():
    assert TRAINABLE_FACE_MODELS == ["cnn-small", "mlp", "resnet18-fer", "vgg-fer"]


@pytest.mark.parametrize("arch", TRAINABLE_FACE_MODELS)
def test_every_architecture_maps_faces_to_logits_and_learns(arch):
    torch.manual_seed(0)
    module = build(arch, width=4, hidden_size=16, dropout=0.0)
    rng = np.random.default_rng(0)
    y = torch.arange(14) % 7
    x = torch.from_numpy(np.stack([face(int(k), rng) for k in y])).unsqueeze(1).float() / 255
    opt = torch.optim.Adam(module.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        loss = torch.nn.functional.cross_entropy(module(pixels=x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert module(pixels=x).shape == (14, 7)
    assert losses[-1] < losses[0]


@pytest.mark.skipif(not (SHARED / "fer2013" / "fer2013.csv.gz").is_file(), reason="shared FER2013 not found")
def test_pretrained_reference_loads_the_package_weights_and_reads_real_faces(tmp_path):
    """The what-the-face package's weights load into emolab's copy of its network (strict: every name and
    shape), score far above the majority class (0.245) on PrivateTest, and save/load as a run's model."""
    fer = load_dataset(config_from_dict({"data": {"name": "fer2013"}}).data)
    model = create_model(model_config("what-the-face"), LabelSet(FER2013_LABELS))
    write_fer(tmp_path / "fer")
    cfg = config_from_dict(fer_config(tmp_path, tmp_path / "fer", model="what-the-face"))
    history = train(model, load_dataset(cfg.data), cfg)  # loads the weights, trains nothing
    assert len(history) == 1 and 0 <= history[0].validation["accuracy"] <= 1
    test = fer.split("test")
    probs = model.predict_proba(test.inputs[:1000])
    assert (probs.argmax(1) == test.labels[:1000]).mean() > REFERENCE_MIN_ACCURACY
    model.save(tmp_path / "saved")
    assert np.allclose(load_model(tmp_path / "saved").predict_proba(test.inputs[:50]), probs[:50], atol=1e-6)
    with pytest.raises(EmolabError, match="FER2013's labels"):
        create_model(model_config("what-the-face"), LabelSet(FERPLUS_LABELS))


def test_unknown_architecture_lists_the_valid_ones():
    with pytest.raises(Exception, match="vgg-fer"):
        build("vgg-19")


def test_vgg_depths_set_the_conv_layers_per_stage():
    convs = lambda depths: sum(isinstance(m, torch.nn.Conv2d) for m in  # noqa: E731
                               build("vgg-fer", width=8, depths=depths).modules())
    assert convs(None) == 8 and convs([1, 2, 2, 2]) == 7 and convs([1, 1, 3, 1]) == 6
    net = build("vgg-fer", width=8, depths=[1, 2, 2, 2])
    assert net(torch.rand(2, 1, 48, 48)).shape == (2, 7)
    with pytest.raises(EmolabError, match="model.depths"):
        build("vgg-fer", depths=[2, 2, 0, 2])



def test_crop_size_sees_the_central_window_and_ten_crop_takes_the_classic_crops():
    net = build("vgg-fer", width=8, depths=[1, 1, 2, 2], crop_size=40).eval()
    seen = []
    net.net.register_forward_pre_hook(lambda _m, args: seen.append(args[0] * net.normalise.std + net.normalise.mean))
    x = torch.rand(2, 1, 48, 48)
    for view in tta_views(x, "ten-crop", crop=40):
        net(pixels=view)
    crops = [x[..., r:r + 40, c:c + 40] for r, c in ((4, 4), (0, 0), (0, 8), (8, 0), (8, 8))]  # centre, corners
    expected = crops + [c.flip(-1) for c in crops]
    assert len(seen) == 10 and all(torch.allclose(s, e, atol=1e-6) for s, e in zip(seen, expected))
    seen.clear()
    for view in tta_views(x, "dense", crop=40):  # every crop position on a 2-pixel grid, and the mirrors
        net(pixels=view)
    crops = [x[..., r:r + 40, c:c + 40] for r in range(0, 9, 2) for c in range(0, 9, 2)]
    expected = crops + [c.flip(-1) for c in crops]
    assert len(seen) == 50 and all(torch.allclose(s, e, atol=1e-6) for s, e in zip(seen, expected))
    # odd sides keep their last row and column through the max-pools (40 -> 20 -> 10 -> 5 -> 3)
    feats = net.net[:-2](torch.rand(1, 1, 40, 40))
    assert feats.shape[-2:] == (3, 3)
    assert build("mlp", hidden_size=8, crop_size=40)(pixels=x).shape == (2, 7)
    for bad in (60, 4, 40.5, True):
        with pytest.raises(EmolabError, match="model.crop_size"):
            build("vgg-fer", crop_size=bad)


@pytest.mark.parametrize("model", ["cnn-small", "resnet18-fer", "mlp"])
def test_channels_last_is_the_conv_models_own_key_and_the_old_train_key_means_the_same(model):
    sizes = {"hidden_size": 8} if model == "mlp" else {"width": 4}
    for where, value in (("model", False), ("train", False), ("model", True), ("train", True), (None, None)):
        raw = {"model": {"name": model, **sizes}}
        if where == "model" and model != "mlp":  # the MLP has no convolutions and no such key
            raw["model"]["channels_last"] = value
        elif where == "train":  # a config or a run written before the key moved to the model
            raw["train"] = {"channels_last": value}
        cfg = config_from_dict(raw)
        net = create_model(cfg.model, LabelSet(FER2013_LABELS))
        net.prepare_training(cfg)
        expected = model != "mlp" and value is not False  # on by default
        assert net.module.channels_last is expected, (where, value)


def test_a_cropping_model_saves_and_exports_with_its_crop(tmp_path):
    from emolab.compression.quantize import export_onnx

    model = create_model(model_config("vgg-fer", width=8, depths=[1, 1, 1, 1], hidden_size=16, crop_size=40),
                         LabelSet(FER2013_LABELS))
    model.tta = "ten-crop"
    faces = np.random.default_rng(0).integers(0, 255, size=(5, 48, 48), dtype=np.uint8)
    reference = model.predict_proba(faces)
    model.save(tmp_path / "saved")
    assert np.allclose(load_model(tmp_path / "saved").predict_proba(faces), reference, atol=1e-6)
    export_onnx(model, tmp_path / "onnx", source="test")
    assert np.allclose(load_model(tmp_path / "onnx").predict_proba(faces, batch_size=2), reference, atol=1e-5)
    small = create_model(model_config("cnn-small", width=8, hidden_size=16, crop_size=40), LabelSet(FER2013_LABELS))
    with pytest.raises(EmolabError, match="cannot be exported to ONNX"):  # 5x5 -> 3x3 pooling: a clear error
        export_onnx(small, tmp_path / "onnx-small", source="test")

def test_batch_augmentation_is_seeded_and_shape_preserving():
    x = torch.rand(8, 1, 48, 48)
    cfg = AugmentConfig(hflip=True, rotation=15, shift=0.1, scale=0.1, random_erasing=0.5)
    a = batch_augmenter(cfg, seed=1)({"pixels": x})["pixels"]
    b = batch_augmenter(cfg, seed=1)({"pixels": x})["pixels"]
    c = batch_augmenter(cfg, seed=2)({"pixels": x})["pixels"]
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c)
    assert 0.0 <= float(a.min()) and float(a.max()) <= 1.0
    assert batch_augmenter(AugmentConfig(), seed=1) is None
    flips = batch_augmenter(AugmentConfig(hflip=True), seed=0)({"pixels": x})["pixels"]
    for orig, out in zip(x, flips):  # exact: each image is itself or its mirror
        assert torch.equal(out, orig) or torch.equal(out, orig.flip(-1))
    assert any(not torch.equal(o, i) for o, i in zip(flips, x))
    shifts = batch_augmenter(AugmentConfig(shift=0.1), seed=0)({"pixels": x})["pixels"]
    padded = torch.nn.functional.pad(x, (5, 5, 5, 5), mode="replicate")
    for orig, out in zip(padded, shifts):  # exact: each image is a 48x48 crop of its border-padded self
        crops = [orig[..., r:r + 48, c:c + 48] for r in range(11) for c in range(11)]
        assert any(torch.allclose(out, crop, atol=1e-5) for crop in crops)
    assert not torch.allclose(shifts, x)


def test_tta_views():
    x = torch.rand(2, 1, 48, 48)
    assert len(tta_views(x, "none")) == 1
    assert torch.equal(tta_views(x, "flip")[1], x.flip(-1))
    views = tta_views(x, "ten-crop")
    assert len(views) == 10 and all(v.shape == x.shape for v in views)
    assert torch.equal(views[0], x)  # the centre crop of the padded image is the image
    dense = tta_views(x, "dense")  # no crop: 3 x 3 positions in the image padded by 2, and mirrors
    assert len(dense) == 18 and torch.equal(dense[4], x) and torch.equal(dense[13], x.flip(-1))
    assert len(tta_views(x, "dense", crop=41)) == 2 * 4 * 4  # odd margins keep the far edge: 0, 2, 4, 6
    with pytest.raises(EmolabError, match="eval.tta"):
        tta_views(x, "twenty-crop")


# --- training, evaluation, report ---------------------------------------------------------------------


def test_fer_run_end_to_end_with_augmentation_and_ten_crop(tmp_path):
    write_fer(tmp_path / "fer", 210)
    raw = fer_config(tmp_path, tmp_path / "fer", epochs=6, early_stopping_metric="cross_entropy",
                     augment={"hflip": False, "shift": 0.05, "random_erasing": 0.2}, class_weights=True)
    raw["eval"]["tta"] = "ten-crop"
    out = run(config_from_dict(raw), say=quiet)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] >= 0.8  # the patch position is easy to learn
    assert "disgust" in metrics["test"]["per_class"]
    assert np.array(metrics["test"]["confusion_matrix"]).shape == (7, 7)
    for f in ("plots/confusion_test.png", "plots/learning_curves.png", "metrics.md", "predictions_test.npz",
              "model/model.safetensors", "report.html", "report.md", "analysis/errors.csv"):
        assert (out / f).is_file(), f
    card = json.loads((out / "model" / "emolab_model.json").read_text())
    assert card["model"] == "cnn-small" and card["tta"] == "ten-crop"
    lrs = [json.loads(x)["lr"] for x in (out / "steps.jsonl").read_text().splitlines()]
    assert lrs[0] < max(lrs) and lrs[-1] < 0.01 * max(lrs)  # one-cycle: up, then down to ~0
    again = evaluate_run(out, "test", precision="fp32", say=quiet)  # the saved model, loaded back
    assert again["accuracy"] == pytest.approx(metrics["test"]["accuracy"])
    dense = evaluate_run(out, "test", tta="dense", say=quiet)  # another averaging, no retraining
    assert (out / "evaluations" / "test-fp32-tta-dense.json").is_file()
    assert json.loads((out / "evaluations" / "test-fp32-tta-dense.json").read_text())["accuracy"] == dense["accuracy"]
    with pytest.raises(EmolabError, match="--tta"):
        evaluate_run(out, "test", tta="twenty-crop", say=quiet)


def test_soft_vote_targets_train(tmp_path):
    from emolab.data.images import FERPLUS_LABELS
    from emolab.models import create_model
    from emolab.records import Dataset, LabelSet, Split

    rng = np.random.default_rng(0)
    y = np.arange(64) % 8
    images = np.stack([face(int(k % 7), rng) for k in y])
    soft = np.full((64, 8), 0.02)
    soft[np.arange(64), y] = 0.86
    split = Split(np.arange(64).astype(str), images, y, soft / soft.sum(1, keepdims=True))
    ds = Dataset("toy", LabelSet(FERPLUS_LABELS), {"train": split, "validation": split}, "image")
    cfg = config_from_dict(fer_config(tmp_path, tmp_path, epochs=2))
    model = create_model(cfg.model, ds.labels)
    history = train(model, ds, cfg)
    assert len(history) == 2 and np.isfinite(history[-1].train["loss"])


def test_sanity_check_for_a_cnn(tmp_path):
    from emolab.sanity import sanity_check

    write_fer(tmp_path / "fer", 140)
    cfg = config_from_dict(fer_config(tmp_path, tmp_path / "fer", lr=0.01, optimizer="adamw"))
    result = sanity_check(cfg, n=20, epochs=25, say=quiet)
    assert result["passed"] and result["train_accuracy"] == 1.0


def test_image_run_report_shows_faces_instead_of_highlighted_text(tmp_path):
    import re

    from tests.test_analysis_report import SECTIONS, _sections

    write_fer(tmp_path / "fer", 280, seed=1)
    raw = fer_config(tmp_path, tmp_path / "fer", epochs=1, lr=0.002)  # undertrained: plenty of errors
    raw["eval"]["timing"] = True
    raw["eval"]["timing_examples"] = 10
    out = run(config_from_dict(raw), say=quiet)
    analysis = json.loads((out / "analysis" / "analysis.json").read_text())
    assert analysis["modality"] == "image" and "low_contrast" in analysis["tags"]
    assert analysis["baseline"]["model"].startswith("logistic regression on 24x24")
    for f in ("analysis/misclassified_faces.png", "analysis/occlusion_faces.png", "plots/sample_faces.png"):
        assert (out / f).is_file(), f
    md = (out / "report.md").read_text()
    sections = _sections(md)
    for name in SECTIONS + ["Why the faces were misread", "Base vs fine-tuned"]:
        assert sections.get(name), name
    assert "Why the texts were misread" not in sections
    assert "48x48 face images" in sections["Task"]
    assert len([ln for ln in sections["Misclassified test samples"].splitlines() if re.match(r"\| \d+ \|", ln)]) >= 10
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 6 and not re.search(r'src="(?!data:)', html)
    # written inside <name>.partial, the report still names the run by its final name (title, commands)
    assert md.startswith(f"# emolab report: {out.name}\n") and ".partial" not in md
    assert "on a CPU budget" in md and "configs/fer2013-resnet18-gpu.yaml" in md
    # a run trained on a GPU is not told to go and use a GPU
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["hardware"]["gpu"] = "NVIDIA H100 80GB HBM3"
    (out / "manifest.json").write_text(json.dumps(manifest))
    from emolab.report import write_report

    _html, md_path = write_report(out, say=quiet)
    md = md_path.read_text()
    assert "on one NVIDIA H100 80GB HBM3" in md and "CPU budget" not in md and "resnet18-gpu.yaml" not in md


def test_occlusion_map_finds_the_informative_patch():
    from emolab.analysis.faces import occlusion_map

    img = np.full((48, 48), 60, np.uint8)
    img[8:16, 8:16] = 250

    def predict_proba(x):  # "class 1" iff the top-left patch is bright
        p1 = 1 / (1 + np.exp(-(x[:, 8:16, 8:16].astype(float).mean(axis=(1, 2)) - 120) / 20))
        return np.stack([1 - p1, p1], axis=1)

    m = occlusion_map(predict_proba, img, 1)
    assert m.shape == (48, 48)
    assert np.unravel_index(m.argmax(), m.shape)[0] < 20 and m[40:, 40:].max() == pytest.approx(0.0)


def test_the_pixel_baseline_is_a_registered_model_that_saves_and_loads(tmp_path):
    """``pixel-logreg`` is the logistic regression on 2x2-averaged, standardised pixels that face CNNs are compared
    with: the same scikit-learn estimator with the same settings, behind the model interface."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    write_fer(tmp_path / "fer", 140)
    cfg = config_from_dict(fer_config(tmp_path, tmp_path / "fer", model="pixel-logreg"))
    ds = load_dataset(cfg.data, cfg.seed)
    model = create_model(cfg.model, ds.labels, ds)
    assert (model.modality, model.family, model.training) == ("image", "classical", "one-pass")
    history = model.fit(ds, cfg)
    assert len(history) == 1 and 0 <= history[0].validation["accuracy"] <= 1
    train, test = ds.split("train"), ds.split("test")
    pooled = lambda x: x.reshape(len(x), 24, 2, 24, 2).mean(axis=(2, 4)).reshape(len(x), -1)  # noqa: E731
    direct = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300, C=0.1)).fit(pooled(train.inputs),
                                                                                        train.labels)
    probs = model.predict_proba(test.inputs)
    assert np.allclose(probs[:, direct.classes_], direct.predict_proba(pooled(test.inputs)))
    assert probs.shape == (len(test), 7) and np.allclose(probs.sum(1), 1)
    model.save(tmp_path / "saved")
    again = load_model(tmp_path / "saved")
    assert np.array_equal(again.predict_proba(test.inputs), probs) and again.card().input["side"] == 48
    assert model.fit_notes() == []
    capped = create_model(model_config("pixel-logreg", max_iter=1), ds.labels, ds)
    capped.fit(ds, cfg)
    assert capped.fit_notes() == ["lbfgs stopped at its 1-iteration cap before converging"]


def test_a_pixel_logreg_run_is_analysed_without_a_baseline_of_itself(tmp_path):
    write_fer(tmp_path / "fer", 140)
    out = run(config_from_dict(fer_config(tmp_path, tmp_path / "fer", model="pixel-logreg")), say=quiet)
    analysis = json.loads((out / "analysis" / "analysis.json").read_text())
    assert analysis["modality"] == "image" and "baseline" not in analysis  # a classical run is its own baseline
    assert (out / "model" / "pixels.skops").is_file()
    assert json.loads((out / "model" / "emolab_model.json").read_text())["family"] == "classical"


def test_predict_cli_classifies_image_files_and_folders(tmp_path):
    from PIL import Image

    write_fer(tmp_path / "fer", 210)
    out = run(config_from_dict(fer_config(tmp_path, tmp_path / "fer", epochs=4)), say=quiet)
    rng = np.random.default_rng(5)
    (tmp_path / "faces").mkdir()
    for k in (0, 4):
        Image.fromarray(face(k, rng)).resize((96, 96)).save(tmp_path / "faces" / f"class{k}.png")
    res = emolab("predict", out, tmp_path / "faces", "--output", tmp_path / "p.csv", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    import pandas as pd

    table = pd.read_csv(tmp_path / "p.csv")
    assert len(table) == 2 and table["input"].str.endswith(".png").all()
    assert {c for c in table.columns if c.startswith("p_")} == {f"p_{n}" for n in FER2013_LABELS}
    res = emolab("predict", out, tmp_path / "missing.png", cwd=tmp_path)
    assert res.returncode == 2 and "image not found" in res.stderr
    res = emolab("predict", out, tmp_path / "faces" / "class0.png", cwd=tmp_path)  # the table names its column
    assert res.returncode == 0 and "image" in res.stdout.splitlines()[1] and "text" not in res.stdout


def test_an_image_size_other_than_48_flows_to_the_model_and_to_predict(tmp_path):
    from PIL import Image

    from emolab.models import model_card

    rng = np.random.default_rng(0)
    for split, n in (("train", 24), ("test", 6)):
        for k, name in enumerate(("happy", "sad")):
            (tmp_path / "faces" / split / name).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(face(3 * k, rng)).save(tmp_path / "faces" / split / name / f"{i}.png")
    raw = fer_config(tmp_path, tmp_path / "faces", epochs=2)
    raw["data"] = {"name": "imagefolder", "path": str(tmp_path / "faces"), "image_size": 32}
    out = run(config_from_dict(raw), say=quiet)
    card = model_card(out)
    assert card.input["side"] == 32 and card.image
    probs = load_model(out).predict_proba(np.zeros((2, 32, 32), np.uint8))
    assert probs.shape == (2, 2)
    res = emolab("predict", out, tmp_path / "faces" / "test" / "sad" / "0.png", cwd=tmp_path)  # a 48x48 file
    assert res.returncode == 0, res.stderr
    assert "sad" in res.stdout or "happy" in res.stdout


def test_resume_of_an_augmented_cnn_ends_with_the_same_weights(tmp_path):
    from safetensors.torch import load_file

    write_fer(tmp_path / "fer", 140)
    base = fer_config(tmp_path, tmp_path / "fer", epochs=3, ema_decay=0.9,  # the average is resumed too
                      augment={"hflip": True, "rotation": 10, "random_erasing": 0.5})
    straight = run(config_from_dict({**base, "output": {"dir": str(tmp_path / "a"), "name": "r"}}), say=quiet)

    cfg = config_from_dict({**base, "output": {"dir": str(tmp_path / "b"), "name": "r"}})
    with pytest.raises(KeyboardInterrupt):
        run(cfg, say=crash_after_first_epoch)
    resumed = run(cfg, resume=True, say=quiet)
    a = load_file(str(straight / "model" / "model.safetensors"))
    b = load_file(str(resumed / "model" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_ema_weights_are_the_moving_average_of_every_step(tmp_path):
    from safetensors.torch import load_file

    write_fer(tmp_path / "fer", 140)

    def weights(steps: int, **train) -> dict:
        cfg = fer_config(tmp_path, tmp_path / "fer", epochs=1, max_steps=steps, scheduler="constant",
                         warmup_ratio=0.0, **train)
        cfg["eval"]["report"] = False
        cfg["output"] = {"dir": str(tmp_path / "runs"), "name": f"s{steps}-{train.get('ema_decay')}"}
        return load_file(str(run(config_from_dict(cfg), say=quiet) / "model" / "model.safetensors"))

    plain = [weights(k) for k in (1, 2, 3)]  # the weights after each of the first three steps
    ema = weights(3, ema_decay=0.8)
    floats = [k for k in ema if ema[k].is_floating_point()]  # parameters and batch-norm running statistics
    assert any(k.endswith("running_var") for k in floats)
    for k in floats:
        expected = plain[0][k]
        for w in plain[1:]:
            expected = 0.8 * expected + 0.2 * w[k]
        assert torch.allclose(ema[k], expected, atol=1e-6), k
    assert not all(torch.allclose(ema[k], plain[2][k]) for k in floats)
