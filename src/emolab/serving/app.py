"""``emolab serve``: the HTTP API (FastAPI) and the demo page over one or more saved models.

Routes: ``POST /v1/models/{name}/predict`` (JSON in the Hugging Face task convention, or a multipart image
upload), ``GET /v1/models``, ``/health``, ``/ready``, ``/metrics`` (Prometheus), ``/docs`` (OpenAPI) and
``/`` (the demo page and its assets under ``/static``, all served from the package: no CDN).

Safety by default: every error is a JSON body ``{"error": {"status", "field", "message"}}`` (never a stack
trace); request bodies, texts, items, image bytes and pixels are capped; each request has a timeout; no
route reads a path from the request; an API key, when set, is required everywhere but ``/health``; CORS is
off unless origins are given.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from emolab.faces.detectors import DEFAULT_DETECTOR, create_detector
from emolab.faces.photos import face_crops
from emolab.serving.batching import MicroBatcher
from emolab.serving.metrics import ServerMetrics
from emolab.serving.models import Limits, RequestError, ServedModel

STATIC = Path(__file__).parent / "static"
OPEN_ROUTES = ("/health",)


@dataclass
class ServeSettings:
    models: list[str]  # PATH or NAME=PATH, as given to `emolab serve`
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    max_batch: int = 32
    max_wait_ms: float = 0.0  # batches form from requests that queue while the model is busy; > 0 also holds one open
    threads: int | None = None  # inference threads (PyTorch and ONNX Runtime); None: the runtimes' defaults
    limits: Limits = field(default_factory=Limits)
    api_key: str | None = None
    cors_origins: list[str] = field(default_factory=list)
    detector: str = DEFAULT_DETECTOR  # the face detector of the faces route
    align_faces: bool = False  # turn face crops so the eyes are level (detectors with landmarks)

    def to_json(self) -> str:
        from dataclasses import asdict

        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServeSettings:
        raw = json.loads(text)
        return cls(**{**raw, "limits": Limits(**raw["limits"])})


def error_body(status: int, field_name: str | None, message: str) -> dict[str, Any]:
    return {"error": {"status": status, "field": field_name, "message": message}}


class _BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes is answered 413 before it is read whole."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await self._too_large(send)
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge()
            return message

        try:
            await self.app(scope, counted, send)
        except _TooLarge:
            await self._too_large(send)

    async def _too_large(self, send):
        body = json.dumps(error_body(413, "body", f"request body over {self.limit} bytes")).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


class _AuthAndCount:
    """ASGI middleware: the API key (every route but /health) and the request counter and latency by route
    template and status (plain ASGI: Starlette's BaseHTTPMiddleware costs more than a model call here)."""

    def __init__(self, app, api_key: str | None, metrics: ServerMetrics):
        self.app, self.api_key, self.metrics = app, api_key, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), [500]

        async def tracked(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        if self.api_key and scope["path"] not in OPEN_ROUTES and not _authorised(scope, self.api_key):
            response = JSONResponse(error_body(401, "authorization", "missing or wrong API key: send "
                                               "'Authorization: Bearer KEY' or 'X-API-Key: KEY'"), status_code=401)
            await response(scope, receive, tracked)
        else:
            await self.app(scope, receive, tracked)
        route = getattr(scope.get("route"), "path", "unmatched")
        self.metrics.requests.labels(route, str(status[0])).inc()
        self.metrics.latency.labels(route).observe(time.perf_counter() - start)


def create_app(settings: ServeSettings, *, served: list[ServedModel] | None = None):
    """The FastAPI app; ``served`` (tests) skips loading ``settings.models`` again."""
    models = {m.name: m for m in (served if served is not None else [ServedModel.load(s) for s in settings.models])}
    if len(models) != len(served if served is not None else settings.models):
        raise ValueError("two served models share a name; give them names with NAME=PATH")
    if settings.threads:
        import torch

        torch.set_num_threads(settings.threads)
        for m in models.values():
            m.model.set_threads(settings.threads)
    metrics = ServerMetrics()
    batchers: dict[str, MicroBatcher] = {}
    detector = create_detector(settings.detector) if any(m.card.image for m in models.values()) else None
    detection = ThreadPoolExecutor(max_workers=1, thread_name_prefix="emolab-detect")  # one detector, one thread
    state = {"ready": False}

    @asynccontextmanager
    async def lifespan(_app):
        for name, m in models.items():
            batchers[name] = MicroBatcher(
                lambda x, m=m: m.model.predict_proba(x, batch_size=settings.max_batch),
                max_batch=settings.max_batch, max_wait_ms=settings.max_wait_ms,
                on_batch=lambda n, name=name: metrics.batch_size.labels(name).observe(n),
                on_queue=lambda n, name=name: metrics.queue_depth.labels(name).set(n))
            batchers[name].start()
        state["ready"] = True
        metrics.workers.inc()
        yield
        metrics.workers.dec()
        state["ready"] = False
        for b in batchers.values():
            await b.stop()
        detection.shutdown(wait=False)

    app = FastAPI(title="emolab", version="1", lifespan=lifespan,
                  description="Emotion and sentiment classifiers served by emolab.")

    def fail(status: int, field_name: str | None, message: str) -> JSONResponse:
        return JSONResponse(error_body(status, field_name, message), status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request, exc):
        return fail(exc.status_code, None, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request, exc):
        first = exc.errors()[0] if exc.errors() else {}
        return fail(422, ".".join(str(x) for x in first.get("loc", ())[1:]) or None, first.get("msg", "invalid request"))

    @app.exception_handler(Exception)
    async def _internal_error(_request, exc):  # the server keeps serving; no stack trace leaves it
        return fail(500, None, f"internal error ({type(exc).__name__})")

    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "X-API-Key", "Content-Type"])
    app.add_middleware(_BodyLimit, limit=settings.limits.max_body_bytes)
    app.add_middleware(_AuthAndCount, api_key=settings.api_key, metrics=metrics)  # outermost: sees every answer

    @app.get("/health", summary="Liveness: the process answers")
    async def health():
        return {"status": "ok"}

    @app.get("/ready", summary="Readiness: every model is loaded and its batcher running")
    async def ready():
        if not state["ready"]:
            return fail(503, None, "models are still loading")
        return {"status": "ready", "models": list(models)}

    @app.get("/metrics", summary="Prometheus metrics")
    async def prometheus():
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    @app.get("/v1/models", summary="The served models: name, modality, labels, summary and test metrics")
    async def list_served():
        return {"models": [m.describe() for m in models.values()],
                "limits": {k: v for k, v in settings.limits.__dict__.items()}}

    @app.post("/v1/models/{name}/predict", summary="Labels and scores for texts or face images")
    async def predict(name: str, request: Request):
        served_model = models.get(name)
        if served_model is None:
            return fail(404, "name", f"unknown model {name!r}; served: {', '.join(models)}")
        try:
            inputs, top_k = await _read_inputs(request, served_model, settings.limits)
            probs = await asyncio.wait_for(batchers[name].submit(inputs), timeout=settings.limits.timeout_s)
        except RequestError as exc:
            return fail(exc.status, exc.field, exc.message)
        except asyncio.TimeoutError:
            return fail(504, None, f"no answer within the {settings.limits.timeout_s:g} s request timeout")
        return served_model.format(probs, top_k)

    @app.post("/v1/models/{name}/faces", summary="Every face in photos: its box, detector score and labels")
    async def faces(name: str, request: Request):
        """Photos (base64 JSON or an upload) through face detection, as `emolab predict FACE_RUN photo.jpg`:
        for each photo a list of faces, largest first, each ``{"box": {xmin, ymin, xmax, ymax}, "score",
        "label", "labels": [{"label", "score"}, ...]}`` (box and score null for an image taken as a cropped
        face; an empty list when no face is found)."""
        served_model = models.get(name)
        if served_model is None:
            return fail(404, "name", f"unknown model {name!r}; served: {', '.join(models)}")
        if not served_model.card.image:
            return fail(422, "name", f"{name} reads text; faces are found in photos for image models")
        try:
            photos, top_k = await _read_inputs(request, served_model, settings.limits, photos=True)
            found = await asyncio.get_running_loop().run_in_executor(
                detection, lambda: [face_crops(image, side_of(served_model), detector, 24, settings.align_faces)
                                    for image, _ in photos])
            crops = [crop for faces_ in found for _, crop in faces_]
            probs = await asyncio.wait_for(batchers[name].submit(crops), timeout=settings.limits.timeout_s) \
                if crops else []
        except RequestError as exc:
            return fail(exc.status, exc.field, exc.message)
        except asyncio.TimeoutError:
            return fail(504, None, f"no answer within the {settings.limits.timeout_s:g} s request timeout")
        labelled = iter(served_model.format(probs, top_k)) if crops else iter(())
        out = []
        for (_image, scale), faces_ in zip(photos, found):
            out.append([])
            for box, _crop in faces_:
                labels = next(labelled)
                where = None if box is None else {k: round(v * scale) for k, v in box.to_dict().items() if k != "score"}
                out[-1].append({"box": where, "score": None if box is None else box.score,
                                "label": labels[0]["label"], "labels": labels})
        return out

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.state.models, app.state.metrics, app.state.settings = models, metrics, settings
    return app


