"""Faces in the wild, synthesised from FER2013: each PrivateTest face is upscaled and placed at a random
position and scale in a larger textured scene (some scenes hold two or three faces), seeded and
reproducible; with ``--tilt DEG`` each face is also turned by up to that many degrees. Reports, per detector,
detection recall and precision (a detection matches a face when their boxes overlap with IoU >= 0.4), the face
model's accuracy on the faces found (and, for detectors with landmarks, on crops aligned on the eyes) beside
its accuracy on the original 48x48 crops of the same faces (the gap is the cost of detection and re-cropping),
and frames/s of detector + classifier on ``grace_hopper.jpg`` fitted into a 640x480 frame, with the run's
test-time augmentation and without (median of ``--rounds`` rounds).

    python benchmarks/faces_in_the_wild.py runs/fer2013-vgg --detectors haar,mtcnn --scenes 300 --tilt 0,20 \
        --out benchmarks/results/faces-in-the-wild.md
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from record import Record


def texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A smooth random background: low-resolution noise upscaled, plus a gradient."""
    import cv2

    small = rng.integers(40, 220, size=(h // 40 + 2, w // 40 + 2)).astype(np.uint8)
    base = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    base += np.linspace(-30, 30, w, dtype=np.float32)[None, :]
    return np.clip(base + rng.normal(0, 6, size=(h, w)), 0, 255).astype(np.uint8)


def place(face: np.ndarray, side: int, degrees: float) -> np.ndarray:
    """The face at ``side`` pixels, turned by ``degrees`` about its centre (corners: its edges replicated)."""
    import cv2

    big = cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC)
    if degrees:
        turn = cv2.getRotationMatrix2D((side / 2, side / 2), degrees, 1.0)
        big = cv2.warpAffine(big, turn, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return big


def make_scenes(faces: np.ndarray, labels: np.ndarray, n: int, seed: int, h: int = 480, w: int = 640,
                tilt: float = 0.0):
    """``[(scene, [(box, label, face index)])]``: faces upscaled to 96-200 px, never overlapping, turned by a
    uniform angle in [-tilt, tilt] degrees (drawn after the placement, so tilt 0 gives the same scenes)."""
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
                    scene[y:y + side, x:x + side] = place(faces[i], side, 0.0)
                    placed.append(((x, y, x + side, y + side), int(labels[i]), int(i)))
                    break
        scenes.append((scene, placed))
    if tilt:
        turn = np.random.default_rng([seed, 1]).uniform(-tilt, tilt, size=k)
        j = 0
        for scene, placed in scenes:
            for (x0, y0, x1, y1), _label, i in placed:
                scene[y0:y1, x0:x1] = place(faces[i], x1 - x0, float(turn[j]))
                j += 1
    return scenes


def iou(a, b) -> float:
    x0, y0, x1, y1 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0, x1 - x0) * max(0, y1 - y0)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def grace_frame() -> np.ndarray:
    """matplotlib's ``grace_hopper.jpg`` (512x600) fitted into a 640x480 RGB frame, aspect kept, borders grey."""
    import matplotlib
    from PIL import Image

    photo = Image.open(Path(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg")).convert("RGB")
    photo.thumbnail((640, 480))
    frame = np.full((480, 640, 3), 128, np.uint8)
    left = (640 - photo.width) // 2
    frame[:photo.height, left:left + photo.width] = np.asarray(photo)
    return frame


def frames_per_second(model, side: int, detector, frame: np.ndarray, min_face: int, frames: int,
                      rounds: int) -> tuple[float, int]:
    """Median frames/s over ``rounds`` of detection + FER crops + classification of ``frame``; faces found."""
    from emolab.faces.photos import face_crops

    rates = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(frames):
            found = face_crops(frame, side, detector, min_face)
            if found:
                model.predict_proba(np.stack([crop for _, crop in found]), batch_size=8)
        rates.append(frames / (time.perf_counter() - start))
    return float(np.median(rates)), len(found)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="a face run (its model is scored on the faces found)")
    ap.add_argument("--detectors", default="haar,mtcnn")
    ap.add_argument("--scenes", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tilt", default="0", help="comma-separated: largest turn of the faces, in degrees")
    ap.add_argument("--frames", type=int, default=50, help="frames per speed round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    record = Record()
    from emolab.data import load_dataset
    from emolab.faces.detectors import create_detector
    from emolab.faces.photos import fer_crop
    from emolab.rundir import open_run

    run = open_run(args.run)
    model, side = run.model(), int(run.card.input.get("side", 48))
    tta = run.card.extra.get("tta", "none")
    test = load_dataset(run.config.data, run.config.seed).split("test")
    detectors = [create_detector(name) for name in args.detectors.split(",")]
    lines = ["# Faces in the wild (synthetic scenes from FER2013 PrivateTest)\n",
             f"Command: `{record.command}`\n",
             f"{args.scenes} scenes of 640x480 (seed {args.seed}) of FER2013 PrivateTest faces upscaled to 96-200 px "
             f"on smooth random textures, 1-3 faces a scene; model `{args.run}` ({run.card.summary}, tta {tta}). A "
             "detection matches a face at IoU >= 0.4. Accuracy on faces found is the model's on the detector's crops "
             "(aligned: turned so the eyes are level, for detectors with landmarks); on the same faces' crops: the "
             "original 48x48 images of the faces found.\n"]
    figures = {"run": args.run, "model": run.card.summary, "tta": tta, "scenes": args.scenes, "seed": args.seed,
               "frames": args.frames, "rounds": args.rounds, "detection": [], "speed": []}
    for tilt in map(float, args.tilt.split(",")):
        scenes = make_scenes(test.inputs, test.labels, args.scenes, args.seed, tilt=tilt)
        n_faces = sum(len(p) for _, p in scenes)
        lines += [f"\n## Faces turned by up to {tilt:g} degrees ({n_faces} faces)\n",
                  "| detector | recall | precision | accuracy on faces found | aligned | accuracy on the same faces' "
                  "crops | gap | gap aligned |", "|---|---|---|---|---|---|---|---|"]
        for detector in detectors:
            hits, detections, crops, aligned, originals, ys = 0, 0, [], [], [], []
            for scene, placed in tqdm(scenes, desc=f"{detector.name}, tilt {tilt:g}", leave=False):
                found = detector.detect(scene, 48)
                detections += len(found)
                for box, label, index in placed:
                    best = max(found, key=lambda f: iou(box, (f.xmin, f.ymin, f.xmax, f.ymax)), default=None)
                    if best is not None and iou(box, (best.xmin, best.ymin, best.xmax, best.ymax)) >= 0.4:
                        hits += 1
                        crops.append(fer_crop(scene, best, detector.margin, side))
                        aligned.append(fer_crop(scene, best, detector.margin, side, align=True))
                        originals.append(test.inputs[index])
                        ys.append(label)
            y = np.array(ys)

            def accuracy(images):
                return float((model.predict_proba(np.stack(images)).argmax(1) == y).mean()) if images else float("nan")

            found_acc, crop_acc = accuracy(crops), accuracy(originals)
            aligned_acc = accuracy(aligned) if detector.landmarks else None
            figures["detection"].append({"tilt": tilt, "detector": detector.name, "faces": n_faces, "hits": hits,
                                         "detections": detections, "accuracy_found": found_acc,
                                         "accuracy_aligned": aligned_acc, "accuracy_same_crops": crop_acc})
            lines.append(f"| {detector.name} | {hits / n_faces:.3f} ({hits}/{n_faces}) | "
                         f"{hits / max(detections, 1):.3f} ({detections} boxes) | {found_acc:.4f} | "
                         f"{'–' if aligned_acc is None else f'{aligned_acc:.4f}'} | {crop_acc:.4f} | "
                         f"{found_acc - crop_acc:+.4f} | "
                         f"{'–' if aligned_acc is None else f'{aligned_acc - crop_acc:+.4f}'} |")
            print(lines[-1], flush=True)
    frame = grace_frame()
    modes = [tta] + (["none"] if tta != "none" else [])
    lines += [f"\n## Speed: detector + classifier on grace_hopper.jpg in a 640x480 frame (median of {args.rounds} "
              f"rounds of {args.frames} frames; min face: the smallest face looked for, 24 px by default)\n",
              "| detector | min face | " + " | ".join(f"frames/s, tta {m}" for m in modes) + " | faces found |",
              "|---|---|" + "---|" * len(modes) + "---|"]
    for detector in detectors:
        for min_face in (24, 48):
            rates = []
            for mode in modes:
                model.tta = mode
                fps, n = frames_per_second(model, side, detector, frame, min_face, args.frames, args.rounds)
                rates.append(f"{fps:.1f}")
                figures["speed"].append({"detector": detector.name, "min_face": min_face, "tta": mode,
                                         "frames_per_s": fps, "faces_found": n})
            lines.append(f"| {detector.name} | {min_face} | {' | '.join(rates)} | {n} |")
            print(lines[-1], flush=True)
    model.tta = tta
    record.finish(lines, args.out, figures)


if __name__ == "__main__":
    main()
