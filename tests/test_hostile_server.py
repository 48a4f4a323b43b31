"""`emolab serve` against hostile input: texts a tokenizer cannot read, a model that fails on one input of a
batch, heavy images, slow clients, inputs that used to raise 500, the API key's places, the workers' metrics,
and requests generated from the OpenAPI schema (Schemathesis). Each test runs real uvicorn servers on
127.0.0.1 and sends a bounded number of requests."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import pytest

from emolab.records import LabelSet
from emolab.serving import Limits, ServeSettings, ServedModel, create_app
from emolab.serving.server import uvicorn_config
from tests.conftest import TINY_ENCODER
from tests.test_serving import model_dirs, png  # noqa: F401 - model_dirs is a fixture


class GuardedServer:
    """The app under the uvicorn config `emolab serve` uses (slow-client limits), on a free 127.0.0.1 port."""

    def __init__(self, settings: ServeSettings, served: list[ServedModel] | None = None):
        import uvicorn

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn_config(create_app(settings, served=served), settings))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            assert time.time() < deadline, "server did not start"
            time.sleep(0.05)

    def close(self):
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.sock.close()


def healthy(url: str, within_s: float = 2.0) -> float:
    """Seconds /health took; fails when it does not answer 200 within ``within_s``."""
    start = time.perf_counter()
    r = httpx.get(f"{url}/health", timeout=within_s)
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    return time.perf_counter() - start


def served(model_dirs, names=("moods", "faces")) -> list[ServedModel]:  # noqa: F811
    text_run, faces = model_dirs
    paths = {"moods": str(text_run), "faces": f"faces={faces}"}
    return [ServedModel.load(paths[n]) for n in names]


async def _post_all(url: str, bodies: list) -> list[httpx.Response]:
    """Concurrent JSON posts; the JSON is ASCII (a lone surrogate travels as its escape, as any client's JSON)."""
    async with httpx.AsyncClient(timeout=30) as client:
        return await asyncio.gather(*(client.post(url, content=json.dumps(b), headers={
            "content-type": "application/json"}) for b in bodies))


@pytest.fixture(scope="module")
def server(model_dirs):  # noqa: F811
    settings = ServeSettings(models=[], max_wait_ms=30.0, limits=Limits(
        max_text_chars=200, max_items=8, max_image_bytes=200_000, max_image_pixels=600 * 600,
        max_request_pixels=3 * 48 * 48, max_body_bytes=400_000, timeout_s=10.0))
    live = GuardedServer(settings, served(model_dirs))
    yield live
    live.close()


# --- 1. texts a tokenizer cannot read; a batch that fails ---

@pytest.fixture(scope="module")
def transformer_dir(tmp_path_factory):
    from emolab.models import create_model, model_config

    folder = tmp_path_factory.mktemp("tiny-transformer")
    model = create_model(model_config("transformer", backbone_config=dict(TINY_ENCODER), max_length=32),
                         LabelSet(("anger", "fear", "joy")))
    model.save(folder)
    return folder


def test_unreadable_texts_are_refused_per_request_and_fail_no_batch(transformer_dir):
    """A lone surrogate is valid JSON but makes the tokenizer raise: it used to fail its whole micro-batch."""
    live = GuardedServer(ServeSettings(models=[], max_wait_ms=50.0), [ServedModel.load(f"tiny={transformer_dir}")])
    try:
        url = f"{live.url}/v1/models/tiny/predict"
        bad = [{"inputs": "\ud800"}, {"inputs": ["fine", "a\udfffb"]}, {"inputs": "nul\x00byte"},
               {"inputs": "escape \x1b[31m"}]
        good = [{"inputs": f"i feel glad {i}"} for i in range(30)]
        answers = asyncio.run(_post_all(url, bad + good))
        for body, r in zip(bad, answers):
            assert r.status_code == 422, (body, r.text)
            assert r.json()["error"]["field"] in ("inputs[0]", "inputs[1]")
        assert [r.status_code for r in answers[len(bad):]] == [200] * len(good)
        ok = httpx.post(url, json={"inputs": "tabs\tand\nnew lines\r\nare text"})
        assert ok.status_code == 200 and len(ok.json()) == 1
        healthy(live.url)
    finally:
        live.close()


def test_a_failed_batch_is_retried_one_request_at_a_time(model_dirs):  # noqa: F811
    """A model that raises on one input fails only the request that holds it, not those batched with it."""
    moods = served(model_dirs, ["moods"])[0]
    predict, calls = moods.model.predict_proba, []

    def fragile(texts, batch_size=64):
        calls.append(len(texts))
        if "poison" in texts:
            raise RuntimeError("the model cannot read this")
        return predict(texts, batch_size=batch_size)

    moods.model.predict_proba = fragile
    live = GuardedServer(ServeSettings(models=[], max_wait_ms=200.0), [moods])
    try:
        bodies = [{"inputs": ["i feel glad", "so scared"]} for _ in range(9)]
        bodies.insert(4, {"inputs": "poison"})
        answers = asyncio.run(_post_all(f"{live.url}/v1/models/moods/predict", bodies))
        statuses = [r.status_code for r in answers]
        assert statuses == [200] * 4 + [500] + [200] * 5, statuses
        assert answers[4].json()["error"]["message"] == "internal error (RuntimeError)"
        assert max(calls) > 2  # requests were batched together, and the batch that held the poison failed
        want = predict(["i feel glad", "so scared"])
        for r in answers[:4] + answers[5:]:
            assert [max(x["score"] for x in row) for row in r.json()] == pytest.approx(want.max(axis=1))
        healthy(live.url)
    finally:
        live.close()


# --- 2. images: decoded off the event loop, a bounded number at once, a pixel budget per request ---

def test_health_answers_while_images_decode_and_decodes_are_bounded(model_dirs, monkeypatch):  # noqa: F811
    """Decodes held open in the pool: /health still answers at once, and only ``decode_threads`` run."""
    release, lock, state = threading.Event(), threading.Lock(), {"now": 0, "most": 0}
    decode = ServedModel.decode_photo

    def held(self, data, where, limits):
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
        try:
            assert release.wait(20)
            return decode(self, data, where, limits)
        finally:
            with lock:
                state["now"] -= 1

    monkeypatch.setattr(ServedModel, "decode_photo", held)
    live = GuardedServer(ServeSettings(models=[], decode_threads=2), served(model_dirs, ["faces"]))
    try:
        image = base64.b64encode(png(48)).decode()
        answers: list = []
        senders = [threading.Thread(target=lambda: answers.append(httpx.post(
            f"{live.url}/v1/models/faces/predict", json={"inputs": [image]}, timeout=30))) for _ in range(3)]
        for t in senders:
            t.start()
        deadline = time.time() + 10
        while state["now"] < 2:
            assert time.time() < deadline, "the decodes did not start"
            time.sleep(0.02)
        assert healthy(live.url, within_s=2.0) < 1.0
        time.sleep(0.3)
        assert state["now"] == 2  # the third request waits for a decode slot
        release.set()
        for t in senders:
            t.join(30)
        assert [r.status_code for r in answers] == [200] * 3 and state["most"] == 2
    finally:
        release.set()
        live.close()


def test_the_pixels_of_one_request_are_capped_together(server):
    small = base64.b64encode(png(48)).decode()
    ok = httpx.post(f"{server.url}/v1/models/faces/predict", json={"inputs": [small] * 3})
    assert ok.status_code == 200, ok.text
    over = httpx.post(f"{server.url}/v1/models/faces/predict", json={"inputs": [small] * 4})
    assert over.status_code == 413 and over.json()["error"]["field"] == "inputs"
    assert "9216 pixels in all the images of the request; at most 6912" in over.json()["error"]["message"]
    up = httpx.post(f"{server.url}/v1/models/faces/faces",
                    files=[("file", (f"{i}.png", png(48, seed=i), "image/png")) for i in range(4)])
    assert up.status_code == 413 and "at most 6912" in up.json()["error"]["message"]
    healthy(server.url)


# --- 3. slow clients ---

def _raw(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    return s


def _read_until_closed(s: socket.socket, within_s: float) -> bytes:
    """Everything the server sends until it closes the connection; fails after ``within_s``."""
    data, deadline = b"", time.time() + within_s
    while True:
        left = deadline - time.time()
        assert left > 0, f"the server kept the connection open (got {data[:80]!r})"
        ready, _, _ = select.select([s], [], [], left)
        if ready:
            try:
                chunk = s.recv(4096)
            except ConnectionResetError:
                return data
            if not chunk:
                return data
            data += chunk


@pytest.fixture(scope="module")
def strict(model_dirs):  # noqa: F811
    settings = ServeSettings(models=[], header_timeout_s=1.0, keep_alive_s=1.0,
                             limits=Limits(body_timeout_s=2.0))
    live = GuardedServer(settings, served(model_dirs, ["moods"]))
    yield live
    live.close()


def test_a_stalled_body_is_answered_408_and_others_are_served_meanwhile(strict):
    s = _raw(strict.port)
    try:
        s.sendall(b"POST /v1/models/moods/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 40\r\n\r\n{\"inp")
        r = httpx.post(f"{strict.url}/v1/models/moods/predict", json={"inputs": "i feel glad"})
        assert r.status_code == 200
        assert not select.select([s], [], [], 0)[0]  # served while the slow one still waits for its body
        answer = _read_until_closed(s, within_s=5)
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert b'"field": "body"' in answer and b"within 2 s" in answer
    finally:
        s.close()


def test_a_body_trickled_byte_by_byte_is_cut_off(strict):
    s = _raw(strict.port)
    try:
        s.sendall(b"POST /v1/models/moods/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 100\r\n\r\n")
        answer, start = b"", time.time()
        for byte in b'{"inputs": "' + b"a" * 80:  # one byte each 0.1 s: 9 s if nothing stopped it
            assert time.time() - start < 6, "the trickle was not cut off"
            try:
                s.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                break
            if select.select([s], [], [], 0.1)[0]:
                answer = _read_until_closed(s, within_s=2)
                break
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert 1.9 < time.time() - start < 5
        healthy(strict.url)
    finally:
        s.close()


def test_connections_without_whole_headers_or_idle_are_closed(strict):
    silent, trickle, idle = _raw(strict.port), _raw(strict.port), _raw(strict.port)
    try:
        trickle.sendall(b"GET /health HTTP/1.1\r\n")
        idle.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        start = time.time()
        for header in (b"Host: x\r\n", b"Accept: */*\r\n"):  # still trickling headers past the deadline
            time.sleep(0.4)
            trickle.sendall(header)
        healthy(strict.url)
        assert _read_until_closed(silent, within_s=3) == b""
        assert _read_until_closed(trickle, within_s=3) == b""
        assert _read_until_closed(idle, within_s=3).startswith(b"HTTP/1.1 200")  # answered, then closed
        assert time.time() - start < 3
    finally:
        for s in (silent, trickle, idle):
            s.close()


def test_connections_over_the_limit_get_503(model_dirs):  # noqa: F811
    live = GuardedServer(ServeSettings(models=[], max_connections=4, header_timeout_s=10.0),
                         served(model_dirs, ["moods"]))
    held = []
    try:
        held = [_raw(live.port) for _ in range(4)]
        time.sleep(0.2)
        refused = httpx.get(f"{live.url}/health")
        assert refused.status_code == 503
        for s in held:
            s.close()
        deadline = time.time() + 5
        while httpx.get(f"{live.url}/health").status_code != 200:
            assert time.time() < deadline, "connections were not freed"
            time.sleep(0.1)
    finally:
        for s in held:
            s.close()
        live.close()


# --- 4. inputs that used to be answered 500; HEAD; the API key's places ---

@pytest.mark.parametrize("model", ["moods", "faces"])
def test_json_nested_too_deep_is_400(server, model):
    body = b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    r = httpx.post(f"{server.url}/v1/models/{model}/predict", content=body,
                   headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"] == {"status": 400, "field": "body",
                                                          "message": "malformed JSON (nested too deep)"}
    huge = b'{"inputs": "hi", "parameters": {"top_k": ' + b"9" * 5000 + b"}}"
    r = httpx.post(f"{server.url}/v1/models/{model}/predict", content=huge,
                   headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["field"] == "body"
    healthy(server.url)


@pytest.mark.parametrize("top_k", ["²", "9" * 5000, "-1", "two", "0"])
def test_a_bad_multipart_top_k_is_422(server, top_k):
    r = httpx.post(f"{server.url}/v1/models/faces/predict", files={"file": ("a.png", png(), "image/png")},
                   data={"top_k": top_k})
    assert r.status_code == 422 and r.json()["error"]["field"] in ("top_k", "parameters.top_k"), r.text
    assert len(r.text) < 500
    good = httpx.post(f"{server.url}/v1/models/faces/predict", files={"file": ("a.png", png(), "image/png")},
                      data={"top_k": "2"})
    assert good.status_code == 200 and len(good.json()[0]) == 2


def test_a_data_url_without_a_comma_is_422(server):
    r = httpx.post(f"{server.url}/v1/models/faces/predict", json={"inputs": "data:image/png;base64"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "inputs[0]", r.text
    up = httpx.post(f"{server.url}/v1/models/faces/predict", files={"file": ("a.png", png(), "image/png"),
                                                                     "top_k": ("k.txt", b"2", "text/plain")})
    assert up.status_code == 422 and up.json()["error"]["message"] == "expected a positive integer, got a file"


def test_head_health_is_200(server):
    r = httpx.head(f"{server.url}/health")
    assert r.status_code == 200 and r.content == b""


def test_the_api_key_travels_in_a_header_and_only_the_page_takes_it_from_its_url(model_dirs):  # noqa: F811
    live = GuardedServer(ServeSettings(models=[], api_key="s3cret"), served(model_dirs, ["moods"]))
    try:
        for path in ("/v1/models", "/ready", "/metrics"):
            r = httpx.get(f"{live.url}{path}?api_key=s3cret")
            assert r.status_code == 401, path
        for path in ("/docs", "/openapi.json"):  # open: the docs page takes the key in 'Authorize', as a header
            assert httpx.get(f"{live.url}{path}").status_code == 200, path
        assert httpx.post(f"{live.url}/v1/models/moods/predict?api_key=s3cret",
                          json={"inputs": "hi"}).status_code == 401
        assert httpx.get(f"{live.url}/?api_key=s3cret").status_code == 200
        assert httpx.get(f"{live.url}/").status_code == 401
        page = httpx.get(f"{live.url}/?api_key=s3cret").text
        for asset in re.findall(r'(?:src|href)="(static/[^"]+)"', page):  # loaded by the browser without the key
            assert httpx.get(f"{live.url}/{asset}").status_code == 200, asset
        assert httpx.get(f"{live.url}/v1/models", headers={"X-API-Key": "s3cret"}).status_code == 200
    finally:
        live.close()


def test_serve_warns_when_the_key_is_on_the_command_line(monkeypatch, capsys, model_dirs):  # noqa: F811
    import emolab.serving
    from emolab.cli import main

    got = []
    monkeypatch.setattr(emolab.serving, "serve", lambda settings, say: got.append(settings))
    monkeypatch.setenv("COLUMNS", "200")

    def cli(*args) -> str:
        monkeypatch.setattr(sys, "argv", ["emolab", *args])
        try:
            main()
        except SystemExit as exc:
            assert exc.code == 0
        return capsys.readouterr().out

    monkeypatch.delenv("EMOLAB_API_KEY", raising=False)
    shown = cli("serve", str(model_dirs[0]), "--api-key", "s3cret")
    assert "warning: --api-key puts the key in the process's command line" in shown and "EMOLAB_API_KEY" in shown
    monkeypatch.setenv("EMOLAB_API_KEY", "fromenv")
    assert "warning" not in cli("serve", str(model_dirs[0]))
    assert [s.api_key for s in got] == ["s3cret", "fromenv"]
    assert "EMOLAB_API_KEY" in cli("serve", "--help")


# --- the workers' metrics ---

def test_the_gauges_of_a_dead_worker_are_dropped(tmp_path):
    """A worker killed before its lifespan's shutdown leaves emolab_workers 1 in its file: not counted.
    (In subprocesses: prometheus-client picks its multiprocess mode once per process, at import.)"""
    folder = tmp_path / "prom"
    folder.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder),
           "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    worker = ("from prometheus_client import Gauge; import os; "  # what a worker's ServerMetrics writes, then SIGKILL
              "Gauge('emolab_workers', 'workers', multiprocess_mode='livesum').inc(); os._exit(9)")
    subprocess.run([sys.executable, "-c", worker], env=env, timeout=60)
    assert len(list(folder.glob("gauge_livesum_*.db"))) == 1
    alive = ("from emolab.serving.metrics import ServerMetrics; m = ServerMetrics(); m.workers.inc(); "
             "import os; print(os.getpid()); print(m.render()[0].decode())")
    out = subprocess.run([sys.executable, "-c", alive], env=env, timeout=60, capture_output=True, text=True,
                         check=True).stdout
    assert re.search(r"^emolab_workers 1.0$", out, re.M), out
    assert [p.name for p in folder.glob("gauge_livesum_*.db")] == [f"gauge_livesum_{out.split()[0]}.db"]


@pytest.mark.slow
def test_a_replaced_worker_is_not_counted_and_the_metrics_folder_is_removed(model_dirs, tmp_path):  # noqa: F811
    """`--workers 2`: a killed worker is replaced and emolab_workers says 2, not 3; a clean stop removes the
    metrics folder the server made in the temp directory."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env.update(TMPDIR=str(temp), PYTHONPATH=os.pathsep.join([str(p) for p in sys.path if p]))
    log = tmp_path / "serve.log"  # a file, not a pipe: a pipe nobody reads would stall a talkative server
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "emolab.cli", "serve", str(model_dirs[0]), "--port",
                                 str(port), "--workers", "2"], env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def workers_metric() -> float | None:
        try:
            found = re.search(r"^emolab_workers (\S+)$", httpx.get(f"{url}/metrics", timeout=5).text, re.M)
        except httpx.HTTPError:
            return None
        return float(found.group(1)) if found else None

    def wait_for(condition, what, within_s=120):
        deadline = time.time() + within_s
        while not condition():
            assert proc.poll() is None, log.read_text()
            assert time.time() < deadline, f"{what}\n{log.read_text()}"
            time.sleep(0.5)

    try:
        wait_for(lambda: workers_metric() == 2.0, "the two workers did not start")
        (folder,) = temp.glob("emolab-metrics-*")
        pids = {int(p.stem.rsplit("_", 1)[1]) for p in folder.glob("gauge_livesum_*.db")}
        assert len(pids) == 2
        victim = min(pids)
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: len({int(p.stem.rsplit("_", 1)[1]) for p in folder.glob("gauge_livesum_*.db")} - pids) == 1,
                 "the killed worker was not replaced")
        wait_for(lambda: workers_metric() == 2.0, "emolab_workers does not read 2 after the replacement", 30)
        assert [workers_metric() for _ in range(4)] == [2.0] * 4
        assert not (folder / f"gauge_livesum_{victim}.db").exists()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert list(temp.glob("emolab-metrics-*")) == []


# --- 5. requests generated from the OpenAPI schema ---

def _fuzz(url: str, names: list[str], examples: int) -> int:
    """Requests generated by Schemathesis for every operation (valid and invalid ones, for each served model
    name and for generated names): each must be answered 2xx/4xx, in JSON for the API routes. Returns the
    number of requests sent."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode

    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    sent = []
    for result in schema.get_all_operations():
        operation = result.ok()
        fixed = [{"name": n} for n in names] + [None] if "{name}" in operation.path else [None]
        for path_parameters in fixed:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                strategy = operation.as_strategy(generation_mode=mode, path_parameters=path_parameters)

                @given(case=strategy)
                @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
                          suppress_health_check=list(HealthCheck))
                def check(case):
                    response = case.call(timeout=30)
                    sent.append(response.status_code)
                    assert response.status_code < 500, (case.as_curl_command(), response.text[:300])
                    if operation.path.startswith("/v1/") or response.status_code >= 400:
                        assert "error" in response.json() or response.status_code < 300, response.text[:300]

                try:
                    check()
                except Unsatisfiable:  # no invalid request exists for an operation that takes no input
                    assert mode is GenerationMode.NEGATIVE, operation.path
    return len(sent)


def test_schema_generated_requests_get_no_500_quick(server):
    assert _fuzz(server.url, ["moods", "faces"], examples=8) > 40
    healthy(server.url)
    assert httpx.get(f"{server.url}/ready").status_code == 200


@pytest.mark.slow
def test_schema_generated_requests_get_no_500(model_dirs):  # noqa: F811
    live = GuardedServer(ServeSettings(models=[], max_wait_ms=5.0), served(model_dirs))
    try:
        assert _fuzz(live.url, ["moods", "faces"], examples=150) > 1000
        healthy(live.url)
        r = httpx.post(f"{live.url}/v1/models/moods/predict", json={"inputs": "i feel glad"})
        assert r.status_code == 200 and r.json()[0][0]["label"]
    finally:
        live.close()
