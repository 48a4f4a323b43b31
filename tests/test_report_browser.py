"""The report opens in headless Chromium with every image loaded and no console error (marked: needs
Chromium at /usr/bin/chromium and the playwright package; `make test-slow` runs it)."""

import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


def open_report(html: Path, screenshot: Path) -> tuple[int, int, list[str]]:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 1600})
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(html.resolve().as_uri())
        images = page.evaluate("document.images.length")
        broken = page.evaluate("Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).length")
        page.screenshot(path=str(screenshot), full_page=True)
        browser.close()
    return images, broken, errors


def test_report_of_a_run_renders_in_chromium(tmp_path, shared_data):
    from emolab.config import load_config
    from emolab.pipeline import run

    root = Path(__file__).resolve().parents[1]
    out = run(load_config(root / "configs" / "emotion-tfidf.yaml", [f"output.dir={tmp_path}"]), say=lambda _m: None)
    images, broken, errors = open_report(out / "report.html", tmp_path / "report.png")
    assert images >= 5 and broken == 0 and errors == []
    assert (tmp_path / "report.png").stat().st_size > 50_000


def test_demo_report_renders_when_present(tmp_path):
    """The `make demo` run's report, if it exists in runs/emotion-minilm."""
    html = Path(__file__).resolve().parents[1] / "runs" / "emotion-minilm" / "report.html"
    if not html.is_file():
        pytest.skip("run `make demo` first")
    images, broken, errors = open_report(html, tmp_path / "demo.png")
    assert images >= 6 and broken == 0 and errors == []
