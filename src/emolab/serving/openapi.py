"""The OpenAPI document of the server: FastAPI's, plus what FastAPI cannot see (the request bodies read by hand,
the answers' shapes, the error answers and the API key's security schemes)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from emolab.serving.middleware import OPEN_ROUTES

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


def openapi(app: FastAPI, keyed: bool) -> dict[str, Any]:
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
