"""Faces in the wild: photos go through face detection (OpenCV's Haar cascade from the opencv-python-headless
4.x wheel), one row per face, a row for a photo without a face, and crops framed as FER2013 frames faces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from emolab.data.images import FER2013_LABELS
from emolab.errors import DataError
from emolab.faces.detectors import Face, create_detector, list_detectors
from emolab.faces.photos import fer_crop, looks_cropped, read_photo
from emolab.models import create_model, model_config
from emolab.pipeline import predict_photos
from emolab.records import LabelSet
from tests.test_cli import emolab


def grace_hopper() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg")


@pytest.fixture(scope="module")
def face_model(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("photos") / "model"
    create_model(model_config("cnn-small", width=4, hidden_size=8), LabelSet(FER2013_LABELS)).save(folder)
    return folder


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """The packaged real photos, a two-face scene made from Grace Hopper's face, a faceless photo, a crop."""
    import skimage.data

    root = tmp_path_factory.mktemp("pics")
    Image.fromarray(skimage.data.astronaut()).save(root / "astronaut.png")
    hopper = Image.open(grace_hopper()).convert("RGB")
    face = hopper.crop((120, 70, 410, 360))  # her head with some margin
    scene = Image.new("RGB", (900, 420), (70, 90, 120))
    scene.paste(face, (40, 60))
    scene.paste(face.transpose(Image.FLIP_LEFT_RIGHT).resize((240, 240)), (600, 100))
    scene.save(root / "two.jpg")
    ramp = np.tile(np.linspace(0, 255, 640, dtype=np.uint8), (480, 1))
    Image.fromarray(ramp).save(root / "empty.png")
    Image.fromarray(np.asarray(hopper.convert("L").crop((155, 105, 377, 327)).resize((48, 48)))).save(root / "crop.png")
    return root


def test_the_detector_registry_and_its_measured_margin():
    assert "haar" in list_detectors()
    assert create_detector("haar").margin == pytest.approx(0.05, abs=0.01)  # benchmarks/results/face-framing.md
    with pytest.raises(Exception, match="unknown face detector 'haaar'"):
        create_detector("haaar")


@pytest.mark.parametrize("name", ["grace_hopper", "astronaut"])
def test_each_packaged_photo_has_exactly_one_face(name, photos, face_model, tmp_path):
    path = grace_hopper() if name == "grace_hopper" else photos / "astronaut.png"
    rows, names = predict_photos(face_model, [str(path)], annotate_dir=tmp_path, say=lambda _m: None)
    assert len(rows) == 1 and rows[0].face == 0 and rows[0].detected
    box = rows[0].photo_box()
    width, height = Image.open(path).size
    assert 0 <= box["xmin"] < box["xmax"] <= width and 0 <= box["ymin"] < box["ymax"] <= height
    assert 0.1 < (box["xmax"] - box["xmin"]) / width < 0.7  # a face, not the whole frame
    assert rows[0].label in names and rows[0].probs.sum() == pytest.approx(1.0)
    assert (tmp_path / f"{path.stem}.annotated.png").is_file()


def test_two_faces_give_two_rows_and_a_faceless_photo_a_row_that_says_so(photos, face_model, tmp_path):
    out = tmp_path / "rows.csv"
    res = emolab("predict", face_model, photos / "two.jpg", photos / "empty.png", "--output", out, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "2 image(s), 2 face(s), 1 without a face found" in res.stdout
    table = pd.read_csv(out)
    two = table[table["input"].str.endswith("two.jpg")]
    assert list(two["face"]) == [0, 1] and (two["xmax"] > two["xmin"]).all()
    assert two.iloc[0]["xmax"] < 450 and two.iloc[1]["xmin"] > 450  # the larger (left) face first
    empty = table[table["input"].str.endswith("empty.png")]
    assert len(empty) == 1 and empty["face"].isna().all() and empty.iloc[0]["label"] == "(no face found)"
    assert empty[[f"p_{n}" for n in FER2013_LABELS]].isna().all(axis=None)


def test_a_cropped_face_skips_detection_and_no_detect_takes_images_whole(photos, face_model):
    rows, _ = predict_photos(face_model, [str(photos / "crop.png")], say=lambda _m: None)
    assert len(rows) == 1 and not rows[0].detected and rows[0].box is None
    whole, _ = predict_photos(face_model, [str(photos / "two.jpg")], detect=False, say=lambda _m: None)
    assert len(whole) == 1 and not whole[0].detected
    assert looks_cropped(np.zeros((48, 48)), 48) and not looks_cropped(np.zeros((480, 640)), 48)


def test_min_face_skips_small_faces(photos, face_model):
    rows, _ = predict_photos(face_model, [str(photos / "two.jpg")], min_face=260, say=lambda _m: None)
    assert [r.face for r in rows] == [0]  # only the 290-pixel face is large enough


def test_crops_are_square_around_the_box_with_edges_replicated():
    gray = np.arange(100 * 100, dtype=np.uint32).reshape(100, 100).astype(np.uint8)
    crop = fer_crop(gray, Face(80, 80, 100, 100, 1.0), 0.5, 30)  # runs past the corner
    assert crop.shape == (30, 30)
    assert np.array_equal(fer_crop(gray, Face(10, 20, 58, 68, 1.0), 0.0, 48), gray[20:68, 10:58])


def test_exif_orientation_is_applied_and_a_corrupt_photo_names_the_file(tmp_path):
    image = Image.new("L", (60, 30), 0)
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    image.save(tmp_path / "rotated.jpg", exif=exif)
    gray, _rgb, scale = read_photo(tmp_path / "rotated.jpg")
    assert gray.shape == (60, 30) and scale == 1.0
    big = tmp_path / "big.jpg"
    Image.new("RGB", (6000, 3000), (9, 9, 9)).save(big)
    gray, _rgb, scale = read_photo(big)
    assert max(gray.shape) <= 2048 and scale == pytest.approx(6000 / max(gray.shape))
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(DataError, match="broken.jpg: not a readable image"):
        read_photo(tmp_path / "broken.jpg")
