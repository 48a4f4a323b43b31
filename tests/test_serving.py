"""`emolab serve`: every route, the Hugging Face response format, micro-batching, limits, bad requests
(answered 4xx JSON while the server keeps serving) and the API key, each against a real uvicorn server
started by the test on a free loopback port."""

from __future__ import annotations

import asyncio
import base64
import io
import re
import socket
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from emolab.config import config_from_dict
from emolab.labels import FER2013_LABELS
from emolab.models import create_model, load_model, model_config
from emolab.pipeline import run
from emolab.records import LabelSet
from emolab.serving import Limits, ServeSettings, ServedModel, create_app
from tests.conftest import make_texts


class LiveServer:
    """uvicorn in a thread on a free 127.0.0.1 port; stopped by ``close``."""

    def __init__(self, app):
        import uvicorn

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
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


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    texts, labels = make_texts(120)
    pd.DataFrame({"sentence": texts, "emotion": labels}).to_csv(root / "mine.csv", index=False)
    raw = {"data": {"name": "csv", "path": str(root / "mine.csv"), "text_column": "sentence",
                    "label_column": "emotion"}, "model": {"name": "tfidf"},
           "eval": {"timing": False, "report": False}, "output": {"dir": str(root / "runs"), "name": "moods"}}
    text_run = run(config_from_dict(raw), say=lambda _m: None)
    face = create_model(model_config("cnn-small", width=4, hidden_size=8), LabelSet(FER2013_LABELS))
    face.save(root / "faces")
    return text_run, root / "faces"


def start(model_dirs, **settings) -> LiveServer:
    text_run, faces = model_dirs
    cfg = ServeSettings(models=[str(text_run), f"faces={faces}"], **settings)
    return LiveServer(create_app(cfg))


@pytest.fixture(scope="module")
def server(model_dirs):
    live = start(model_dirs, max_wait_ms=30.0,
                 limits=Limits(max_text_chars=200, max_items=8, max_image_bytes=200_000, max_image_pixels=600 * 600,
                               max_body_bytes=400_000, timeout_s=10.0))
    yield live
    live.close()


def png(side: int = 48, seed: int = 0, noise: bool = True) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    pixels = np.random.default_rng(seed).integers(0, 255, (side, side), dtype=np.uint8) if noise else \
        np.full((side, side), 128, np.uint8)
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


def assert_healthy(server):
    assert httpx.get(f"{server.url}/health").json() == {"status": "ok"}


def test_health_ready_models_docs_and_page(server, model_dirs):
    assert_healthy(server)
    assert httpx.get(f"{server.url}/ready").json() == {"status": "ready", "models": ["moods", "faces"]}
    listing = httpx.get(f"{server.url}/v1/models").json()["models"]
    moods, faces = listing
    assert moods["modality"] == "text" and moods["labels"] == ["anger", "fear", "joy"]
    assert moods["metrics"]["split"] == "test" and 0 <= moods["metrics"]["accuracy"] <= 1
    assert faces["modality"] == "image" and faces["input"]["side"] == 48 and faces["metrics"] == {}
    assert "/v1/models/{name}/predict" in httpx.get(f"{server.url}/openapi.json").json()["paths"]
    assert httpx.get(f"{server.url}/docs").status_code == 200
    page = httpx.get(f"{server.url}/")
    assert page.status_code == 200 and "<title>emolab demo</title>" in page.text
    for asset in re.findall(r'(?:src|href)="(static/[^"]+)"', page.text):  # every asset is served here
        assert httpx.get(f"{server.url}/{asset}").status_code == 200, asset


def test_text_predictions_follow_the_hf_convention_and_equal_the_model(server, model_dirs):
    texts = ["i feel furious today", "so scared right now", "i feel glad"]
    r = httpx.post(f"{server.url}/v1/models/moods/predict", json={"inputs": texts})
    assert r.status_code == 200, r.text
    body = r.json()
    probs = load_model(model_dirs[0]).predict_proba(texts)
    names = ["anger", "fear", "joy"]
    for row, p in zip(body, probs):
        assert [x["label"] for x in row] == [names[i] for i in np.argsort(-p, kind="stable")]
        assert [x["score"] for x in row] == pytest.approx(sorted(p, reverse=True), abs=1e-9)
    one = httpx.post(f"{server.url}/v1/models/moods/predict",
                     json={"inputs": texts[0], "parameters": {"top_k": 1}}).json()
    assert one == [[body[0][0]]]


