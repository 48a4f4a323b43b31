"""Frames per second of the photo path: face detection + FER crop + classification on matplotlib's
``grace_hopper.jpg`` fitted into a 640x480 frame, with the run's test-time augmentation and without.

    python benchmarks/photo_speed.py runs/fer2013-reference --frames 100 --rounds 3
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    import matplotlib
    from PIL import Image

    from emolab.faces.photos import PhotoPredictor, fer_crop
    from emolab.models import load_model, model_card

    card = model_card(args.run)
    model = load_model(args.run)
    photo = Image.open(Path(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg")).convert("L")
    photo.thumbnail((640, 480))  # her 512x600 portrait fitted into a 640x480 frame, aspect kept, borders grey
    frame = np.full((480, 640), 128, np.uint8)
    frame[:photo.height, (640 - photo.width) // 2:(640 - photo.width) // 2 + photo.width] = np.asarray(photo)
    predictor = PhotoPredictor.for_model(model, int(card.input["side"]))
    modes = [card.extra.get("tta", "none")] + (["none"] if card.extra.get("tta", "none") != "none" else [])
    for tta in modes:
        model.tta = tta
        rates = []
        for _ in range(args.rounds):
            start = time.perf_counter()
            for _ in range(args.frames):
                faces = predictor.detector.detect(frame, predictor.min_face)
                crops = [fer_crop(frame, f, predictor.detector.margin, predictor.side) for f in faces]
                if crops:
                    model.predict_proba(np.stack(crops), batch_size=8)
            rates.append(args.frames / (time.perf_counter() - start))
        print(f"{args.run}, tta {tta}: {np.median(rates):.1f} frames/s (median of {args.rounds} rounds of "
              f"{args.frames} frames; rounds {', '.join(f'{r:.1f}' for r in rates)}; faces per frame {len(faces)})")


if __name__ == "__main__":
    main()
