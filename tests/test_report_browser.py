"""The report opens in headless Chromium with every image loaded and no console error (marked: needs
Chromium at /usr/bin/chromium and the playwright package; `make test-slow` runs it)."""

import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


@contextmanager
def chromium_page(width: int, height: int):
    """A page in headless Chromium and the list its console errors and page errors are collected in."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": width, "height": height})
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        try:
            yield page, errors
        finally:
            browser.close()


def open_report(html: Path, screenshot: Path) -> tuple[int, int, list[str]]:
    with chromium_page(1200, 1600) as (page, errors):
        page.goto(html.resolve().as_uri())
        images = page.evaluate("document.images.length")
        broken = page.evaluate("Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).length")
        page.screenshot(path=str(screenshot), full_page=True)
    return images, broken, errors


def test_report_of_a_run_renders_in_chromium(tmp_path, shared_data):
    from emolab.config import load_config
    from emolab.pipeline import run

    root = Path(__file__).resolve().parents[1]
    out = run(load_config(root / "configs" / "emotion-tfidf.yaml", [f"output.dir={tmp_path}"]), say=lambda _m: None)
    images, broken, errors = open_report(out / "report.html", tmp_path / "report.png")
    assert images >= 5 and broken == 0 and errors == []
    assert (tmp_path / "report.png").stat().st_size > 50_000


@pytest.mark.parametrize("run_name, command, min_images", [
    ("emotion-minilm", "make demo", 6),
    ("fer2013-vgg-d1122-24ep", "emolab run configs/fer2013-vgg.yaml --set output.name=fer2013-vgg-d1122-24ep", 9),
    ("fer2013-resnet18-gpu", "emolab run configs/fer2013-resnet18-gpu.yaml (on a GPU)", 9),
])
def test_report_of_a_finished_run_renders_when_present(tmp_path, run_name, command, min_images):
    """The report of a preset's full run (`make demo`, the FER2013 CPU and GPU presets), if it exists in runs/."""
    html = Path(__file__).resolve().parents[1] / "runs" / run_name / "report.html"
    if not html.is_file():
        pytest.skip(f"run `{command}` first")
    images, broken, errors = open_report(html, tmp_path / f"{run_name}.png")
    assert images >= min_images and broken == 0 and errors == []


def test_fer2013_report_renders_with_face_grids(tmp_path, shared_data):
    """A small FER2013 run (2,000 training faces, 2 epochs of the small CNN): its report shows the face
    grids and occlusion maps in Chromium, every image loaded, no console error."""
    if not (shared_data / "fer2013" / "fer2013.csv.gz").is_file():
        pytest.skip("shared FER2013 not found")
    from emolab.config import load_config
    from emolab.pipeline import run

    root = Path(__file__).resolve().parents[1]
    cfg = load_config(root / "configs" / "fer2013-mlp.yaml",  # the small CNN with the MLP preset's recipe
                      ["model.name=cnn-small", "model.width=32", "data.max_train_examples=2000",
                       "data.max_eval_examples=500", "train.epochs=2", f"output.dir={tmp_path}", "output.name=fer"])
    out = run(cfg, say=lambda _m: None)
    html = (out / "report.html").read_text()
    assert "Why the faces were misread" in html and "Why the texts were misread" not in html
    images, broken, errors = open_report(out / "report.html", tmp_path / "fer.png")
    assert images >= 9 and broken == 0 and errors == []

