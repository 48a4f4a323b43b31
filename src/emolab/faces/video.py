"""Video through face detection: frames sampled at ``fps``, faces found in each (the photo path's
:func:`~emolab.faces.photos.face_crops`), followed across frames by a greedy IoU tracker, and each track's
probabilities smoothed over time (an exponential moving average). Writes a CSV (time, track, box, label,
probabilities), a timeline plot of each track's emotions and, optionally, an annotated video.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from emolab.errors import DataError
from emolab.faces.detectors import DEFAULT_MIN_FACE, Detector, Face
from emolab.faces.photos import face_crops, is_regular_file, table_csv
from emolab.outputs import _umask

VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"}


def iou(a: Face, b: Face) -> float:
    x0, y0, x1, y1 = max(a.xmin, b.xmin), max(a.ymin, b.ymin), min(a.xmax, b.xmax), min(a.ymax, b.ymax)
    inter = max(0, x1 - x0) * max(0, y1 - y0)
    union = (a.xmax - a.xmin) * (a.ymax - a.ymin) + (b.xmax - b.xmin) * (b.ymax - b.ymin) - inter
    return inter / union if union > 0 else 0.0


@dataclass
class Track:
    id: int
    box: Face
    smoothed: np.ndarray
    missed: int = 0


@dataclass
class IouTracker:
    """Greedy IoU matching of this frame's faces to the live tracks (best pairs first, IoU >= ``min_iou``);
    an unmatched face starts a track; a track unseen for ``max_missed_s`` seconds ends. Each track's
    probabilities are a moving average whose old frames count half after ``half_life_s`` seconds. Both are
    in seconds, so sampling 25 frames a second instead of 5 keeps a face's track through the same gap and
    smooths over the same time (at 5 frames/s: 5 frames unseen, half weight to the new frame)."""

    fps: float = 5.0  # sampled frames per second
    min_iou: float = 0.3
    max_missed_s: float = 1.0
    half_life_s: float = 0.2
    tracks: list[Track] = field(default_factory=list)
    next_id: int = 0

    @property
    def max_missed(self) -> int:
        return max(1, round(self.max_missed_s * self.fps))

    @property
    def alpha(self) -> float:
        """The weight of the new frame in the moving average."""
        return 1 - 0.5 ** (1 / (self.half_life_s * self.fps))

    def update(self, faces: list[Face], probs: np.ndarray) -> list[tuple[Track, Face, np.ndarray]]:
        pairs = sorted(((iou(t.box, f), ti, fi) for ti, t in enumerate(self.tracks) for fi, f in enumerate(faces)),
                       reverse=True)
        used_t, used_f, out = set(), set(), []
        for score, ti, fi in pairs:
            if score < self.min_iou or ti in used_t or fi in used_f:
                continue
            used_t.add(ti)
            used_f.add(fi)
            t = self.tracks[ti]
            t.box, t.missed = faces[fi], 0
            t.smoothed = self.alpha * probs[fi] + (1 - self.alpha) * t.smoothed
            out.append((t, faces[fi], probs[fi]))
        for ti, t in enumerate(self.tracks):
            if ti not in used_t:
                t.missed += 1
        for fi, f in enumerate(faces):
            if fi not in used_f:
                t = Track(self.next_id, f, probs[fi].copy())
                self.next_id += 1
                self.tracks.append(t)
                out.append((t, f, probs[fi]))
        self.tracks = [t for t in self.tracks if t.missed <= self.max_missed]
        return sorted(out, key=lambda x: x[0].id)


@dataclass
class VideoRow:
    time: float
    frame: int
    track: int
    box: Face
    probs: np.ndarray  # smoothed
    label: str


def read_frames(path: Path, fps: float):
    """``(time_s, frame_index, BGR frame, sampled_estimate, rate)`` sampled at ``fps`` (every frame when the
    video has fewer): ``sampled_estimate`` is how many frames will be sampled as far as the container's frame
    count says (an estimate: containers can be wrong), ``rate`` the sampled frames' true rate (native / step)."""
    import cv2

    if not is_regular_file(path):  # OpenCV would block forever reading a FIFO
        raise DataError(f"{path}: not found or not a regular file", hint="give an .mp4 / .avi / .mov file")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise DataError(f"{path}: not a readable video", hint="give an .mp4 / .avi / .mov file OpenCV can decode")
    native = cap.get(cv2.CAP_PROP_FPS) or fps
    step = max(1, round(native / fps))
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    estimate = -(-total // step) if total > 0 else 0
    index, sampled = 0, 0
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            if index % step == 0:
                sampled += 1
                yield index / native, index, frame, estimate, native / step
            index += 1
    finally:
        cap.release()
    if sampled == 0:
        raise DataError(f"{path}: no frames could be decoded", hint="check that the file is a complete video")


def h264_available() -> bool:
    """Whether PyAV (the ``av`` package, whose wheels bundle FFmpeg with libx264) can write H.264 here."""
    try:
        import av
    except ImportError:
        return False
    return "libx264" in av.codecs_available


class AnnotatedVideo:
    """The annotated video, written frame by frame as the clip is processed (nothing kept in memory) into a
    temporary file beside ``path`` and renamed to ``path`` only by :meth:`finish`; :meth:`abort` (an error, an
    interrupt) removes it, so ``path`` is a complete video or absent. H.264 (yuv420p, the index at the front:
    ``+faststart``) through PyAV, which browsers play; without PyAV, OpenCV's ``mp4v`` with a warning (most
    browsers do not play it). yuv420p needs even sides: an odd width or height gets one edge pixel copied."""

    def __init__(self, path: Path, rate: float, width: int, height: int):
        from emolab.outputs import writable_folder

        self.path = Path(path)
        writable_folder(self.path.parent, what=str(self.path))
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.stem}.",
                                   suffix=f".partial{self.path.suffix}")
        os.close(fd)
        self.tmp = Path(tmp)
        self.width, self.height = width, height
        self.codec = "h264" if h264_available() else "mp4v"
        try:
            if self.codec == "h264":
                import av

                self.container = av.open(str(self.tmp), "w", format="mp4", options={"movflags": "+faststart"})
                self.rate = Fraction(rate).limit_denominator(1001)
                self.stream = self.container.add_stream("libx264", rate=self.rate)
                self.stream.width, self.stream.height = width + width % 2, height + height % 2
                self.stream.pix_fmt = "yuv420p"
                self.stream.options = {"crf": "23", "preset": "veryfast"}
            else:
                import cv2

                warnings.warn("PyAV (pip install av) is not installed or lacks libx264: the annotated video is "
                              "written as MPEG-4 Part 2 (mp4v), which most browsers do not play", stacklevel=3)
                self.writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*"mp4v"), rate, (width, height))
                if not self.writer.isOpened():
                    raise DataError(f"cannot write {self.path}: OpenCV has no mp4v encoder here",
                                    hint="pip install av (H.264 through FFmpeg)")
        except BaseException:
            self.tmp.unlink(missing_ok=True)
            raise
        self.frames = 0

    def write(self, bgr: np.ndarray) -> None:
        if self.codec == "h264":
            import av

            if bgr.shape[0] % 2 or bgr.shape[1] % 2:
                bgr = np.pad(bgr, ((0, bgr.shape[0] % 2), (0, bgr.shape[1] % 2), (0, 0)), mode="edge")
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(bgr), format="bgr24").reformat(format="yuv420p")
            frame.pts, frame.time_base = self.frames, 1 / self.rate
            for packet in self.stream.encode(frame):
                self.container.mux(packet)
        else:
            self.writer.write(bgr)
        self.frames += 1

    def _close(self) -> None:
        if self.codec == "h264":
            self.container.close()
        else:
            self.writer.release()

    def finish(self) -> Path:
        try:
            if self.codec == "h264":
                for packet in self.stream.encode():  # flush the encoder's delayed frames
                    self.container.mux(packet)
            self._close()
            os.chmod(self.tmp, 0o666 & ~_umask())
            os.replace(self.tmp, self.path)
        except BaseException:
            self.tmp.unlink(missing_ok=True)
            raise
        return self.path

    def abort(self) -> None:
        try:
            self._close()
        except Exception:  # noqa: BLE001 - the run already failed; the half file goes either way
            pass
        self.tmp.unlink(missing_ok=True)


