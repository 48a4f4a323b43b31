"""The server's ASGI middleware, plain ASGI (Starlette's BaseHTTPMiddleware costs more than a model call
here): the request body's size and time limits, and the API key with the request counter around everything."""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from typing import Any

from fastapi.responses import JSONResponse

from emolab.serving.metrics import ServerMetrics

OPEN_ROUTES = ("/health", "/docs", "/openapi.json")  # the docs page and the schema: the same for every server
OPEN_PREFIXES = ("/static/",)  # the demo page's own script and style sheet: files of the package, no data
PAGE = "/"  # the one route that takes the API key from its URL (?api_key=KEY), to hand it to the page's scripts


def error_body(status: int, field_name: str | None, message: str) -> dict[str, Any]:
    return {"error": {"status": status, "field": field_name, "message": message}}


class BodyGuard:
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


class AuthAndCount:
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
