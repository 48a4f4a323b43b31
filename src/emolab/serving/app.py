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

This module wires the app: the settings (:mod:`~emolab.serving.settings`), the loaded models and their
batchers (:mod:`~emolab.serving.state`), the middleware (:mod:`~emolab.serving.middleware`), the error answers
and the routes (:mod:`~emolab.serving.routes`), whose schema :mod:`~emolab.serving.openapi` completes.
"""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from emolab.serving.middleware import AuthAndCount, BodyGuard, error_body
from emolab.serving.models import RequestError, ServedModel
from emolab.serving.openapi import openapi
from emolab.serving.routes import STATIC, SWAGGER, router, swagger_files
from emolab.serving.settings import ServeSettings
from emolab.serving.state import ServerState


def create_app(settings: ServeSettings, *, served: list[ServedModel] | None = None) -> FastAPI:
    """The FastAPI app: the models of ``settings`` (``served``, already loaded, skips loading them again), each
    batched with its own settings (``settings.batching``, else the server's), behind the middleware."""
    state = ServerState.load(settings, served)
    app = FastAPI(title="emolab", version="1", lifespan=_lifespan, docs_url=None, redoc_url=None,
                  swagger_ui_oauth2_redirect_url=None,
                  description="Emotion and sentiment classifiers served by emolab." + (
                      " Every route but /health, /docs and /openapi.json needs the API key: 'Authorize' "
                      "takes it (as X-API-Key, or as an HTTP bearer token)." if settings.api_key else ""))
    app.openapi = lambda: openapi(app, bool(settings.api_key))
    for exc_class, handler in _HANDLERS.items():
        app.add_exception_handler(exc_class, handler)
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "X-API-Key", "Content-Type"])
    app.add_middleware(BodyGuard, limit=settings.limits.max_body_bytes, timeout_s=settings.limits.body_timeout_s)
    app.add_middleware(AuthAndCount, api_key=settings.api_key, metrics=state.metrics)  # outermost: sees every answer
    app.include_router(router)
    app.mount(SWAGGER, StaticFiles(directory=swagger_files()), name="swagger-ui")  # before /static: longer prefix
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.state.server = state
    app.state.models, app.state.metrics, app.state.settings = state.models, state.metrics, settings
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI):
    await app.state.server.start()
    yield
    await app.state.server.stop()


def _fail(status: int, field_name: str | None, message: str) -> JSONResponse:
    return JSONResponse(error_body(status, field_name, message), status_code=status)


async def _request_error(_request: Request, exc: RequestError):
    return _fail(exc.status, exc.field, exc.message)


async def _timeout(request: Request, _exc: TimeoutError):  # asyncio.TimeoutError: the request ran out of time
    return _fail(504, None, f"no answer within the {request.app.state.server.settings.limits.timeout_s:g} s "
                            "request timeout")


async def _http_error(_request: Request, exc: StarletteHTTPException):
    return _fail(exc.status_code, None, str(exc.detail))


async def _validation_error(_request: Request, exc: RequestValidationError):
    first = exc.errors()[0] if exc.errors() else {}
    return _fail(422, ".".join(str(x) for x in first.get("loc", ())[1:]) or None, first.get("msg", "invalid request"))


async def _internal_error(_request: Request, exc: Exception):  # the server keeps serving; no stack trace leaves it
    return _fail(500, None, f"internal error ({type(exc).__name__})")


_HANDLERS = {RequestError: _request_error, TimeoutError: _timeout, StarletteHTTPException: _http_error,
             RequestValidationError: _validation_error, Exception: _internal_error}


def app_from_env():
    """The app of one ``uvicorn --workers N`` worker: settings come from ``EMOLAB_SERVE_SETTINGS``."""
    import os

    return create_app(ServeSettings.from_json(os.environ["EMOLAB_SERVE_SETTINGS"]))