def predict_video(model, side: int, path: Path, detector: Detector, *, fps: float = 5.0, min_face: int = DEFAULT_MIN_FACE,
                  align: bool = False, annotate: Path | None = None, progress: bool = True) -> list[VideoRow]:
    """Rows of every sampled frame's tracked faces; with ``annotate``, the annotated video written there
    (see :class:`AnnotatedVideo`). The progress bar counts sampled frames and ends at 100 % however far the
    container's frame count was off."""
    import cv2
    from tqdm.auto import tqdm

    names = model.labels.names
    tracker, rows, writer = IouTracker(fps=fps), [], None
    bar = None
    done = False
    try:
        for t, index, frame, estimate, rate in read_frames(path, fps):
            if bar is None:
                bar = tqdm(total=estimate or None, desc=f"{path.name}", unit="frame", disable=not progress)
            rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            found = [(f, c) for f, c in face_crops(rgb, side, detector, min_face, align) if f is not None]
            probs = model.predict_proba(np.stack([c for _, c in found])) if found else np.zeros((0, len(names)))
            first = len(rows)
            for track, box, _p in tracker.update([f for f, _ in found], probs):
                rows.append(VideoRow(t, index, track.id, box, track.smoothed.copy(),
                                     names[int(track.smoothed.argmax())]))
            if annotate is not None:
                if writer is None:
                    h, w = frame.shape[:2]
                    writer = AnnotatedVideo(annotate, rate, w, h)
                for r in rows[first:]:
                    b = r.box
                    cv2.rectangle(frame, (b.xmin, b.ymin), (b.xmax, b.ymax), (113, 204, 46), 2)
                    cv2.putText(frame, f"#{r.track} {r.label} {r.probs.max():.2f}", (b.xmin, max(12, b.ymin - 6)),
                                cv2.FONT_HERSHEY_SIMPLEX, 0.5, (113, 204, 46), 1, cv2.LINE_AA)
                writer.write(frame)
            if bar.total is not None and bar.n + 1 > bar.total:  # the container undercounted its frames
                bar.total = bar.n + 1
            bar.update(1)
        if bar is not None and bar.total != bar.n:  # overcounted: the bar ends at what was sampled, 100 %
            bar.total = bar.n
            bar.refresh()
        if writer is not None:
            writer.finish()
        done = True
    finally:
        if bar is not None:
            bar.close()
        if writer is not None and not done:
            writer.abort()
    return rows


def video_csv(rows: list[VideoRow], names: tuple[str, ...]) -> str:
    return table_csv(["time_s", "frame", "track", "xmin", "ymin", "xmax", "ymax", "label"], names,
                     (([f"{r.time:.3f}", r.frame, r.track, r.box.xmin, r.box.ymin, r.box.xmax, r.box.ymax, r.label],
                       r.probs) for r in rows))


def timeline_plot(rows: list[VideoRow], names: tuple[str, ...], out: Path) -> Path:
    """One panel per track: each label's smoothed probability over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tracks = sorted({r.track for r in rows})
    fig, axes = plt.subplots(max(1, len(tracks)), 1, figsize=(9, 2.4 * max(1, len(tracks))), squeeze=False)
    for ax, track in zip(axes[:, 0], tracks):
        mine = [r for r in rows if r.track == track]
        times = [r.time for r in mine]
        for k, name in enumerate(names):
            ax.plot(times, [r.probs[k] for r in mine], label=name)
        ax.set_ylim(0, 1)
        ax.set_ylabel(f"track {track}")
    axes[-1, 0].set_xlabel("time (s)")
    if tracks:
        axes[0, 0].legend(ncol=min(len(names), 7), fontsize=8, loc="upper right")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