def test_image_predictions_from_base64_and_from_an_upload(server, model_dirs, tmp_path):
    from emolab.pipeline import predict_photos

    data = png(64)  # small and square: taken as a face crop, as `emolab predict` takes it
    (tmp_path / "face.png").write_bytes(data)
    rows, _ = predict_photos(model_dirs[1], [str(tmp_path / "face.png")], say=lambda _m: None)
    r = httpx.post(f"{server.url}/v1/models/faces/predict", json={"inputs": base64.b64encode(data).decode()})
    assert r.status_code == 200, r.text
    assert {x["label"]: x["score"] for x in r.json()[0]} == pytest.approx(dict(zip(FER2013_LABELS, rows[0].probs)))
    up = httpx.post(f"{server.url}/v1/models/faces/predict", files={"file": ("face.png", data, "image/png")})
    assert up.status_code == 200 and up.json() == r.json()
    url = "data:image/png;base64," + base64.b64encode(data).decode()  # what the page's webcam sends
    assert httpx.post(f"{server.url}/v1/models/faces/predict", json={"inputs": url}).json() == r.json()


def astronaut_png(tmp_path) -> Path:
    from PIL import Image
    from skimage.data import astronaut

    path = tmp_path / "astronaut.jpg"  # a JPEG: within the test server's image byte limit
    Image.fromarray(astronaut()).save(path, quality=90)
    return path


def test_a_face_models_predict_route_labels_the_largest_face_as_emolab_predict_does(server, model_dirs, tmp_path):
    """One behaviour for one model: the predict route of a face model finds the face in a photo with the code
    of `emolab predict` and the faces route, and answers with the largest face's labels; no face: 422."""
    from emolab.pipeline import predict_photos

    photo = astronaut_png(tmp_path)
    rows, _ = predict_photos(model_dirs[1], [str(photo)], say=lambda _m: None)
    rows = [r for r in rows if r.face is not None]
    assert rows and rows[0].box is not None  # her face is found, not the whole photo
    body = {"inputs": [base64.b64encode(photo.read_bytes()).decode(), base64.b64encode(png(48)).decode()]}
    predicted = httpx.post(f"{server.url}/v1/models/faces/predict", json=body)
    faces = httpx.post(f"{server.url}/v1/models/faces/faces", json=body)
    assert predicted.status_code == 200 and faces.status_code == 200, (predicted.text, faces.text)
    (astronaut, crop), (astronaut_faces, crop_faces) = predicted.json(), faces.json()
    largest = max(astronaut_faces, key=lambda f: (f["box"]["xmax"] - f["box"]["xmin"]) * (f["box"]["ymax"] - f["box"]["ymin"]))
    assert largest is astronaut_faces[0]  # the faces route lists the largest first
    assert astronaut[0]["label"] == largest["label"] == rows[0].label
    assert astronaut == largest["labels"] and crop == crop_faces[0]["labels"]
    assert [x["score"] for x in astronaut] == pytest.approx(sorted(rows[0].probs, reverse=True), abs=1e-6)
    up = httpx.post(f"{server.url}/v1/models/faces/predict",
                    files={"file": ("astronaut.jpg", photo.read_bytes(), "image/jpeg")}, data={"top_k": "1"})
    assert up.status_code == 200 and up.json() == [astronaut[:1]]

    from PIL import Image

    ramp = io.BytesIO()
    Image.fromarray(np.tile(np.arange(256, dtype=np.uint8), (200, 1))).save(ramp, "PNG")
    none = httpx.post(f"{server.url}/v1/models/faces/predict",
                      json={"inputs": [body["inputs"][1], base64.b64encode(ramp.getvalue()).decode()]})
    assert none.status_code == 422 and none.json()["error"]["field"] == "inputs[1]", none.text
    assert "/v1/models/faces/faces" in none.json()["error"]["message"]
    up = httpx.post(f"{server.url}/v1/models/faces/predict", files={"file": ("ramp.png", ramp.getvalue(), "image/png")})
    assert up.status_code == 422 and up.json()["error"]["field"] == "file[0]"
    assert_healthy(server)


