"""``emolab serve``: the HTTP API (FastAPI) and the demo page over one or more saved models.

Routes: ``POST /v1/models/{name}/predict`` (JSON in the Hugging Face task convention, or a multipart image
upload), ``GET /v1/models``, ``/health``, ``/ready``, ``/metrics`` (Prometheus), ``/docs`` (Swagger UI) and
``/openapi.json``, and ``/`` (the demo page and its assets under ``/static``, all served from the package: no CDN).
A face model's predict route finds the face in each image as ``emolab predict`` does (largest face; 422 if none).

Safety by default: every error is a JSON body ``{"error": {"status", "field", "message"}}`` (never a stack
trace); request bodies, texts, items, image bytes and pixels are capped; each request has a timeout, and so
has the reading of its body; images are decoded in a small thread pool, never on the event loop; no route
reads a path from the request; an API key, when set, is required everywhere but ``/health``, the page's
assets and the API docs (``/docs``, ``/openapi.json``), in a header (only the demo page ``/`` also takes it
from its URL, to hand it to its scripts); CORS is off unless origins are given.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import re
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

from emolab.errors import EmolabError
from emolab.faces.detectors import DEFAULT_DETECTOR, DEFAULT_MIN_FACE, create_detector
from emolab.faces.photos import face_crops
from emolab.serving.batching import MicroBatcher
from emolab.serving.metrics import ServerMetrics
from emolab.serving.models import Limits, RequestError, ServedModel

STATIC = Path(__file__).parent / "static"
OPEN_ROUTES = ("/health", "/docs", "/openapi.json")  # the docs page and the schema: the same for every server
OPEN_PREFIXES = ("/static/",)  # the demo page's own script and style sheet: files of the package, no data
PAGE = "/"  # the one route that takes the API key from its URL (?api_key=KEY), to hand it to the page's scripts


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
    decode_threads: int = 2  # images decoded at once (a thread pool off the event loop); the others wait
    max_connections: int = 128  # open connections (or running requests) before new requests get 503
    keep_alive_s: float = 5.0  # an idle keep-alive connection is closed after this long
    header_timeout_s: float = 10.0  # a connection that has not sent a request's headers whole by then is closed

    def to_json(self) -> str:
        from dataclasses import asdict

        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServeSettings:
        raw = json.loads(text)
        return cls(**{**raw, "limits": Limits(**raw["limits"])})


SWAGGER = "/static/swagger-ui"  # Swagger UI's files, from the swagger-ui-py package (Swagger UI 5, Apache-2.0), no CDN
TINY_PNG = ("iVBORw0KGgoAAAANSUhEUgAAADAAAAAwCAAAAAByaaZbAAAAJElEQVR4nGNsYCANMJGoflTDqIZRDaMaRjWMahjVMKphiGsAAF"
            "oKAOA6DGKTAAAAAElFTkSuQmCC")  # a grey 48x48 PNG: the image example of the docs page
INPUTS_BODY = {  # the documented request body of the predict and faces routes (read by hand, not by FastAPI)
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object", "required": ["inputs"], "additionalProperties": False,
                "properties": {
                    "inputs": {"description": "text models: a text or a list of texts (at most --max-text-chars "
                                              "each); image models: base64 image data (PNG, JPEG, ...; a "
                                              "`data:image/...;base64,` URL too) or a list of them; at most "
                                              "--max-items items",
                               "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"},
                                                               "minItems": 1}]},
                    "parameters": {"type": "object", "additionalProperties": False,
                                   "properties": {"top_k": {"type": "integer", "minimum": 1,
                                                            "description": "only the k best labels"}}}}},
            "examples": {
                "texts": {"summary": "text model", "value": {"inputs": ["i feel great", "so scared"],
                                                             "parameters": {"top_k": 2}}},
                "image": {"summary": "image model (base64 PNG)", "value": {"inputs": TINY_PNG}},
            }},
        "multipart/form-data": {"schema": {
            "type": "object", "required": ["file"],
            "properties": {"file": {"type": "array", "minItems": 1,
                                    "items": {"type": "string", "format": "binary"},
                                    "description": "image models: one or more image files, each a form field "
                                                   "named 'file'"},
                           "top_k": {"type": "string", "pattern": "^[0-9]+$", "description": "only the k best labels"}}}},
    },
}
LABELS = {"type": "array", "items": {"type": "object", "required": ["label", "score"],
                                     "properties": {"label": {"type": "string"}, "score": {"type": "number"}}}}
FACE = {"type": "object", "properties": {
    "box": {"anyOf": [{"type": "object", "properties": {k: {"type": "integer"} for k in ("xmin", "ymin", "xmax", "ymax")}},
                      {"type": "null"}], "description": "in the photo's pixels; null for an image taken as a face crop"},
    "score": {"anyOf": [{"type": "number"}, {"type": "null"}], "description": "the detector's"},
    "label": {"type": "string"}, "labels": LABELS}}
ERROR = {"type": "object", "required": ["error"], "properties": {"error": {
    "type": "object", "required": ["status", "field", "message"],
    "properties": {"status": {"type": "integer", "description": "the HTTP status, again"},
                   "field": {"anyOf": [{"type": "string"}, {"type": "null"}],
                             "description": "the part of the request at fault, e.g. 'inputs[2]', 'parameters.top_k', "
                                            "'file[0]', 'body', 'name', 'authorization'"},
                   "message": {"type": "string", "description": "what is wrong, naming the limit broken"}}}}}
ERRORS = {  # the 4xx (and 5xx) answers each kind of route gives, all {"error": {...}}
    "predict": {400: "malformed JSON", 404: "unknown model", 408: "the request body came too slowly",
                413: "over a limit (body, items, text length, image bytes or pixels)",
                415: "unsupported content type (text models take JSON)",
                422: "an invalid request (inputs, parameters, base64, image, text; face models: no face in a photo)",
                503: "too many connections", 504: "no answer within the request timeout"},
    "other": {503: "not ready, or too many connections"},
}


def error_body(status: int, field_name: str | None, message: str) -> dict[str, Any]:
    return {"error": {"status": status, "field": field_name, "message": message}}


class _BodyGuard:
    """ASGI middleware: a request body over ``limit`` bytes is answered 413 before it is read whole, and one
    not read whole within ``timeout_s`` of the request's start (a client that stalls or trickles) 408, after
    which the connection is closed."""

    def __init__(self, app, limit: int, timeout_s: float):
        self.app, self.limit, self.timeout_s = app, limit, timeout_s

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await _answer(send, 413, "body", f"request body over {self.limit} bytes")
        seen, whole, started = 0, False, False
        deadline = time.monotonic() + self.timeout_s

        async def guarded():
            nonlocal seen, whole
            if whole:  # the body is in; what follows (a disconnect) is waited for as long as the app likes
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(deadline - time.monotonic(), 0.0))
            except asyncio.TimeoutError:
                raise _TooSlow() from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge()
                whole = not message.get("more_body", False)
            return message

        async def tracked(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, guarded, tracked)
        except _TooLarge:
            if not started:
                await _answer(send, 413, "body", f"request body over {self.limit} bytes")
        except _TooSlow:
            if not started:
                await _answer(send, 408, "body", f"request body not received whole within {self.timeout_s:g} s",
                              close=True)


async def _answer(send, status: int, field_name: str, message: str, *, close: bool = False) -> None:
    body = json.dumps(error_body(status, field_name, message)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status,
                "headers": headers + ([(b"connection", b"close")] if close else [])})
    await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


class _TooSlow(Exception):
    pass


class _Decoder:
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


class _AuthAndCount:
    """ASGI middleware: the API key (every route but the open ones) and the request counter and latency by route
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

        if self.api_key and not _open(scope["path"]) and not _authorised(scope, self.api_key):
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
        raise EmolabError("two served models share a name", hint="name them: emolab serve a=PATH b=PATH")
    if settings.threads:
        import sys

        if "torch" in sys.modules:  # a PyTorch model is served (ONNX exports never load torch)
            sys.modules["torch"].set_num_threads(settings.threads)
        for m in models.values():
            m.model.set_threads(settings.threads)
    metrics = ServerMetrics()
    batchers: dict[str, MicroBatcher] = {}
    detector = create_detector(settings.detector) if any(m.card.image for m in models.values()) else None
    detection = ThreadPoolExecutor(max_workers=1, thread_name_prefix="emolab-detect")  # one detector, one thread
    decoder = _Decoder(settings.decode_threads)
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
        decoder.pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="emolab", version="1", lifespan=lifespan, docs_url=None, redoc_url=None,
                  swagger_ui_oauth2_redirect_url=None,
                  description="Emotion and sentiment classifiers served by emolab." + (
                      " Every route but /health, /docs and /openapi.json needs the API key: 'Authorize' "
                      "takes it (as X-API-Key, or as an HTTP bearer token)." if settings.api_key else ""))
    app.openapi = lambda: _openapi(app, bool(settings.api_key))

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
    app.add_middleware(_BodyGuard, limit=settings.limits.max_body_bytes, timeout_s=settings.limits.body_timeout_s)
    app.add_middleware(_AuthAndCount, api_key=settings.api_key, metrics=metrics)  # outermost: sees every answer

    @app.head("/health", include_in_schema=False)  # load balancers and `curl -I` probe with HEAD
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

    def find_faces(served_model: ServedModel, photos: list) -> list:
        """Each photo's ``(box, crop)`` faces, largest first: the code of `emolab predict FACE_RUN photo.jpg`
        (a small square image is taken as a face crop, whole)."""
        return [face_crops(image, side_of(served_model), detector, DEFAULT_MIN_FACE, settings.align_faces) for image, _ in photos]

    @app.post("/v1/models/{name}/predict", summary="Labels and scores for texts, or for the face in each image",
              openapi_extra={"requestBody": INPUTS_BODY})
    async def predict(name: str, request: Request):
        """Text models: each text's labels. Image models: each image's face is found as `emolab predict
        FACE_RUN photo.jpg` finds it (a small square image, up to twice the model's side, is taken as a face
        crop), and the labels are those of its **largest** face; an image with no face is answered 422 (the
        faces route lists every face of a photo, or none)."""
        served_model = models.get(name)
        if served_model is None:
            return fail(404, "name", f"unknown model {name!r}; served: {', '.join(models)}")
        try:
            image = served_model.card.image
            inputs, top_k = await _read_inputs(request, served_model, settings.limits, decoder)
            if image:
                found = await asyncio.get_running_loop().run_in_executor(
                    detection, lambda: find_faces(served_model, inputs))
                field_name = "file" if "multipart/" in (request.headers.get("content-type") or "") else "inputs"
                for i, faces_ in enumerate(found):
                    if not faces_:
                        raise RequestError(422, f"{field_name}[{i}]", "no face found in this image; "
                                           f"POST /v1/models/{name}/faces lists the faces of photos (none here)")
                inputs = [faces_[0][1] for faces_ in found]  # the largest face of each
            probs = await asyncio.wait_for(batchers[name].submit(inputs), timeout=settings.limits.timeout_s)
        except RequestError as exc:
            return fail(exc.status, exc.field, exc.message)
        except asyncio.TimeoutError:
            return fail(504, None, f"no answer within the {settings.limits.timeout_s:g} s request timeout")
        return served_model.format(probs, top_k)

    @app.post("/v1/models/{name}/faces", summary="Every face in photos: its box, detector score and labels",
              openapi_extra={"requestBody": INPUTS_BODY})
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
            photos, top_k = await _read_inputs(request, served_model, settings.limits, decoder)
            found = await asyncio.get_running_loop().run_in_executor(detection, lambda: find_faces(served_model, photos))
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

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request):
        from fastapi.openapi.docs import get_swagger_ui_html

        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=root + app.openapi_url, title="emolab API", oauth2_redirect_url=None,
            swagger_js_url=f"{root}{SWAGGER}/swagger-ui-bundle.js", swagger_css_url=f"{root}{SWAGGER}/swagger-ui.css",
            swagger_favicon_url=f"{root}{SWAGGER}/favicon-32x32.png",
            swagger_ui_parameters={"validatorUrl": None})  # no call to validator.swagger.io

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    import importlib.util

    swagger_ui = Path(importlib.util.find_spec("swagger_ui").origin).parent / "static"  # swagger-ui-py's files
    app.mount(SWAGGER, StaticFiles(directory=swagger_ui), name="swagger-ui")  # before /static: longer prefix
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.state.models, app.state.metrics, app.state.settings = models, metrics, settings
    return app


