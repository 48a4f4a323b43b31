"""Running the app under uvicorn: one process, or ``--workers N`` stateless processes that each load the
models and share one Prometheus view (prometheus-client's multiprocess mode)."""

from __future__ import annotations

import os
import tempfile
from typing import Callable

from emolab.serving.app import ServeSettings, create_app

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def serve(settings: ServeSettings, *, say: Callable[[str], None] = print) -> None:
    import uvicorn

    if settings.host not in LOOPBACK:
        say(f"warning: listening on {settings.host}: reachable from other machines"
            + ("" if settings.api_key else "; consider --api-key"))
    say(f"serving {', '.join(settings.models)} on http://{settings.host}:{settings.port} "
        f"(demo page /, API /v1/models, docs /docs, metrics /metrics)")
    if settings.workers <= 1:
        uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="warning")
        return
    os.environ["EMOLAB_SERVE_SETTINGS"] = settings.to_json()
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="emolab-metrics-"))
    uvicorn.run("emolab.serving.app:app_from_env", factory=True, host=settings.host, port=settings.port,
                workers=settings.workers, log_level="warning")