def test_the_docs_page_works_offline_and_the_schema_says_how_to_authorise_and_what_errors_look_like(model_dirs):
    live = start(model_dirs, api_key="s3cret")
    try:
        page = httpx.get(f"{live.url}/docs")  # no key: the page and the schema are open, 'Authorize' takes it
        assert page.status_code == 200 and "swagger-ui" in page.text
        urls = re.findall(r'(?:src|href)="([^"]+)"|url: \'([^\']+)\'', page.text)
        urls = [a or b for a, b in urls]
        assert len(urls) == 4 and not [u for u in urls if "//" in u], urls  # no CDN, no other host
        for url in urls:
            r = httpx.get(f"{live.url}{url}")
            assert r.status_code == 200 and len(r.content) > 500, url
        assert "Apache License" in httpx.get(f"{live.url}/static/swagger-ui/LICENSE").text
        assert httpx.get(f"{live.url}/redoc", headers={"X-API-Key": "s3cret"}).status_code == 404  # no ReDoc (a CDN)
        schema = httpx.get(f"{live.url}/openapi.json").json()
        assert schema["components"]["securitySchemes"] == {
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            "bearer": {"type": "http", "scheme": "bearer", "description": "the API key as a bearer token"}}
        error = schema["components"]["schemas"]["Error"]["properties"]["error"]
        assert error["required"] == ["status", "field", "message"]
        predict = schema["paths"]["/v1/models/{name}/predict"]["post"]
        assert predict["security"] == [{"apiKey": []}, {"bearer": []}]
        for code in ("400", "401", "404", "408", "413", "415", "422", "504"):
            assert predict["responses"][code]["content"]["application/json"]["schema"] == \
                {"$ref": "#/components/schemas/Error"}, code
        assert "security" not in schema["paths"]["/health"]["get"]
        assert "HTTPValidationError" not in schema["components"]["schemas"]  # FastAPI's shape is never sent
        body = predict["requestBody"]["content"]
        json_body = body["application/json"]["schema"]["properties"]
        assert set(json_body) == {"inputs", "parameters"} and "top_k" in json_body["parameters"]["properties"]
        assert set(body["application/json"]["examples"]) == {"texts", "image"}
        assert body["multipart/form-data"]["schema"]["properties"]["file"]["items"]["format"] == "binary"
        # what the docs page's example requests send, with the key from 'Authorize', is answered
        examples = body["application/json"]["examples"]
        for model, example in (("moods", "texts"), ("faces", "image")):
            r = httpx.post(f"{live.url}/v1/models/{model}/predict", json=examples[example]["value"],
                           headers={"X-API-Key": "s3cret"})
            assert r.status_code == 200, r.text
        bearer = httpx.post(f"{live.url}/v1/models/moods/predict", json=examples["texts"]["value"],
                            headers={"Authorization": "Bearer s3cret"})
        assert bearer.status_code == 200 and len(bearer.json()[0]) == 2
    finally:
        live.close()


def test_concurrent_requests_are_micro_batched(server):
    def batch_counts() -> tuple[float, float]:
        text = httpx.get(f"{server.url}/metrics").text
        count = float(re.search(r'emolab_batch_size_count\{model="moods"\} (\S+)', text).group(1))
        total = float(re.search(r'emolab_batch_size_sum\{model="moods"\} (\S+)', text).group(1))
        return count, total

    before = batch_counts()

    async def burst():
        async with httpx.AsyncClient() as client:
            return await asyncio.gather(*(client.post(f"{server.url}/v1/models/moods/predict",
                                                      json={"inputs": f"i feel glad {i}"}) for i in range(16)))

    responses = asyncio.run(burst())
    assert all(r.status_code == 200 for r in responses)
    after = batch_counts()
    calls, items = after[0] - before[0], after[1] - before[1]
    assert items == 16 and calls < 16  # several requests shared a model call
    text = httpx.get(f"{server.url}/metrics").text
    assert 'emolab_requests_total{route="/v1/models/{name}/predict",status="200"}' in text
    assert "emolab_request_seconds_bucket" in text and 'emolab_queue_depth{model="moods"}' in text


