"""What a running server holds: its settings, the served models with their batchers and, for face models, the
"photo -> face rows" step of ``emolab predict``; the thread pools that decode images and find faces off the
event loop. The app keeps one in ``app.state.server``; the routes read it from there."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from emolab.errors import EmolabError
from emolab.faces.detectors import create_detector
from emolab.faces.photos import FaceRow, PhotoPredictor
from emolab.serving.batching import MicroBatcher
from emolab.serving.metrics import ServerMetrics
from emolab.serving.models import RequestError, ServedModel
from emolab.serving.settings import ServeSettings


class Decoder:
    """Image decoding off the event loop: at most ``threads`` requests decode at once, in a thread pool (a
    semaphore holds the others, so queued work costs no decoded pixels); one still waiting or decoding past
    ``timeout_s`` raises ``asyncio.TimeoutError`` (its decode, once started, finishes before its slot frees)."""

    def __init__(self, threads: int):
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="emolab-decode")
        self.slots = asyncio.Semaphore(threads)

    async def run(self, fn, timeout_s: float):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        await asyncio.wait_for(self.slots.acquire(), timeout_s)
        try:
            job = self.pool.submit(fn)
        except BaseException:
            self.slots.release()
            raise

        def free(_job):
            try:
                loop.call_soon_threadsafe(self.slots.release)
            except RuntimeError:  # the loop has closed (shutdown)
                pass

        job.add_done_callback(free)
        return await asyncio.wait_for(asyncio.wrap_future(job), max(deadline - loop.time(), 0.0))


@dataclass
class ServerState:
    """The served models by name and what serves them. ``start`` (the app's startup) runs one batcher per model
    with that model's batching settings; ``stop`` ends them and the pools."""

    settings: ServeSettings
    models: dict[str, ServedModel]
    metrics: ServerMetrics = field(default_factory=ServerMetrics)
    photos: dict[str, PhotoPredictor] = field(default_factory=dict)  # face models: photo -> face rows
    batchers: dict[str, MicroBatcher] = field(default_factory=dict)
    ready: bool = False
    decoder: Decoder = field(init=False)  # images decoded off the event loop
    detection: ThreadPoolExecutor = field(init=False)  # faces found off the event loop: one detector, one thread

    def __post_init__(self):
        self.decoder = Decoder(self.settings.decode_threads)
        self.detection = ThreadPoolExecutor(max_workers=1, thread_name_prefix="emolab-detect")

    @classmethod
    def load(cls, settings: ServeSettings, served: list[ServedModel] | None = None) -> ServerState:
        """The models of ``settings`` loaded (``served``, already loaded, skips that), named once each, with the
        inference threads set and a face detector when a face model is served."""
        loaded = served if served is not None else [ServedModel.load(s) for s in settings.models]
        models = {m.name: m for m in loaded}
        if len(models) != len(loaded):
            raise EmolabError("two served models share a name", hint="name them: emolab serve a=PATH b=PATH")
        settings.check_batching(list(models))
        if settings.threads:
            import sys

            if "torch" in sys.modules:  # a PyTorch model is served (ONNX exports never load torch)
                sys.modules["torch"].set_num_threads(settings.threads)
            for m in models.values():
                m.model.set_threads(settings.threads)
        faces = [m for m in models.values() if m.card.image]
        detector = create_detector(settings.detector) if faces else None
        photos = {m.name: PhotoPredictor(m.model, m.card.side, detector, align=settings.align_faces) for m in faces}
        return cls(settings, models, photos=photos)

    async def start(self) -> None:
        for name, m in self.models.items():
            batch = self.settings.batch_for(name)
            self.batchers[name] = MicroBatcher(
                lambda x, m=m, size=batch.max_batch: m.model.predict_proba(x, batch_size=size), batch,
                on_batch=lambda n, name=name: self.metrics.batch_size.labels(name).observe(n),
                on_queue=lambda n, name=name: self.metrics.queue_depth.labels(name).set(n))
            self.batchers[name].start()
        self.ready = True
        self.metrics.workers.inc()

    async def stop(self) -> None:
        self.metrics.workers.dec()
        self.ready = False
        for b in self.batchers.values():
            await b.stop()
        self.detection.shutdown(wait=False)
        self.decoder.pool.shutdown(wait=False, cancel_futures=True)

    def model(self, name: str) -> ServedModel:
        """The served model ``name``; 404 naming the served ones."""
        if name not in self.models:
            raise RequestError(404, "name", f"unknown model {name!r}; served: {', '.join(self.models)}")
        return self.models[name]

    async def classify(self, name: str, inputs: list) -> np.ndarray:
        """``(len(inputs), K)`` probabilities from the model's batcher, within the request timeout (past it:
        ``asyncio.TimeoutError``, answered 504)."""
        return await asyncio.wait_for(self.batchers[name].submit(inputs), timeout=self.settings.limits.timeout_s)

    async def find_faces(self, name: str, photos: list, where: str) -> list[list[FaceRow]]:
        """Each photo's face rows (``photos``: ``(rgb, scale)`` each, the item ``where[i]`` of the request), as
        `emolab predict FACE_RUN photo.jpg` finds them, in the detector's thread."""
        predictor = self.photos[name]
        return await asyncio.get_running_loop().run_in_executor(self.detection, lambda: [
            predictor.faces(f"{where}[{i}]", rgb, scale) for i, (rgb, scale) in enumerate(photos)])