def _openapi(app: FastAPI, keyed: bool) -> dict[str, Any]:
    """FastAPI's schema, plus what it cannot see: the error answers (``{"error": {...}}``, not FastAPI's own
    validation error), the response bodies of the routes read by hand and, with an API key, the two ways to
    send it (so /docs shows 'Authorize')."""
    if app.openapi_schema:
        return app.openapi_schema
    from fastapi.openapi.utils import get_openapi

    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    schemas.update({"Error": ERROR, "Labels": LABELS, "Face": FACE})
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    bodies = {"/v1/models/{name}/predict": {"type": "array", "items": {"$ref": "#/components/schemas/Labels"},
                                            "description": "per input, its labels sorted by score"},
              "/v1/models/{name}/faces": {"type": "array", "description": "per photo, its faces, largest first",
                                          "items": {"type": "array", "items": {"$ref": "#/components/schemas/Face"}}}}
    if keyed:
        components["securitySchemes"] = {
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            "bearer": {"type": "http", "scheme": "bearer", "description": "the API key as a bearer token"}}
    for path, item in schema["paths"].items():
        for operation in item.values():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            if path in bodies:
                responses["200"]["content"] = {"application/json": {"schema": bodies[path]}}
            codes = dict(ERRORS["predict" if path in bodies else "other"])
            if keyed and path not in OPEN_ROUTES:
                codes[401] = "missing or wrong API key"
                operation["security"] = [{"apiKey": []}, {"bearer": []}]
            if path in bodies:
                codes[500] = "an internal error (no stack trace: the server keeps serving)"
            for code, description in sorted(codes.items()):
                responses[str(code)] = {"description": description, "content": error}
    app.openapi_schema = schema
    return schema


