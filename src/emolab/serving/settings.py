"""What a server is told: the request limits, each model's batching and the server's own settings. Each
default lives here once; ``emolab serve`` takes its option defaults from these classes.

Plain dataclasses, importing no web framework: the command line reads them when it starts."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace

from emolab.errors import EmolabError, unknown_name
from emolab.faces.detectors import DEFAULT_DETECTOR


@dataclass(frozen=True)
class Limits:
    """What one request may hold; each limit is answered 413 (too large) or 422 (malformed) when broken."""

    max_text_chars: int = 2000
    max_items: int = 64
    max_image_bytes: int = 5 * 1024 * 1024
    max_image_pixels: int = 25_000_000
    max_request_pixels: int = 50_000_000  # all the images of one request together (each is decoded in memory)
    max_body_bytes: int = 8 * 1024 * 1024
    timeout_s: float = 10.0
    body_timeout_s: float = 30.0  # a request body not read whole by then is answered 408 (slow or stalled client)


@dataclass(frozen=True)
class BatchSettings:
    """Dynamic batching of one served model: two numbers, as Triton sets them per model."""

    max_batch: int = 32  # most items in one model call
    max_wait_ms: float = 0.0  # batches form from requests that queue while the model is busy; > 0 also holds one open

    def __post_init__(self):
        if isinstance(self.max_batch, bool) or not isinstance(self.max_batch, int) or self.max_batch < 1:
            raise EmolabError(f"max_batch {self.max_batch!r} is not a batch size",
                              hint="give a whole number of items, 1 or more, e.g. --max-batch 32")
        if isinstance(self.max_wait_ms, bool) or not isinstance(self.max_wait_ms, (int, float)) \
                or not math.isfinite(self.max_wait_ms) or self.max_wait_ms < 0:
            raise EmolabError(f"max_wait_ms {self.max_wait_ms!r} is not a wait",
                              hint="give milliseconds, 0 or more, e.g. --max-wait-ms 5")


BATCH_KEYS = {"max_batch": int, "max_wait_ms": float}  # what `--batch NAME.KEY=VALUE` sets


def batch_overrides(items: list[str], default: BatchSettings) -> dict[str, BatchSettings]:
    """``emolab serve --batch NAME.KEY=VALUE`` (repeatable) -> each named model's batching: ``default`` (the
    server's ``--max-batch`` and ``--max-wait-ms``) with the keys given for it replaced."""
    given: dict[str, dict] = {}
    for item in items:
        target, eq, value = item.partition("=")
        name, _, key = target.rpartition(".")
        if not eq or not name or not key:
            raise EmolabError(f"--batch {item!r} is not NAME.KEY=VALUE",
                              hint="e.g. --batch faces.max_batch=64 --batch faces.max_wait_ms=5")
        if key not in BATCH_KEYS:
            raise unknown_name("--batch key", key, list(BATCH_KEYS))
        try:
            given.setdefault(name, {})[key] = BATCH_KEYS[key](value)
        except ValueError:
            raise EmolabError(f"--batch {item}: {value!r} is not a number",
                              hint="e.g. --batch faces.max_batch=64 --batch faces.max_wait_ms=5") from None
    return {name: replace(default, **keys) for name, keys in given.items()}


@dataclass
class ServeSettings:
    models: list[str]  # PATH or NAME=PATH, as given to `emolab serve`
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    max_batch: int = BatchSettings.max_batch  # every model's batching, unless ``batching`` names it
    max_wait_ms: float = BatchSettings.max_wait_ms
    batching: dict[str, BatchSettings] = field(default_factory=dict)  # a served model's name -> its own batching
    threads: int | None = None  # inference threads (PyTorch and ONNX Runtime); None: the runtimes' defaults
    limits: Limits = field(default_factory=Limits)
    api_key: str | None = None
    cors_origins: list[str] = field(default_factory=list)
    detector: str = DEFAULT_DETECTOR  # the face detector of the faces route
    align_faces: bool = False  # turn face crops so the eyes are level (detectors with landmarks)
    decode_threads: int = 2  # images decoded at once (a thread pool off the event loop); the others wait
    max_connections: int = 128  # open connections (or running requests) before new requests get 503
    keep_alive_s: float = 5.0  # an idle keep-alive connection is closed after this long
    header_timeout_s: float = 10.0  # a connection that has not sent a request's headers whole by then is closed

    def __post_init__(self):
        BatchSettings(self.max_batch, self.max_wait_ms)  # refuses a bad --max-batch or --max-wait-ms

    def batch_for(self, name: str) -> BatchSettings:
        """The batching of the served model ``name``: its own, else the server's."""
        return self.batching[name] if name in self.batching else BatchSettings(self.max_batch, self.max_wait_ms)

    def check_batching(self, names: list[str]) -> None:
        """Every model ``batching`` names is served (``names``)."""
        for name in self.batching:
            if name not in names:
                raise EmolabError(f"batching settings for {name!r}, which is not served",
                                  hint=f"name a served model: {', '.join(names)} (NAME=PATH names one)")

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServeSettings:
        raw = json.loads(text)
        return cls(**{**raw, "limits": Limits(**raw["limits"]),
                      "batching": {k: BatchSettings(**v) for k, v in raw.get("batching", {}).items()}})
