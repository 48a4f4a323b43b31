"""Faces in the wild: photos go through face detection (MTCNN with facenet-pytorch's packaged weights, or
OpenCV's Haar cascade from the opencv-python-headless 4.x wheel), one row per face, a row for a photo without
a face, and crops framed as FER2013 frames faces (optionally aligned on the eyes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from emolab.errors import DataError
from emolab.faces.detectors import Face, create_detector, list_detectors
from emolab.faces.photos import fer_crop, looks_cropped, read_photo
from emolab.labels import FER2013_LABELS
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


def test_the_detector_registry_and_its_measured_margins():
    from emolab.faces.detectors import DEFAULT_DETECTOR, register_detector

    assert {"haar", "mtcnn"} <= set(list_detectors()) and DEFAULT_DETECTOR == "mtcnn"
    assert create_detector("haar").margin == pytest.approx(0.03, abs=0.01)  # benchmarks/results/face-framing.md
    assert create_detector("mtcnn").margin == pytest.approx(-0.06, abs=0.01)
    assert create_detector("mtcnn").landmarks and not create_detector("haar").landmarks
    with pytest.raises(Exception, match="unknown face detector 'haaar'"):
        create_detector("haaar")
    with pytest.raises(ValueError, match="already registered"):
        register_detector("haar")(type("Other", (), {}))


def test_mtcnn_without_its_weights_says_how_to_install_them(monkeypatch):
    import importlib.util

    from emolab.errors import EmolabError
    from emolab.faces import mtcnn

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    mtcnn._onnx_nets.cache_clear()
    with pytest.raises(EmolabError, match="facenet-pytorch") as err:
        create_detector("mtcnn")
    assert "--no-deps" in err.value.hint


def test_nms_keeps_the_best_of_overlapping_boxes():
    from emolab.faces.mtcnn import nms

    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 4, 4]], float)
    scores = np.array([0.8, 0.9, 0.5, 0.7])
    assert list(nms(boxes, scores, 0.5)) == [1, 3, 2]
    assert list(nms(boxes, scores, 0.5, mode="min")) == [1, 2]  # the small box lies inside the first


@pytest.mark.parametrize("detector", ["mtcnn", "haar"])
@pytest.mark.parametrize("name", ["grace_hopper", "astronaut"])
def test_each_packaged_photo_has_exactly_one_face(name, detector, photos, face_model, tmp_path):
    path = grace_hopper() if name == "grace_hopper" else photos / "astronaut.png"
    rows, names = predict_photos(face_model, [str(path)], detector=detector, annotate_dir=tmp_path,
                                 say=lambda _m: None)
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


def test_the_photo_table_shows_each_whole_path(photos, face_model, tmp_path):
    """On an 80-column terminal, paths that share a long prefix are wrapped, not cut to that same prefix."""
    import os
    import shutil
    import subprocess
    import sys

    folder = tmp_path / ("a-folder-with-a-long-name-" * 3) / "faces"
    folder.mkdir(parents=True)
    inputs = [str(shutil.copy(photos / "crop.png", folder / name)) for name in ("first.png", "second.png")]
    env = {**os.environ, "COLUMNS": "80", "TERM": "dumb", "NO_COLOR": "1"}
    res = subprocess.run([sys.executable, "-m", "emolab.cli", "predict", str(face_model), *inputs], cwd=tmp_path,
                         capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    cells: list[str] = []
    for line in res.stdout.splitlines():
        if not line.startswith("│"):
            continue
        image, face = (c.strip() for c in line.split("│")[1:3])
        if face:  # a row starts where the face column has its number; the image cell goes on below it
            cells.append("")
        cells[-1] += image
    assert cells == inputs, res.stdout


def test_a_cropped_face_skips_detection_and_no_detect_takes_images_whole(photos, face_model):
    rows, _ = predict_photos(face_model, [str(photos / "crop.png")], say=lambda _m: None)
    assert len(rows) == 1 and not rows[0].detected and rows[0].box is None
    whole, _ = predict_photos(face_model, [str(photos / "two.jpg")], detect=False, say=lambda _m: None)
    assert len(whole) == 1 and not whole[0].detected
    assert looks_cropped(np.zeros((48, 48)), 48) and not looks_cropped(np.zeros((480, 640)), 48)


@pytest.mark.parametrize("detector", ["mtcnn", "haar"])
def test_min_face_skips_small_faces(detector, photos, face_model):
    both, _ = predict_photos(face_model, [str(photos / "two.jpg")], detector=detector, say=lambda _m: None)
    large, small = (r.box.side for r in both)
    assert small < 0.9 * large  # the second head was pasted at 240 of 290 pixels
    # the cascade's boxes grow with its smallest window (its 186-pixel face is boxed at 228 when looking for
    # 220+), so it is asked for faces as large as the larger head
    min_face = (large + small) // 2 if detector == "mtcnn" else 260
    rows, _ = predict_photos(face_model, [str(photos / "two.jpg")], detector=detector, min_face=min_face,
                             say=lambda _m: None)
    assert [r.face for r in rows] == [0]
    kept, first = rows[0].box, both[0].box  # the same face: its box centred within a tenth of its side
    assert abs(kept.xmin + kept.xmax - first.xmin - first.xmax) / 2 < 0.1 * first.side
    assert abs(kept.ymin + kept.ymax - first.ymin - first.ymax) / 2 < 0.1 * first.side


@pytest.mark.parametrize("detector", ["mtcnn", "haar"])
def test_a_small_face_in_a_large_photo_is_found_down_to_min_face(detector):
    hopper = Image.open(grace_hopper()).convert("RGB").crop((120, 70, 410, 360)).resize((90, 90))
    canvas = Image.new("RGB", (2000, 1500), (70, 90, 120))
    canvas.paste(hopper, (1500, 1100))
    (face,) = create_detector(detector).detect(np.asarray(canvas), min_face=40)
    assert 1500 <= face.xmin < face.xmax <= 1590 and 1100 <= face.ymin < face.ymax <= 1190
    assert create_detector(detector).detect(np.asarray(canvas), min_face=120) == []


def test_mtcnn_landmarks_sit_on_the_face_and_follow_a_turned_photo(photos):
    import cv2

    detector = create_detector("mtcnn")
    rgb = np.asarray(Image.open(grace_hopper()).convert("RGB"))
    (face,) = detector.detect(rgb)
    (lx, ly), (rx, ry), (nx, ny), (mlx, mly), (mrx, mry) = face.landmarks
    assert face.xmin < lx < nx < rx < face.xmax and face.ymin < ly < ny < mly < face.ymax
    assert abs(face.eye_angle()) < 5
    h, w = rgb.shape[:2]
    for degrees in (20, -20):  # the photo turned counter-clockwise: her right eye (image left) drops
        turned = cv2.warpAffine(rgb, cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0), (w, h),
                                borderMode=cv2.BORDER_REPLICATE)
        (face,) = detector.detect(turned)
        assert face.eye_angle() == pytest.approx(-degrees, abs=5)


def test_a_face_cut_by_the_frame_gets_the_box_of_its_visible_part():
    rgb = np.asarray(Image.open(grace_hopper()).convert("RGB"))[:, 200:]  # her face cut at the left edge
    (face,) = create_detector("mtcnn").detect(rgb)
    assert face.xmin == 0 and 0 < face.ymin < face.ymax <= rgb.shape[0] and face.xmax <= rgb.shape[1]


def test_aligned_crops_level_the_eyes():
    gray = np.zeros((200, 200), np.uint8)
    eyes = ((70.0, 80.0), (130.0, 110.0))  # the right eye 30 px lower: turned by 26.6 degrees
    for x, y in eyes:
        gray[int(y) - 2:int(y) + 3, int(x) - 2:int(x) + 3] = 255
    face = Face(40, 40, 160, 160, 1.0, (*eyes, (100, 110), (80, 140), (120, 140)))
    assert face.eye_angle() == pytest.approx(np.degrees(np.arctan2(30, 60)))
    swapped = Face(40, 40, 160, 160, 1.0, (eyes[1], eyes[0], (100, 110), (80, 140), (120, 140)))
    assert swapped.eye_angle() == 0.0  # eyes 153 degrees from level: a landmark error, never turned
    plain = fer_crop(gray, face, 0.0, 120)
    aligned = fer_crop(gray, face, 0.0, 120, align=True)
    assert plain.shape == aligned.shape == (120, 120)
    assert np.array_equal(fer_crop(gray, Face(40, 40, 160, 160, 1.0), 0.0, 120, align=True), plain)  # no landmarks

    def rows_of_dots(image):
        ys, xs = np.nonzero(image > 128)
        left, right = ys[xs < 60], ys[xs >= 60]
        return left.mean(), right.mean()

    left, right = rows_of_dots(plain)
    assert right - left == pytest.approx(30, abs=2)
    left, right = rows_of_dots(aligned)
    assert abs(right - left) < 2  # level after turning


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
    rgb, scale = read_photo(tmp_path / "rotated.jpg")
    assert rgb.shape == (60, 30, 3) and scale == 1.0
    big = tmp_path / "big.jpg"
    Image.new("RGB", (6000, 3000), (9, 9, 9)).save(big)
    rgb, scale = read_photo(big)
    assert max(rgb.shape) <= 2048 and scale == pytest.approx(6000 / max(rgb.shape))
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(DataError, match="broken.jpg: not a readable image"):
        read_photo(tmp_path / "broken.jpg")


def write_clip(path: Path, frames: int = 20, fps: int = 10) -> None:
    """Grace Hopper's head drifting across a 480x360 scene: one face, one track."""
    import cv2

    face = cv2.cvtColor(np.asarray(Image.open(grace_hopper()).convert("RGB").crop((120, 70, 410, 360))
                                   .resize((200, 200))), cv2.COLOR_RGB2BGR)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (480, 360))
    for i in range(frames):
        frame = np.full((360, 480, 3), (120, 90, 70), np.uint8)
        x = 20 + 8 * i
        frame[80:280, x:x + 200] = face
        writer.write(frame)
    writer.release()


