"""The demo page of `emolab serve` in real headless Chromium (marked slow: needs Debian's chromium and the
playwright package; `make test-slow` runs it): type a sentence and see the same labels and scores as
`emolab predict`; upload a face and see its label; upload a photo and see its face boxed and labelled as
`emolab predict` finds it; no console errors."""

from __future__ import annotations


import numpy as np
import pytest

from emolab.pipeline import predict_inputs, predict_photos
from emolab.serving import ServeSettings, create_app
from tests.test_photos import grace_hopper
from tests.test_report_browser import chromium_page
from tests.test_serving import LiveServer, model_dirs, png  # noqa: F401  (model_dirs: a fixture)

pytestmark = pytest.mark.slow


def bars(page) -> list[tuple[str, float]]:
    page.wait_for_selector("#bars li")
    rows = page.eval_on_selector_all("#bars li", "els => els.map(e => [e.dataset.label, "
                                                  "e.querySelector('.score').textContent])")
    return [(label, float(score)) for label, score in rows]


def test_the_demo_page_classifies_text_and_an_uploaded_face(model_dirs, tmp_path):  # noqa: F811
    text_run, faces = model_dirs
    face_file = tmp_path / "face.png"
    face_file.write_bytes(png(64, seed=3))
    with chromium_page(900, 900) as (page, errors):
        live = LiveServer(create_app(ServeSettings(models=[str(text_run), f"faces={faces}"])))
        try:
            page.goto(live.url + "/")
            page.wait_for_selector("#model option", state="attached")
            assert "test accuracy" in page.text_content("#about")

            sentence = "i feel so scared and nervous today"
            page.fill("#text", sentence)
            page.click("#classify-text")
            shown = bars(page)
            _items, labels, probs, names = predict_inputs(text_run, [sentence])  # what `emolab predict` prints
            assert shown[0][0] == labels[0]
            assert dict(shown) == pytest.approx({n: round(float(x), 4) for n, x in zip(names, probs[0])}, abs=1e-4)
            page.screenshot(path=str(tmp_path / "text.png"), full_page=True)

            page.select_option("#model", "faces")
            assert page.is_visible("#image") and not page.is_visible("#text")
            page.set_input_files("#image", str(face_file))  # a small square image: taken as a cropped face
            page.wait_for_function("document.querySelectorAll('#bars li').length === 7")
            rows, _names = predict_photos(faces, [str(face_file)], say=lambda _m: None)  # `emolab predict`'s rows
            assert bars(page)[0][0] == rows[0].label
            assert np.isclose(bars(page)[0][1], round(float(rows[0].probs.max()), 4), atol=1e-4)
            page.set_input_files("#image", str(grace_hopper()))  # a photo: the face is found and boxed
            page.wait_for_function("document.querySelector('#faces').textContent.startsWith('face 1:')")
            rows, _names = predict_photos(faces, [str(grace_hopper())], say=lambda _m: None)
            assert page.text_content("#faces") == f"face 1: {rows[0].label}" and page.is_visible("#photo")
            page.screenshot(path=str(tmp_path / "face.png"), full_page=True)
        finally:
            live.close()
    assert not errors, errors


def test_the_docs_page_renders_offline_and_authorises_with_the_api_key(model_dirs, tmp_path):  # noqa: F811
    """/docs in Chromium with every other host blocked: Swagger UI renders the operations from files the app
    serves, and 'Authorize' takes the API key, with which 'Try it out' gets a 200."""
    from urllib.parse import urlsplit

    text_run, faces = model_dirs
    elsewhere: list[str] = []
    with chromium_page(1200, 1400) as (page, errors):
        live = LiveServer(create_app(ServeSettings(models=[str(text_run), f"faces={faces}"], api_key="s3cret")))
        try:
            here = urlsplit(live.url).netloc

            def only_here(route):
                if urlsplit(route.request.url).netloc == here:
                    return route.continue_()
                elsewhere.append(route.request.url)
                return route.abort()

            page.route("**/*", only_here)
            page.goto(live.url + "/docs")
            page.wait_for_selector(".opblock-summary-path")
            paths = page.eval_on_selector_all(".opblock-summary-path", "els => els.map(e => e.dataset.path)")
            assert {"/v1/models/{name}/predict", "/v1/models/{name}/faces", "/v1/models", "/health"} <= set(paths)
            page.click("button.authorize")
            page.wait_for_selector(".modal-ux input")
            for field in page.query_selector_all(".modal-ux input"):  # X-API-Key and the bearer token
                field.fill("s3cret")
            for button in page.query_selector_all(".modal-ux button.authorize"):
                button.click()
            page.click(".modal-ux button.btn-done")
            page.click('.opblock-summary-path[data-path="/v1/models"]')
            page.click("button.try-out__btn")
            page.click("button.execute")
            page.wait_for_selector(".live-responses-table tr.response .response-col_status")
            status = page.text_content(".live-responses-table tr.response .response-col_status").strip()
            page.screenshot(path=str(tmp_path / "docs.png"), full_page=True)
            assert status == "200", (status, str(tmp_path / "docs.png"))
            assert "moods" in page.text_content(".live-responses-table tr.response .response-col_description")
        finally:
            live.close()
    assert not elsewhere, elsewhere  # nothing asked of another host (no CDN, no validator)
    assert not errors, errors
