"""Video through face detection and tracking: a synthetic clip (seeded) of two FER2013 PrivateTest faces
drifting across a textured 640x480 background at 25 frames/s is written with OpenCV and run through
``emolab predict FACE_RUN clip.mp4`` (``emolab.faces.video.predict_video``) at several sampling rates.
The two faces are drawn (seeded) among faces the detector finds when shown alone, so that the clip measures
tracking rather than detection recall (measured by faces_in_the_wild.py). Reports, per sampling rate and
test-time augmentation, the wall time and sampled frames processed per second, how many tracks each face
got (1 is ideal: more means the tracker lost it), the share of sampled frames in which each face was found,
and the smoothed label's agreement with the face's FER2013 label.

    python benchmarks/video_faces.py runs/fer2013-vgg --seconds 20 --out benchmarks/results/video-faces.md
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from faces_in_the_wild import texture
from record import Record


def write_clip(path: Path, faces: np.ndarray, seconds: float, seed: int, fps: int = 25) -> list[list[tuple]]:
    """The clip, and per frame the true boxes ``(x0, y0, x1, y1, face number)`` of the two faces."""
    import cv2

    rng = np.random.default_rng(seed)
    h, w, side = 480, 640, 160
    background = texture(rng, h, w)
    starts = np.array([[40.0, 60.0], [440.0, 260.0]])
    velocity = rng.uniform(-1, 1, size=(2, 2)) * [[200 / (seconds * fps)], [200 / (seconds * fps)]] \
        + [[200 / (seconds * fps), 0], [-200 / (seconds * fps), 0]]
    big = [cv2.resize(f, (side, side), interpolation=cv2.INTER_CUBIC) for f in faces]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    truth = []
    for t in range(int(seconds * fps)):
        frame = background.copy()
        boxes = []
        for k in range(2):
            x, y = (starts[k] + velocity[k] * t + 8 * np.sin(t / 7 + k)).astype(int)
            x, y = int(np.clip(x, 0, w - side)), int(np.clip(y, 0, h - side))
            frame[y:y + side, x:x + side] = big[k]
            boxes.append((x, y, x + side, y + side, k))
        writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
        truth.append(boxes)
    writer.release()
    return truth


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--runs", default="5:run,5:none,25:none",
                    help="comma-separated RATE:TTA (sampled frames/s : the run's TTA, or none)")
    ap.add_argument("--detector", default="mtcnn")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    record = Record()
    import cv2

    from emolab.data import load_dataset
    from emolab.faces.detectors import create_detector
    from emolab.faces.video import predict_video
    from emolab.rundir import open_run

    run = open_run(args.run)
    model, side = run.model(), int(run.card.input.get("side", 48))
    test = load_dataset(run.config.data, run.config.seed).split("test")
    names = run.card.labels.names
    detector = create_detector(args.detector)
    pick = []
    for i in np.random.default_rng(args.seed).permutation(len(test)):
        canvas = np.full((320, 320), int(np.median(test.inputs[i])), np.uint8)
        canvas[80:240, 80:240] = cv2.resize(test.inputs[i], (160, 160), interpolation=cv2.INTER_CUBIC)
        if detector.detect(canvas, 48):
            pick.append(i)
        if len(pick) == 2:
            break
    pick = np.array(pick)
    tta = model.tta
    lines = ["# Video: faces found, tracked and labelled over time\n",
             f"Command: `{record.command}`\n",
             f"A {args.seconds:g}-second 640x480 clip at 25 frames/s (seed {args.seed}) of two FER2013 PrivateTest "
             f"faces (labels {names[test.labels[pick[0]]]}, {names[test.labels[pick[1]]]}) of 160 px drifting over a "
             f"textured background; model `{args.run}` ({run.card.summary}); detector "
             f"`{args.detector}`. A track's box belongs to the face whose frame holds its centre.\n",
             "| sampled frames/s | tta | sampled frames | wall s | frames processed/s | tracks per face | found in "
             "sampled frames | smoothed label = FER2013 label |", "|---|---|---|---|---|---|---|---|"]
    figures = {"run": args.run, "model": run.card.summary, "detector": args.detector, "seconds": args.seconds,
               "seed": args.seed, "labels": [names[test.labels[i]] for i in pick], "rows": []}
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "clip.mp4"
        truth = write_clip(clip, test.inputs[pick], args.seconds, args.seed)
        for spec in args.runs.split(","):
            rate, mode = float(spec.split(":")[0]), spec.split(":")[1]
            model.tta = tta if mode == "run" else mode
            start = time.perf_counter()
            rows = predict_video(model, side, clip, detector, fps=rate, progress=False)
            wall = time.perf_counter() - start
            sampled = len(range(0, len(truth), max(1, round(25 / rate))))
            tracks, found, agree = {0: set(), 1: set()}, {0: 0, 1: 0}, {0: 0, 1: 0}
            for r in rows:
                cx, cy = (r.box.xmin + r.box.xmax) / 2, (r.box.ymin + r.box.ymax) / 2
                inside = [(np.hypot(cx - (x0 + x1) / 2, cy - (y0 + y1) / 2), k) for x0, y0, x1, y1, k in truth[r.frame]
                          if x0 <= cx <= x1 and y0 <= cy <= y1]
                if inside:  # the detector's box may be much smaller than FER2013's frame (hair, background)
                    k = min(inside)[1]
                    tracks[k].add(r.track)
                    found[k] += 1
                    agree[k] += r.label == names[test.labels[pick[k]]]
            figures["rows"].append({"rate": rate, "tta": model.tta, "sampled_frames": sampled, "wall_s": wall,
                                    "tracks": [len(tracks[0]), len(tracks[1])], "found": [found[0], found[1]],
                                    "agree": [agree[0], agree[1]]})
            lines.append(f"| {rate:g} | {model.tta} | {sampled} | {wall:.1f} | {sampled / wall:.1f} | "
                         f"{len(tracks[0])}, {len(tracks[1])} | {found[0] / sampled:.2f}, {found[1] / sampled:.2f} | "
                         f"{agree[0] / max(found[0], 1):.2f}, {agree[1] / max(found[1], 1):.2f} |")
            print(lines[-1], flush=True)
    record.finish(lines, args.out, figures)


if __name__ == "__main__":
    main()