def test_a_video_gives_one_track_with_a_row_per_sampled_frame(face_model, tmp_path):
    clip = tmp_path / "clip.mp4"
    write_clip(clip)  # 20 frames at 10 fps: 2 s
    out = tmp_path / "rows.csv"
    res = emolab("predict", face_model, clip, "--fps", "5", "--output", out, "--annotate", tmp_path / "annotated",
                 cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    table = pd.read_csv(out)
    assert list(table["frame"]) == list(range(0, 20, 2))  # every other frame: 10 samples at 5 fps
    assert set(table["track"]) == {0} and table["time_s"].is_monotonic_increasing
    assert (table["xmin"].diff().dropna() > 0).all()  # the box follows the face to the right
    assert np.allclose(table[[f"p_{n}" for n in FER2013_LABELS]].sum(axis=1), 1.0, atol=1e-5)
    assert (tmp_path / "rows.timeline.png").is_file()
    annotated = tmp_path / "annotated" / "clip.annotated.mp4"
    assert probe_video(annotated) == ("h264", "yuv420p", 480, 360, 10, pytest.approx(2.0))
    data = annotated.read_bytes()
    assert 0 < data.index(b"moov") < data.index(b"mdat")  # +faststart: a browser can play it while it loads
    assert [p.name for p in annotated.parent.iterdir()] == ["clip.annotated.mp4"]  # no temporary file left
    bar = res.stderr.replace("\r", "\n").splitlines()
    assert any("100%" in line and "10/10" in line for line in bar), res.stderr  # sampled frames, to the end


def test_with_annotate_alone_a_videos_csv_and_timeline_go_into_that_folder(face_model, tmp_path):
    clip = tmp_path / "clips" / "clip.mp4"
    clip.parent.mkdir()
    write_clip(clip, frames=6)
    (tmp_path / "cwd").mkdir()
    res = emolab("predict", face_model, clip, "--annotate", tmp_path / "annotated", "--detector", "haar",
                 cwd=tmp_path / "cwd")
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in (tmp_path / "annotated").iterdir()) == [
        "clip.annotated.mp4", "clip.emotions.csv", "clip.emotions.timeline.png"]
    assert [p.name for p in clip.parent.iterdir()] == ["clip.mp4"] and not list((tmp_path / "cwd").iterdir())


