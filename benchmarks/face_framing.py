"""How much larger than a detector's box is FER2013's frame? Each PrivateTest face is upscaled and placed
with a border in a plain canvas, the detector runs on it, and the ratio of the face's frame side to the
detected box side (and the offset of the box centre) is recorded; the median ratio - 1 is the margin a
detector's crops use to frame faces as FER2013 does.

    python benchmarks/face_framing.py --detector haar --n 1000 --out benchmarks/results/face-framing.md
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import numpy as np

from emolab.config import config_from_dict
from emolab.data import load_dataset
from emolab.faces.detectors import create_detector


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--detector", default="haar")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--scale", type=int, default=4, help="upscaling of the 48x48 faces")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    import cv2

    faces = load_dataset(config_from_dict({"data": {"name": "fer2013"}}).data).split("test").inputs[:args.n]
    detector = create_detector(args.detector)
    side = 48 * args.scale
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
    text = (f"# FER2013 framing vs the `{args.detector}` detector's box\n\nCommand: `python "
            f"{' '.join(shlex.quote(a) for a in sys.argv)}`\n\n"
            f"{args.n} PrivateTest faces upscaled x{args.scale} ({side} px) in a {2 * side} px canvas: found "
            f"{found} ({found / max(args.n, 1):.1%}). Frame side / box side: median **{np.median(r):.3f}** "
            f"(p25 {np.percentile(r, 25):.3f}, p75 {np.percentile(r, 75):.3f}); box centre offset from the frame "
            f"centre, as a share of the frame side: x median {np.median(dx):+.3f}, y median {np.median(dy):+.3f}.\n\n"
            f"Margin for crops: **{np.median(r) - 1:.3f}** (box side x (1 + margin)), centre shifted by "
            f"{np.median(dy):+.3f} of the frame side vertically.\n")
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
