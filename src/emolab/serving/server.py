"""Running the app under uvicorn: one process, or ``--workers N`` stateless processes that each load the
models and share one Prometheus view (prometheus-client's multiprocess mode).

Slow clients are cut off: a connection that has not sent a request's headers whole within
``header_timeout_s`` is closed (``GuardedH11Protocol``; uvicorn itself only times out idle keep-alive
connections), an idle keep-alive one after ``keep_alive_s``, a body not read whole within the body timeout
is answered 408 (the app), headers are capped at 16 KiB and at most ``max_connections`` connections are
served at once (503 beyond)."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from typing import Any, Callable

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from emolab.serving.app import create_app
from emolab.serving.settings import ServeSettings

LOOPBACK = ("127.0.0.1", "localhost", "::1")
MAX_HEADER_BYTES = 16 * 1024


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, plus a deadline for each request's headers: armed when the connection opens
    and after each response, the connection is closed when it fires while the headers are still incomplete
    (a client that connects and sends nothing, or trickles its headers). The deadline is the uvicorn
    config's ``emolab_header_timeout_s``."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_deadline: asyncio.TimerHandle | None = None
        self._arm_header_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        if getattr(self, "_header_deadline", None) is not None:
            self._header_deadline.cancel()
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
        timeout = getattr(self.config, "emolab_header_timeout_s", None)
        if timeout and not self.transport.is_closing():
            self._header_deadline = self.loop.call_later(timeout, self._headers_late)

    def _headers_late(self) -> None:
        self._header_deadline = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():  # no whole request yet
            self.transport.close()


def uvicorn_config(app: Any, settings: ServeSettings, **kwargs: Any):
    """The uvicorn config of a server: ``app`` (or an import string with ``factory=True``) with the
    slow-client limits of ``settings``; ``kwargs`` go to ``uvicorn.Config``."""
    import uvicorn

    # the protocol by name: a worker process imports it once its health-check thread runs (a class here
    # would be unpickled, importing the app, before that thread starts, and the supervisor would kill it)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning",
                            http=f"{__name__}:GuardedH11Protocol", timeout_keep_alive=settings.keep_alive_s,
                            limit_concurrency=settings.max_connections, timeout_graceful_shutdown=10,
                            h11_max_incomplete_event_size=MAX_HEADER_BYTES, **kwargs)
    config.emolab_header_timeout_s = settings.header_timeout_s  # read by GuardedH11Protocol (pickled to workers)
    return config


def serve(settings: ServeSettings, *, say: Callable[[str], None] = print) -> None:
    import uvicorn

    if settings.batching:  # a model named there but not served: said before any model loads or worker starts
        from emolab.serving.models import served_name

        settings.check_batching([served_name(spec) for spec in settings.models])
    if settings.host not in LOOPBACK:
        say(f"warning: listening on {settings.host}: reachable from other machines"
            + ("" if settings.api_key else "; consider setting EMOLAB_API_KEY"))
    say(f"serving {', '.join(settings.models)} on http://{settings.host}:{settings.port} "
        f"(demo page /, API /v1/models, docs /docs, metrics /metrics)")
    if settings.workers <= 1:
        server = uvicorn.Server(uvicorn_config(create_app(settings), settings))
        server.run()
        if not server.started:  # e.g. the port is taken (uvicorn has said so)
            raise SystemExit(3)
        return
    from uvicorn.supervisors import Multiprocess

    os.environ["EMOLAB_SERVE_SETTINGS"] = settings.to_json()
    made = None
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        made = os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="emolab-metrics-")
    try:
        config = uvicorn_config("emolab.serving.app:app_from_env", settings, factory=True, workers=settings.workers)
        Multiprocess(config, sockets=[config.bind_socket()]).run()
    except KeyboardInterrupt:
        pass
    finally:
        if made:  # the metrics folder this server made (one given by the caller is the caller's)
            shutil.rmtree(made, ignore_errors=True)
            os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