def probe_video(path: Path) -> tuple[str, str, int, int, int, float]:
    """(codec, pixel format, width, height, frames decoded, duration in s) as FFmpeg (PyAV) reads the file."""
    av = pytest.importorskip("av")
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        return (stream.codec_context.name, stream.codec_context.pix_fmt, stream.width, stream.height, frames,
                float(stream.duration * stream.time_base))


def test_the_annotated_video_is_h264_with_even_sides_and_its_frame_rate(tmp_path):
    from emolab.faces.video import AnnotatedVideo

    video = AnnotatedVideo(tmp_path / "odd.mp4", 7.5, 101, 61)  # yuv420p needs even sides
    for i in range(6):
        frame = np.zeros((61, 101, 3), np.uint8)
        frame[:, 10 * i:10 * i + 10] = (0, 0, 255)
        video.write(frame)
    assert not (tmp_path / "odd.mp4").exists()  # only the temporary file until it is complete
    video.finish()
    assert probe_video(tmp_path / "odd.mp4") == ("h264", "yuv420p", 102, 62, 6, pytest.approx(6 / 7.5))
    assert [p.name for p in tmp_path.iterdir()] == ["odd.mp4"]


def test_without_pyav_the_annotated_video_falls_back_to_mp4v_with_a_warning(tmp_path, monkeypatch):
    from emolab.faces import video as video_module

    monkeypatch.setattr(video_module, "h264_available", lambda: False)
    with pytest.warns(UserWarning, match="pip install av"):
        video = video_module.AnnotatedVideo(tmp_path / "old.mp4", 5, 64, 48)
    for _ in range(4):
        video.write(np.full((48, 64, 3), 128, np.uint8))
    video.finish()
    assert probe_video(tmp_path / "old.mp4")[:5] == ("mpeg4", "yuv420p", 64, 48, 4)  # MPEG-4 Part 2 (mp4v)


