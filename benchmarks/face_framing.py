"""How much larger than a detector's box is FER2013's frame? Each PrivateTest face is upscaled and placed
with a border in a plain canvas, the detector runs on it, and the ratio of the face's frame side to the
detected box side (and the offset of the box centre) is recorded; the median ratio - 1 is the margin a
detector's crops use to frame faces as FER2013 does.

    python benchmarks/face_framing.py --detectors mtcnn,haar --n 1000 --out benchmarks/results/face-framing.md
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from emolab.config import config_from_dict
from emolab.data import load_dataset
from emolab.faces.detectors import create_detector
from record import Record


def framing(detector, faces: np.ndarray, scale: int) -> dict:
    """One detector's figures: how often it found the face, the frame/box ratio, the offsets."""
    import cv2

    side = 48 * scale
    ratios, dx, dy, found = [], [], [], 0
    for face in faces:
        big = cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC)
        canvas = np.full((side * 2, side * 2), int(np.median(face)), np.uint8)  # the frame's own grey around it
        canvas[side // 2:side // 2 + side, side // 2:side // 2 + side] = big
        hits = detector.detect(canvas, min_face=side // 4)
        if not hits:
            continue
        found += 1
        f = hits[0]
        ratios.append(side / f.side)
        dx.append(((f.xmin + f.xmax) / 2 - side) / side)
        dy.append(((f.ymin + f.ymax) / 2 - side) / side)
    r = np.array(ratios)
    return {"detector": detector.name, "faces": len(faces), "scale": scale, "side": side, "found": found,
            "ratio_median": np.median(r), "ratio_p25": np.percentile(r, 25), "ratio_p75": np.percentile(r, 75),
            "dx_median": np.median(dx), "dy_median": np.median(dy)}


def section(f: dict) -> str:
    """The Markdown section of one detector."""
    return (f"## `{f['detector']}`\n\n{f['faces']} PrivateTest faces upscaled x{f['scale']} ({f['side']} px) in a "
            f"{2 * f['side']} px canvas: found {f['found']} ({f['found'] / max(f['faces'], 1):.1%}). Frame side / box "
            f"side: median **{f['ratio_median']:.3f}** (p25 {f['ratio_p25']:.3f}, p75 {f['ratio_p75']:.3f}); box "
            f"centre offset from the frame centre, as a share of the frame side: x median {f['dx_median']:+.3f}, "
            f"y median {f['dy_median']:+.3f}.\n\nMargin for crops: **{f['ratio_median'] - 1:.3f}** (box side x "
            f"(1 + margin)), centre shifted by {f['dy_median']:+.3f} of the frame side vertically.\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--detectors", default="mtcnn,haar")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--scale", type=int, default=4, help="upscaling of the 48x48 faces")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    record = Record()
    faces = load_dataset(config_from_dict({"data": {"name": "fer2013"}}).data).split("test").inputs[:args.n]
    detectors = [framing(create_detector(name), faces, args.scale) for name in args.detectors.split(",")]
    lines = ["# FER2013 framing vs each detector's box", "", f"Command: `{record.command}`", "",
             "\n".join(section(f) for f in detectors).removesuffix("\n")]
    record.finish(lines, args.out, {"detectors": detectors})


if __name__ == "__main__":
    main()
