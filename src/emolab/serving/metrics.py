"""Prometheus metrics of a server (prometheus-client): requests by route and status, latency, batch sizes
and queue depth per model. With several workers (``PROMETHEUS_MULTIPROC_DIR`` set) every worker writes
its own files and ``/metrics`` adds them up; the live gauges of workers that died are dropped first."""

from __future__ import annotations

import os

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class ServerMetrics:
    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        # one registry per app (tests run several); in multiprocess mode the values live in files
        self.registry = None if self.multiprocess else CollectorRegistry()
        kw = {} if self.multiprocess else {"registry": self.registry}
        self.requests = Counter("emolab_requests", "HTTP requests by route and status", ["route", "status"], **kw)
        self.latency = Histogram("emolab_request_seconds", "Request latency by route", ["route"], **kw)
        self.batch_size = Histogram("emolab_batch_size", "Items per model call (micro-batches)", ["model"],
                                    buckets=BATCH_BUCKETS, **kw)
        gauge_kw = {"multiprocess_mode": "livesum"} if self.multiprocess else {}
        self.queue_depth = Gauge("emolab_queue_depth", "Items waiting for a model call", ["model"], **kw, **gauge_kw)
        self.workers = Gauge("emolab_workers", "Server processes with their models loaded", **kw, **gauge_kw)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        if self.multiprocess:
            from prometheus_client import multiprocess

            forget_dead_workers(os.environ["PROMETHEUS_MULTIPROC_DIR"])
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def forget_dead_workers(folder: str) -> None:
    """Drop the live gauges (``emolab_workers``, queue depth) of worker processes that have died, e.g. a
    killed worker the supervisor has replaced: without this its last values stay in the sums."""
    from pathlib import Path

    from prometheus_client import multiprocess

    pids = {int(p.stem.rsplit("_", 1)[1]) for p in Path(folder).glob("gauge_live*_*.db")
            if p.stem.rsplit("_", 1)[1].isdigit()}
    for pid in pids:
        if not _alive(pid):
            multiprocess.mark_process_dead(pid, folder)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed worker not yet reaped by its parent is a zombie: dead
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True
