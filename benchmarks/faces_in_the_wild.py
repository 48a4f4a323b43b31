"""Faces in the wild, synthesised from FER2013: each PrivateTest face is upscaled and placed at a random
position and scale in a larger textured scene (some scenes hold two or three faces), seeded and
reproducible. Reports, per detector, detection recall and precision (a detection matches a face when their
boxes overlap with IoU >= 0.4), the face model's accuracy on the faces found beside its accuracy on the
original 48x48 crops of the same faces (the gap is the cost of detection and re-cropping), and the speed on
``grace_hopper.jpg`` fitted into a 640x480 frame.

    python benchmarks/faces_in_the_wild.py runs/fer2013-reference --scenes 300 --out benchmarks/results/faces-in-the-wild.md
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import numpy as np


def texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A smooth random background: low-resolution noise upscaled, plus a gradient."""
    import cv2

    small = rng.integers(40, 220, size=(h // 40 + 2, w // 40 + 2)).astype(np.uint8)
    base = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    base += np.linspace(-30, 30, w, dtype=np.float32)[None, :]
    return np.clip(base + rng.normal(0, 6, size=(h, w)), 0, 255).astype(np.uint8)


def make_scenes(faces: np.ndarray, labels: np.ndarray, n: int, seed: int, h: int = 480, w: int = 640):
    """``[(scene, [(box, label, face index)])]``: faces upscaled to 96-200 px, never overlapping."""
    import cv2

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(faces))
    scenes, k = [], 0
    for _ in range(n):
        scene = texture(rng, h, w)
        placed = []
        for _ in range(int(rng.choice([1, 1, 2, 3]))):
            side = int(rng.integers(96, 201))
            for _try in range(20):
                x, y = int(rng.integers(0, w - side)), int(rng.integers(0, h - side))
                if all(x + side <= bx0 or bx1 <= x or y + side <= by0 or by1 <= y for (bx0, by0, bx1, by1), _, _ in placed):
                    i = order[k % len(order)]
                    k += 1
                    scene[y:y + side, x:x + side] = cv2.resize(faces[i], (side, side), interpolation=cv2.INTER_CUBIC)
                    placed.append(((x, y, x + side, y + side), int(labels[i]), int(i)))
                    break
        scenes.append((scene, placed))
    return scenes


def iou(a, b) -> float:
    x0, y0, x1, y1 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0, x1 - x0) * max(0, y1 - y0)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="a face run (its model is scored on the faces found)")
    ap.add_argument("--detectors", default="haar")
    ap.add_argument("--scenes", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--speed-frames", type=int, default=60)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    import matplotlib
    from PIL import Image

    from emolab.data import load_dataset
    from emolab.faces.detectors import create_detector
    from emolab.faces.photos import fer_crop
    from emolab.rundir import open_run

    run = open_run(args.run)
    model, side = run.model(), int(run.card.input.get("side", 48))
    test = load_dataset(run.config.data, run.config.seed).split("test")
    scenes = make_scenes(test.inputs, test.labels, args.scenes, args.seed)
    n_faces = sum(len(p) for _, p in scenes)
    lines = [f"# Faces in the wild (synthetic scenes from FER2013 PrivateTest)\n",
             f"Command: `python {' '.join(shlex.quote(a) for a in sys.argv)}`\n",
             f"{args.scenes} scenes of 640x480 (seed {args.seed}), {n_faces} faces of 96-200 px on smooth random "
             f"textures; model `{args.run}` ({run.card.summary}, tta {run.card.extra.get('tta', 'none')}). A "
             "detection matches a face at IoU >= 0.4.\n",
             "| detector | recall | precision | accuracy on faces found | accuracy on the same faces' crops | gap "
             "| frames/s (grace_hopper 640x480) |", "|---|---|---|---|---|---|---|"]
    photo = Image.open(Path(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg")).convert("L")
    photo.thumbnail((640, 480))
    frame = np.full((480, 640), 128, np.uint8)
    frame[:photo.height, (640 - photo.width) // 2:(640 - photo.width) // 2 + photo.width] = np.asarray(photo)
    for name in args.detectors.split(","):
        detector = create_detector(name)
        hits, detections, crops, originals, ys = 0, 0, [], [], []
        for scene, placed in scenes:
            found = detector.detect(scene, 48)
            detections += len(found)
            for box, label, index in placed:
                best = max(found, key=lambda f: iou(box, (f.xmin, f.ymin, f.xmax, f.ymax)), default=None)
                if best is not None and iou(box, (best.xmin, best.ymin, best.xmax, best.ymax)) >= 0.4:
                    hits += 1
                    crops.append(fer_crop(scene, best, detector.margin, side))
                    originals.append(test.inputs[index])
                    ys.append(label)
        y = np.array(ys)
        found_acc = float((model.predict_proba(np.stack(crops)).argmax(1) == y).mean()) if crops else float("nan")
        crop_acc = float((model.predict_proba(np.stack(originals)).argmax(1) == y).mean()) if crops else float("nan")
        start = time.perf_counter()
        for _ in range(args.speed_frames):
            faces = detector.detect(frame, 24)
            if faces:
                model.predict_proba(np.stack([fer_crop(frame, f, detector.margin, side) for f in faces]))
        fps = args.speed_frames / (time.perf_counter() - start)
        lines.append(f"| {name} | {hits / n_faces:.3f} ({hits}/{n_faces}) | {hits / max(detections, 1):.3f} "
                     f"({detections} boxes) | {found_acc:.4f} | {crop_acc:.4f} | {found_acc - crop_acc:+.4f} | "
                     f"{fps:.1f} ({len(faces)} face) |")
        print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
