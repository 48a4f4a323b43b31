"""The routes: each parses its request, calls the served model (through its batcher) and shapes the answer.
What a route needs of the server comes from ``request.app.state.server`` (:class:`ServerState`), through the
``server`` and ``served_model`` dependencies; every refusal is a :class:`RequestError` (or, past the request
timeout, an ``asyncio.TimeoutError``), which the app answers as ``{"error": {...}}``."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, Response

from emolab.faces.photos import FaceRow
from emolab.serving.models import RequestError, ServedModel
from emolab.serving.openapi import INPUTS_BODY
from emolab.serving.state import ServerState

STATIC = Path(__file__).parent / "static"  # the demo page and its assets (mounted at /static)
SWAGGER = "/static/swagger-ui"  # Swagger UI's files, from the swagger-ui-py package (Swagger UI 5, Apache-2.0), no CDN


def swagger_files() -> Path:
    """The folder of Swagger UI's files in the swagger-ui-py package (mounted at ``SWAGGER``)."""
    return Path(importlib.util.find_spec("swagger_ui").origin).parent / "static"


def server(request: Request) -> ServerState:
    return request.app.state.server


async def served_model(name: str, request: Request) -> ServedModel:
    """The model the path names (404 when none is served under that name)."""
    return server(request).model(name)


router = APIRouter()


@router.head("/health", include_in_schema=False)  # load balancers and `curl -I` probe with HEAD
@router.get("/health", summary="Liveness: the process answers")
async def health():
    return {"status": "ok"}


@router.get("/ready", summary="Readiness: every model is loaded and its batcher running")
async def ready(request: Request):
    state = server(request)
    if not state.ready:
        raise RequestError(503, None, "models are still loading")
    return {"status": "ready", "models": list(state.models)}


@router.get("/metrics", summary="Prometheus metrics")
async def prometheus(request: Request):
    body, content_type = server(request).metrics.render()
    return Response(body, media_type=content_type)


@router.get("/v1/models", summary="The served models: name, modality, labels, summary and test metrics")
async def list_served(request: Request):
    state = server(request)
    return {"models": [m.describe() for m in state.models.values()],
            "limits": {k: v for k, v in state.settings.limits.__dict__.items()}}


@router.post("/v1/models/{name}/predict", summary="Labels and scores for texts, or for the face in each image",
             openapi_extra={"requestBody": INPUTS_BODY})
async def predict(request: Request, model: ServedModel = Depends(served_model)):
    """Text models: each text's labels. Image models: each image's face is found as `emolab predict
    FACE_RUN photo.jpg` finds it (a small square image, up to twice the model's side, is taken as a face
    crop), and the labels are those of its **largest** face; an image with no face is answered 422 (the
    faces route lists every face of a photo, or none)."""
    state = server(request)
    inputs, top_k = await read_inputs(request, model, state)
    if model.card.image:
        found = await state.find_faces(model.name, inputs, _items_field(request))
        for rows in found:
            if rows[0].face is None:
                raise RequestError(422, rows[0].file, "no face found in this image; "
                                   f"POST /v1/models/{model.name}/faces lists the faces of photos (none here)")
        inputs = [rows[0].crop for rows in found]  # the largest face of each
    return model.format(await state.classify(model.name, inputs), top_k)


@router.post("/v1/models/{name}/faces", summary="Every face in photos: its box, detector score and labels",
             openapi_extra={"requestBody": INPUTS_BODY})
async def faces(request: Request, model: ServedModel = Depends(served_model)):
    """Photos (base64 JSON or an upload) through face detection, as `emolab predict FACE_RUN photo.jpg`:
    for each photo a list of faces, largest first, each ``{"box": {xmin, ymin, xmax, ymax}, "score",
    "label", "labels": [{"label", "score"}, ...]}`` (box and score null for an image taken as a cropped
    face; an empty list when no face is found)."""
    if not model.card.image:
        raise RequestError(422, "name", f"{model.name} reads text; faces are found in photos for image models")
    state = server(request)
    photos, top_k = await read_inputs(request, model, state)
    found = [[row for row in rows if row.face is not None]
             for rows in await state.find_faces(model.name, photos, _items_field(request))]
    crops = [row.crop for rows in found for row in rows]
    labelled = iter(model.format(await state.classify(model.name, crops), top_k) if crops else ())
    return [[face_json(row, next(labelled)) for row in rows] for rows in found]


@router.get("/docs", include_in_schema=False)
async def docs(request: Request):
    from fastapi.openapi.docs import get_swagger_ui_html

    root = request.scope.get("root_path", "").rstrip("/")
    return get_swagger_ui_html(
        openapi_url=root + request.app.openapi_url, title="emolab API", oauth2_redirect_url=None,
        swagger_js_url=f"{root}{SWAGGER}/swagger-ui-bundle.js", swagger_css_url=f"{root}{SWAGGER}/swagger-ui.css",
        swagger_favicon_url=f"{root}{SWAGGER}/favicon-32x32.png",
        swagger_ui_parameters={"validatorUrl": None})  # no call to validator.swagger.io


@router.get("/", include_in_schema=False)
async def page():
    return FileResponse(STATIC / "index.html", media_type="text/html")


# --- requests -> inputs; face rows -> answers ---

def face_json(row: FaceRow, labels: list[dict[str, Any]]) -> dict[str, Any]:
    """A face of the faces route: its box in the photo's pixels (null for an image taken as a cropped face),
    the detector's score and the labels."""
    box = row.photo_box()
    return {"box": None if box is None else {k: v for k, v in box.items() if k != "score"},
            "score": None if box is None else box["score"], "label": labels[0]["label"], "labels": labels}


def _items_field(request: Request) -> str:
    """Where a request's images are: the form field ``file`` of an upload, else the JSON ``inputs``."""
    return "file" if "multipart/" in (request.headers.get("content-type") or "") else "inputs"


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


async def read_inputs(request: Request, served: ServedModel, state: ServerState) -> tuple[list, int | None]:
    """The request's texts, or whole images (``(rgb, scale)``: faces are found in them next), and ``top_k``;
    images are checked and decoded in the decoder's threads."""
    limits, decoder = state.settings.limits, state.decoder
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