@pytest.mark.parametrize("case", [
    ("malformed JSON", dict(content=b'{"inputs": ', headers={"content-type": "application/json"}), 400, "body"),
    ("wrong content type", dict(content=b"hello", headers={"content-type": "text/plain"}), 415, "content-type"),
    ("no inputs", dict(json={"text": "hi"}), 422, "inputs"),
    ("not a string", dict(json={"inputs": [3]}), 422, "inputs[0]"),
    ("empty text", dict(json={"inputs": "  "}), 422, "inputs[0]"),
    ("text too long", dict(json={"inputs": "a" * 201}), 413, "inputs[0]"),
    ("too many items", dict(json={"inputs": ["hi"] * 9}), 413, "inputs"),
    ("bad top_k", dict(json={"inputs": "hi", "parameters": {"top_k": 0}}), 422, "parameters.top_k"),
    ("unknown parameter", dict(json={"inputs": "hi", "parameters": {"temperature": 2}}), 422, "parameters.temperature"),
    ("body too large", dict(json={"inputs": ["x" * 100_000] * 5}), 413, "body"),
])
def test_bad_text_requests_get_a_json_4xx_and_the_server_keeps_serving(server, case):
    _name, kwargs, status, field = case
    r = httpx.post(f"{server.url}/v1/models/moods/predict", **kwargs)
    assert r.status_code == status, r.text
    assert r.json()["error"]["field"] == field and r.json()["error"]["message"]
    assert "Traceback" not in r.text
    assert_healthy(server)


@pytest.mark.parametrize("case", [
    ("bad base64", {"inputs": "not base64!!"}, 422, "not valid base64"),
    ("not an image", {"inputs": base64.b64encode(b"plain bytes").decode()}, 422, "not a readable image"),
    ("too many pixels", {"inputs": base64.b64encode(png(700, noise=False)).decode()}, 413, "pixels; at most 360000"),
    ("too many bytes", {"inputs": base64.b64encode(bytes(250_000)).decode()}, 413, "image over 200000 bytes"),
])
def test_bad_images_get_a_json_4xx_naming_the_limit(server, case):
    _name, body, status, message = case
    r = httpx.post(f"{server.url}/v1/models/faces/predict", json=body)
    assert r.status_code == status and message in r.json()["error"]["message"], r.text
    assert r.json()["error"]["field"] == "inputs[0]"
    assert_healthy(server)


def test_unknown_model_and_route(server):
    r = httpx.post(f"{server.url}/v1/models/nope/predict", json={"inputs": "hi"})
    assert r.status_code == 404 and "served: moods, faces" in r.json()["error"]["message"]
    assert httpx.get(f"{server.url}/v1/nothing").json()["error"]["status"] == 404
    up = httpx.post(f"{server.url}/v1/models/moods/predict", files={"file": ("a.png", png(), "image/png")})
    assert up.status_code == 415  # a text model takes JSON
    assert_healthy(server)


def test_a_request_past_its_timeout_is_answered_504(model_dirs):
    live = start(model_dirs, limits=Limits(timeout_s=0.000001))
    try:
        r = httpx.post(f"{live.url}/v1/models/moods/predict", json={"inputs": "i feel glad"})
        assert r.status_code == 504 and "timeout" in r.json()["error"]["message"]
        assert_healthy(live)
    finally:
        live.close()