def side_of(served: ServedModel) -> int:
    return served.card.side


def _open(path: str) -> bool:
    return path in OPEN_ROUTES or path.startswith(OPEN_PREFIXES)


def _authorised(scope, key: str) -> bool:
    """The key from 'X-API-Key' or 'Authorization: Bearer'; from the URL's ``api_key`` only on the demo page
    (a key in a URL ends up in logs and browser history: API clients send a header, as the page's scripts do)."""
    from urllib.parse import parse_qs

    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}
    given = headers.get("x-api-key") or ""
    auth = headers.get("authorization") or ""
    if auth.lower().startswith("bearer "):
        given = given or auth[7:].strip()
    if not given and scope["path"] == PAGE:  # the page's scripts take it from there and send it as X-API-Key
        given = (parse_qs(scope.get("query_string", b"").decode("latin-1")).get("api_key") or [""])[0]
    return hmac.compare_digest(given.encode(), key.encode())


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except RecursionError:
        raise RequestError(400, "body", "malformed JSON (nested too deep)") from None
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError, or an integer of over 4300 digits
        raise RequestError(400, "body", f"malformed JSON ({exc})") from None


def _form_top_k(value: Any) -> int | None:
    """The multipart ``top_k`` field: absent, or a positive integer in ASCII digits (``str.isdigit`` also takes
    '²', which ``int`` refuses)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise RequestError(422, "top_k", "expected a positive integer, got a file")
    if not re.fullmatch(r"[0-9]{1,9}", value.strip()):
        shown = value[:20] + "..." if len(value) > 20 else value
        raise RequestError(422, "top_k", f"expected a positive integer, got {shown!r}")
    return ServedModel.top_k({"top_k": int(value)})


async def _read_inputs(request, served: ServedModel, limits: Limits, decoder: _Decoder) -> tuple[list, int | None]:
    """The request's texts, or whole images (``(rgb, scale)``: faces are found in them next), and ``top_k``;
    images are checked and decoded in the decoder's threads."""
    content_type = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if content_type == "application/json":
        raw = await request.body()
        if not served.card.image:
            return served.parse_json(_json(raw), limits)
        return await decoder.run(lambda: served.parse_json(_json(raw), limits), limits.timeout_s)
    if content_type == "multipart/form-data":
        if not served.card.image:
            raise RequestError(415, "content-type", f"{served.name} reads text: send JSON {{\"inputs\": \"...\"}}")
        form = await request.form(max_files=limits.max_items, max_fields=limits.max_items + 1)
        files = [v for k, v in form.multi_items() if hasattr(v, "read")]
        if not files:
            raise RequestError(422, "file", "no file in the upload (form field 'file')")
        top_k = _form_top_k(form.get("top_k"))
        items = [(await upload.read(limits.max_image_bytes + 1), f"file[{i}]") for i, upload in enumerate(files)]
        return await decoder.run(lambda: served.decode_images(items, limits), limits.timeout_s), top_k
    raise RequestError(415, "content-type", f"unsupported content type {content_type or '(none)'!r}: send "
                                            "application/json, or multipart/form-data for images")


def app_from_env():
    """The app of one ``uvicorn --workers N`` worker: settings come from ``EMOLAB_SERVE_SETTINGS``."""
    import os

    return create_app(ServeSettings.from_json(os.environ["EMOLAB_SERVE_SETTINGS"]))