def side_of(served: ServedModel) -> int:
    return int(served.card.input.get("side", 48))


def _authorised(scope, key: str) -> bool:
    from urllib.parse import parse_qs

    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}
    given = headers.get("x-api-key") or ""
    auth = headers.get("authorization") or ""
    if auth.lower().startswith("bearer "):
        given = given or auth[7:].strip()
    if not given:  # the demo page passes the key on from its own URL
        given = (parse_qs(scope.get("query_string", b"").decode("latin-1")).get("api_key") or [""])[0]
    return hmac.compare_digest(given.encode(), key.encode())


async def _read_inputs(request, served: ServedModel, limits: Limits, *, photos: bool = False) -> tuple[list, int | None]:
    content_type = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if content_type == "application/json":
        raw = await request.body()
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RequestError(400, "body", f"malformed JSON ({exc})") from None
        return served.parse_json(body, limits, photos=photos)
    if content_type == "multipart/form-data":
        if not served.card.image:
            raise RequestError(415, "content-type", f"{served.name} reads text: send JSON {{\"inputs\": \"...\"}}")
        form = await request.form(max_files=limits.max_items, max_fields=limits.max_items + 1)
        files = [v for k, v in form.multi_items() if hasattr(v, "read")]
        if not files:
            raise RequestError(422, "file", "no file in the upload (form field 'file')")
        inputs = []
        for i, upload in enumerate(files):
            data = await upload.read(limits.max_image_bytes + 1)
            decode = served.decode_photo if photos else served.decode_image
            inputs.append(decode(data, f"file[{i}]", limits))
        top_k = form.get("top_k")
        return inputs, served.top_k({"top_k": int(top_k)} if isinstance(top_k, str) and top_k.isdigit() else None)
    raise RequestError(415, "content-type", f"unsupported content type {content_type or '(none)'!r}: send "
                                            "application/json, or multipart/form-data for images")


def app_from_env():
    """The app of one ``uvicorn --workers N`` worker: settings come from ``EMOLAB_SERVE_SETTINGS``."""
    import os

    return create_app(ServeSettings.from_json(os.environ["EMOLAB_SERVE_SETTINGS"]))