def test_an_interrupted_video_leaves_no_annotated_file(face_model, tmp_path):
    from emolab.faces.video import predict_video
    from emolab.models import load_model

    class FailsOnThirdFrame:  # the real Haar detector, then an error as a crash or Ctrl-C would arrive
        def __init__(self):
            self.inner, self.calls = create_detector("haar"), 0

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def detect(self, image, min_face=24):
            self.calls += 1
            if self.calls == 3:
                raise RuntimeError("interrupted")
            return self.inner.detect(image, min_face)

    clip = tmp_path / "clip.mp4"
    write_clip(clip)
    out = tmp_path / "annotated"
    detector = FailsOnThirdFrame()
    with pytest.raises(RuntimeError, match="interrupted"):
        predict_video(load_model(face_model), 48, clip, detector, fps=5, annotate=out / "clip.annotated.mp4",
                      progress=False)
    assert detector.calls == 3 and list(out.iterdir()) == []  # neither the final name nor a temporary file


@pytest.mark.slow
def test_chromium_plays_the_annotated_video(face_model, tmp_path):
    """Debian's chromium (no proprietary-codec restriction there) decodes the H.264 file in a <video>."""
    from tests.test_report_browser import chromium_page

    clip = tmp_path / "clip.mp4"
    write_clip(clip, frames=30)  # 3 s at 10 fps, sampled at 5 fps: 15 frames, 3 s
    res = emolab("predict", face_model, clip, "--annotate", tmp_path / "annotated", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    page_file = tmp_path / "annotated" / "play.html"
    page_file.write_text('<video id="v" src="clip.annotated.mp4" muted preload="auto"></video>')
    with chromium_page(640, 480) as (page, errors):
        page.goto(page_file.resolve().as_uri())
        page.wait_for_function("(v => v.readyState >= 2 || v.error)(document.getElementById('v'))", timeout=20000)
        state = page.evaluate("(v => ({ready: v.readyState, width: v.videoWidth, height: v.videoHeight, duration: "
                              "v.duration, error: v.error && v.error.message}))(document.getElementById('v'))")
    assert state["error"] is None and state["ready"] >= 2, state
    assert (state["width"], state["height"]) == (480, 360)
    assert state["duration"] == pytest.approx(3.0, abs=0.05)
    assert errors == []


def test_the_tracker_keeps_identities_and_smooths():
    from emolab.faces.video import IouTracker

    tracker = IouTracker(fps=5)
    assert tracker.alpha == pytest.approx(0.5) and tracker.max_missed == 5
    fast = IouTracker(fps=25)  # five times the frames: the same seconds of memory and patience
    assert fast.max_missed == 25 and (1 - fast.alpha) ** 5 == pytest.approx(0.5)
    a, b = Face(0, 0, 10, 10, 1.0), Face(100, 0, 110, 10, 1.0)
    first = tracker.update([a, b], np.array([[1.0, 0.0], [0.0, 1.0]]))
    assert [t.id for t, _, _ in first] == [0, 1]
    moved = tracker.update([Face(101, 1, 111, 11, 1.0), Face(1, 1, 11, 11, 1.0)], np.array([[1.0, 0.0], [0.0, 1.0]]))
    assert [(t.id, f.xmin) for t, f, _ in moved] == [(0, 1), (1, 101)]  # matched by overlap, not by order
    assert np.allclose(moved[0][0].smoothed, [0.5, 0.5])  # the average of the two frames


def test_a_corrupt_video_names_the_file(face_model, tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42 not a video")
    res = emolab("predict", face_model, bad, cwd=tmp_path)
    assert res.returncode == 2 and "broken.mp4" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.slow  # long end to end (30 s): make test-slow keeps the default run under 10 minutes
def test_evaluation_in_the_wild_reports_detection_and_accuracy_on_labelled_photos(face_model, photos, tmp_path):
    import json
    import shutil

    from emolab.config import config_from_dict, dump_config

    run = tmp_path / "run"
    shutil.copytree(face_model, run / "model")
    (run / "config.yaml").write_text(dump_config(config_from_dict({"data": {"name": "fer2013"},
                                                                   "model": {"name": "cnn-small"}})))
    folder = tmp_path / "wild"
    for cls, files in (("happy", [grace_hopper(), photos / "two.jpg"]), ("sad", [photos / "empty.png"])):
        (folder / cls).mkdir(parents=True)
        for f in files:
            shutil.copy(f, folder / cls / f.name)
    res = emolab("evaluate", run, "--photos", folder, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    result = json.loads((run / "evaluations" / "photos-wild.json").read_text())
    assert result["photos"] == 3 and result["faces_found"] == 2 and result["detection_rate"] == pytest.approx(2 / 3)
    assert result["missed"] == [str(folder / "sad" / "empty.png")]
    correct = result["accuracy"] * 2
    assert result["end_to_end_accuracy"] == pytest.approx(correct / 3)  # the missed photo counts as wrong
    assert set(result["per_class"]) == set(FER2013_LABELS)
    assert (run / "evaluations" / "photos-wild.png").is_file() and "detection rate" in res.stdout
    assert result["detector"] == "mtcnn" and result["aligned"] is False
    res = emolab("evaluate", run, "--photos", folder, "--detector", "haar", "--align", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    result = json.loads((run / "evaluations" / "photos-wild.json").read_text())
    assert result["detector"] == "haar" and result["faces_found"] == 2
    assert "the haar detector gives no eye positions" in res.stdout
    res = emolab("evaluate", run, "--photos", folder, "--detector", "yolo", cwd=tmp_path)
    assert res.returncode == 2 and "unknown face detector 'yolo'" in res.stderr and "Traceback" not in res.stderr
    (folder / "bored").mkdir()
    res = emolab("evaluate", run, "--photos", folder, cwd=tmp_path)
    assert res.returncode == 2 and "class folder 'bored' is not one of the model's labels" in res.stderr


def test_an_image_folder_with_detect_faces_trains_on_face_crops_and_counts_photos_without_one(photos, tmp_path):
    import shutil

    from emolab.config import config_from_dict
    from emolab.data import load_dataset
    from emolab.faces.detectors import create_detector
    from emolab.faces.photos import face_crops, read_photo

    for split in ("train", "test"):
        for cls in ("happy", "sad"):
            folder = tmp_path / "photos" / split / cls
            folder.mkdir(parents=True)
            shutil.copy(grace_hopper(), folder / "hopper.jpg")
            shutil.copy(photos / "astronaut.png", folder / "astronaut.png")
        shutil.copy(photos / "empty.png", tmp_path / "photos" / split / "sad" / "empty.png")
    raw = {"data": {"name": "imagefolder", "path": str(tmp_path / "photos"), "detect_faces": True,
                    "validation_ratio": 0.5}}
    ds = load_dataset(config_from_dict(raw).data, 0)
    assert ds.info["no_face"] == {"train": 1, "test": 1}
    assert ds.info["no_face_files"]["test"][0].endswith("empty.png")
    test = ds.split("test")
    assert len(test) == 4 and test.inputs.shape[1:] == (48, 48)
    expected = face_crops(read_photo(grace_hopper())[0], 48, create_detector("mtcnn"))[0][1]
    assert np.array_equal(test.inputs[list(test.ids).index("test/happy/hopper.jpg")], expected)
    plain = load_dataset(config_from_dict({"data": {**raw["data"], "detect_faces": False}}).data, 0)
    assert len(plain.split("test")) == 5  # the whole photos, squashed, empty one included
    with pytest.raises(Exception, match="data.min_face"):
        config_from_dict({"data": {**raw["data"], "min_face": 2}})
    with pytest.raises(Exception, match="data.detector: unknown face detector 'yolo'"):
        config_from_dict({"data": {**raw["data"], "detector": "yolo"}})
    with pytest.raises(Exception, match="data.align_faces: the haar detector gives no eye positions"):
        config_from_dict({"data": {**raw["data"], "detector": "haar", "align_faces": True}})
    aligned = load_dataset(config_from_dict({"data": {**raw["data"], "align_faces": True}}).data, 0).split("test")
    expected = face_crops(read_photo(grace_hopper())[0], 48, create_detector("mtcnn"), align=True)[0][1]
    assert np.array_equal(aligned.inputs[list(aligned.ids).index("test/happy/hopper.jpg")], expected)


def test_serve_refuses_an_unknown_detector_before_starting(face_model, tmp_path):
    res = emolab("serve", face_model, "--detector", "yolo", "--port", "1", cwd=tmp_path)
    assert res.returncode == 2 and "unknown face detector 'yolo'" in res.stderr and "Traceback" not in res.stderr


# --- hostile files: FIFOs, decompression bombs, truncated images -------------------------------------------


def write_huge_png(path: Path, side: int = 12_000) -> Path:
    """A ``side`` x ``side`` black grayscale PNG written row by row (never held in memory): ~140 KB on disk,
    144 MB per channel once decoded."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    comp = zlib.compressobj(9)
    row = b"\x00" * (side + 1)  # the filter byte, then the pixels
    idat = b"".join([comp.compress(row) for _ in range(side)] + [comp.flush()])
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def test_a_huge_png_is_refused_from_its_header_quickly_and_in_little_memory(tmp_path):
    import subprocess
    import sys

    bomb = write_huge_png(tmp_path / "bomb.png")
    assert bomb.stat().st_size < 300_000
    probe = ("import resource, sys, time\n"
             "from emolab.errors import DataError\n"
             "from emolab.faces.photos import read_photo\n"
             "from emolab.data.images import read_image\n"
             "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
             "t = time.perf_counter()\n"
             "for read in (read_photo, lambda p: read_image(p, 48)):\n"
             "    try:\n"
             "        read(sys.argv[1])\n"
             "    except DataError as exc:\n"
             "        print(exc)\n"
             "print('seconds', time.perf_counter() - t)\n"
             "print('grew_mb', (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)\n")
    res = subprocess.run([sys.executable, "-c", probe, str(bomb)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert sum("bomb.png: 12000 x 12000 pixels, over the 25,000,000 emolab decodes" in x for x in lines) == 2, lines
    stats = dict(x.split() for x in lines if x.startswith(("seconds", "grew_mb")))
    assert float(stats["seconds"]) < 2.0 and float(stats["grew_mb"]) < 50, stats  # decoding it: 144 MB or more


def test_a_large_jpeg_is_read_when_its_reduced_decode_fits(tmp_path):
    big = tmp_path / "big.jpg"
    Image.new("L", (8000, 4000), 128).save(big)  # 32 megapixels, decoded at half size (8 MP) by JPEG draft
    rgb, scale = read_photo(big)
    assert rgb.shape == (1024, 2048, 3) and scale == pytest.approx(8000 / 2048)


@pytest.mark.timeout(60)
def test_a_fifo_named_like_an_image_is_skipped_in_folders_and_refused_alone(tmp_path):
    import os

    from emolab.data.images import image_files
    from emolab.pipeline import _image_files

    folder = tmp_path / "photos"
    folder.mkdir()
    Image.new("RGB", (48, 48), (90, 90, 90)).save(folder / "a.png")
    os.mkfifo(folder / "trap.png")  # no writer: reading it would block forever
    assert image_files(folder) == [folder / "a.png"] == _image_files([str(folder)])
    with pytest.raises(DataError, match="trap.png: a FIFO, not a regular file"):
        read_photo(folder / "trap.png")
    with pytest.raises(Exception, match="trap.png: not a regular file"):
        _image_files([str(folder / "trap.png")])


@pytest.mark.timeout(300)
def test_predict_on_a_folder_holding_a_fifo_finishes(face_model, tmp_path):
    import os

    folder = tmp_path / "photos"
    folder.mkdir()
    Image.new("L", (48, 48), 90).save(folder / "face.png")
    os.mkfifo(folder / "trap.png")
    res = emolab("predict", face_model, folder, "--no-detect", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "face.png" in res.stdout and "trap.png" not in res.stdout


def test_truncated_and_corrupt_images_name_the_file(tmp_path):
    from emolab.data.images import read_image

    rng = np.random.default_rng(0)
    good = tmp_path / "good.png"
    Image.fromarray(rng.integers(0, 256, (300, 300, 3), dtype=np.uint8)).save(good)
    data = good.read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    flipped = bytearray(data)
    flipped[len(data) // 2: len(data) // 2 + 64] = bytes(64)
    (tmp_path / "flipped.png").write_bytes(bytes(flipped))
    (tmp_path / "cut.jpg").write_bytes((lambda p: (Image.fromarray(rng.integers(0, 256, (300, 300, 3), np.uint8))
                                                   .save(p), p.read_bytes())[1])(tmp_path / "full.jpg")[:3000])
    for name in ("cut.png", "flipped.png", "cut.jpg"):
        for read in (read_photo, lambda p: read_image(p, 48)):
            with pytest.raises(DataError, match=f"{name}: not a readable image"):
                read(tmp_path / name)