def test_the_api_key_guards_every_route_but_health_and_the_docs(model_dirs):
    live = start(model_dirs, api_key="s3cret")
    try:
        assert httpx.get(f"{live.url}/health").status_code == 200
        for path in ("/docs", "/openapi.json"):  # the docs page and the schema: the same for every server
            assert httpx.get(f"{live.url}{path}").status_code == 200, path
        for path in ("/ready", "/v1/models", "/metrics", "/"):
            r = httpx.get(f"{live.url}{path}")
            assert r.status_code == 401 and r.json()["error"]["field"] == "authorization", path
        assert httpx.post(f"{live.url}/v1/models/moods/predict", json={"inputs": "hi"}).status_code == 401
        wrong = httpx.get(f"{live.url}/v1/models", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert httpx.get(f"{live.url}/v1/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert httpx.post(f"{live.url}/v1/models/moods/predict", json={"inputs": "hi"},
                          headers={"X-API-Key": "s3cret"}).status_code == 200
        assert httpx.get(f"{live.url}/?api_key=s3cret").status_code == 200  # the page passes it on
    finally:
        live.close()


def test_served_names_and_missing_models(model_dirs, tmp_path):
    from emolab.errors import EmolabError

    assert ServedModel.load(f"mine={model_dirs[0]}").name == "mine"
    assert ServedModel.load(str(model_dirs[0] / "model")).name == "moods"
    with pytest.raises(EmolabError, match="model not found"):
        ServedModel.load(str(tmp_path / "nothing"))
    with pytest.raises(EmolabError, match="holds no emolab model"):
        ServedModel.load(str(tmp_path))


def test_workers_share_one_metrics_view(model_dirs, tmp_path):
    """`--workers 2`: two stateless processes behind one port; /metrics adds up every worker's counts."""
    import os
    import subprocess
    import sys

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom")}
    (tmp_path / "prom").mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "emolab.cli", "serve", str(model_dirs[0]), "--port", str(port),
                             "--workers", "2"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            assert proc.poll() is None, proc.stdout.read().decode()
            try:
                if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.time() < deadline, "workers did not start"
            time.sleep(0.5)

        async def burst():
            async with httpx.AsyncClient(timeout=30) as client:
                return await asyncio.gather(*(client.post(f"{url}/v1/models/moods/predict", json={"inputs": "i am glad"})
                                              for _ in range(20)))

        while "emolab_workers 2.0" not in httpx.get(f"{url}/metrics").text:  # both workers have loaded
            assert time.time() < deadline, "the second worker did not start"
            time.sleep(0.5)
        assert all(r.status_code == 200 for r in asyncio.run(burst()))
        for _ in range(4):  # whichever worker answers, it reports every worker's requests
            text = httpx.get(f"{url}/metrics").text
            count = re.search(r'emolab_requests_total\{route="/v1/models/\{name\}/predict",status="200"\} (\S+)', text)
            assert count and float(count.group(1)) == 20.0
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_the_faces_route_finds_faces_in_photos_through_the_same_code_as_predict(server, model_dirs):
    """Per-face boxes and labels, equal to `emolab predict FACE_RUN photo.jpg` (the photo path's rows)."""
    from emolab.pipeline import predict_photos
    from tests.test_photos import grace_hopper

    photo = grace_hopper().read_bytes()
    r = httpx.post(f"{server.url}/v1/models/faces/faces", json={"inputs": [base64.b64encode(photo).decode(),
                                                                         base64.b64encode(png(48)).decode()]})
    assert r.status_code == 200, r.text
    hopper, crop = r.json()
    rows, _ = predict_photos(model_dirs[1], [str(grace_hopper())], say=lambda _m: None)
    assert len(hopper) == 1 and hopper[0]["box"] == {k: v for k, v in rows[0].photo_box().items() if k != "score"}
    assert hopper[0]["label"] == rows[0].label
    assert [x["score"] for x in hopper[0]["labels"]] == pytest.approx(sorted(rows[0].probs, reverse=True), abs=1e-6)
    assert len(crop) == 1 and crop[0]["box"] is None  # a 48x48 image is taken as a cropped face
    ramp = io.BytesIO()
    from PIL import Image

    Image.fromarray(np.tile(np.arange(256, dtype=np.uint8), (200, 1))).save(ramp, "PNG")
    up = httpx.post(f"{server.url}/v1/models/faces/faces", files={"file": ("ramp.png", ramp.getvalue(), "image/png")})
    assert up.status_code == 200 and up.json() == [[]]  # no face: an empty list, not a guess on the frame
    text = httpx.post(f"{server.url}/v1/models/moods/faces", json={"inputs": "hi"})
    assert text.status_code == 422 and text.json()["error"]["field"] == "name"
    assert_healthy(server)


def _emolab(*args) -> int:
    """The CLI in this process; its exit code."""
    from emolab.cli import main

    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        return exc.code
    return 0


def test_the_faces_route_and_emolab_predict_give_the_same_face_rows_for_the_same_photos(server, model_dirs, tmp_path):
    """One "photo -> face rows" step: every face `emolab predict FACE_RUN photo --output` writes (box, detector
    score, label, probabilities), and a photo without a face, is what the faces route answers for that photo."""
    from PIL import Image

    from tests.test_photos import grace_hopper

    ramp = tmp_path / "ramp.png"
    Image.fromarray(np.tile(np.arange(256, dtype=np.uint8), (200, 1))).save(ramp)
    photos = [astronaut_png(tmp_path), grace_hopper(), ramp]
    out = tmp_path / "faces.csv"
    assert _emolab("predict", model_dirs[1], *photos, "--output", out) == 0
    written = pd.read_csv(out, dtype=str, keep_default_na=False)  # as written: a photo without a face has blanks
    r = httpx.post(f"{server.url}/v1/models/faces/faces",
                   json={"inputs": [base64.b64encode(p.read_bytes()).decode() for p in photos]})
    assert r.status_code == 200, r.text
    for photo, answered in zip(photos, r.json()):
        rows = written[written["input"] == str(photo)]
        if photo == ramp:
            assert answered == [] and rows["face"].tolist() == [""]
            continue
        assert len(answered) == len(rows) > 0
        for face, (_, row) in zip(answered, rows.iterrows()):
            assert face["box"] == {k: int(row[k]) for k in ("xmin", "ymin", "xmax", "ymax")}
            assert f"{face['score']:.3f}" == row["detector_score"] and face["label"] == row["label"]
            assert {x["label"]: x["score"] for x in face["labels"]} == \
                pytest.approx({n: float(row[f"p_{n}"]) for n in FER2013_LABELS}, abs=1e-6)
    assert_healthy(server)


def test_each_served_model_batches_with_its_own_settings(model_dirs):
    """`batching` names a model: its batcher takes those settings; the other model takes the server's."""
    from emolab.errors import EmolabError
    from emolab.serving import BatchSettings

    text_run, faces = model_dirs
    settings = ServeSettings(models=[str(text_run), f"faces={faces}"], max_batch=16, max_wait_ms=30.0,
                             batching={"moods": BatchSettings(max_batch=1)})
    app = create_app(settings)
    live = LiveServer(app)
    try:
        batchers = app.state.server.batchers
        assert batchers["moods"].batch == BatchSettings(max_batch=1, max_wait_ms=0.0)
        assert batchers["faces"].batch == BatchSettings(max_batch=16, max_wait_ms=30.0)

        async def burst():
            async with httpx.AsyncClient(timeout=30) as client:
                return await asyncio.gather(*(client.post(f"{live.url}/v1/models/moods/predict",
                                                          json={"inputs": f"i feel glad {i}"}) for i in range(8)))

        assert all(r.status_code == 200 for r in asyncio.run(burst()))
        text = httpx.get(f"{live.url}/metrics").text
        calls = float(re.search(r'emolab_batch_size_count\{model="moods"\} (\S+)', text).group(1))
        assert calls == 8  # one item per model call: moods' own max_batch
    finally:
        live.close()
    with pytest.raises(EmolabError, match="'nope', which is not served"):
        create_app(ServeSettings(models=[str(text_run)], batching={"nope": BatchSettings()}))


def test_serve_takes_its_defaults_from_the_settings_and_each_models_batching_from_batch(model_dirs, monkeypatch,
                                                                                         capsys):
    import emolab.serving
    from emolab.serving import BatchSettings

    got = []
    monkeypatch.setattr(emolab.serving, "serve", lambda settings, say: got.append(settings))
    monkeypatch.delenv("EMOLAB_API_KEY", raising=False)
    text_run, faces = model_dirs
    assert _emolab("serve", text_run) == 0
    assert got.pop() == ServeSettings(models=[str(text_run)])  # every default is the settings classes' own
    assert _emolab("serve", text_run, f"faces={faces}", "--max-wait-ms", 2, "--batch", "faces.max_batch=8",
                   "--batch", "moods.max_wait_ms=5", "--batch", "moods.max_batch=4") == 0
    settings = got.pop()
    assert settings.batching == {"faces": BatchSettings(8, 2.0), "moods": BatchSettings(4, 5.0)}
    assert settings.batch_for("faces") == BatchSettings(8, 2.0)  # a key not given: the server's
    for bad, needle in (("faces.size=3", "unknown --batch key 'size'"), ("faces=3", "not NAME.KEY=VALUE"),
                        ("faces.max_batch=0", "max_batch 0 is not a batch size"),
                        ("faces.max_wait_ms=soon", "'soon' is not a number")):
        capsys.readouterr()
        assert _emolab("serve", text_run, "--batch", bad) == 2, bad
        assert needle in " ".join(capsys.readouterr().err.split()), bad
    assert not got


def test_batching_for_a_model_not_served_is_refused_before_any_model_loads(model_dirs):
    from emolab.errors import EmolabError
    from emolab.serving import BatchSettings
    from emolab.serving.server import serve

    with pytest.raises(EmolabError, match="'faces', which is not served") as caught:
        serve(ServeSettings(models=[str(model_dirs[0])], batching={"faces": BatchSettings()}), say=lambda _m: None)
    assert "moods" in str(caught.value)  # the served names, as `load` names them
