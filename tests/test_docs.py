"""The documentation: the generated config reference covers every config key with its help, the README stays
one screen, and (slow, when MkDocs is installed) the site builds with --strict and fetches nothing at view time."""

from __future__ import annotations

import dataclasses
import importlib.util
import re
import subprocess
import sys
import typing
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HOOK = ROOT / "docs" / "hooks" / "config_reference.py"


def _reference():
    spec = importlib.util.spec_from_file_location("config_reference", HOOK)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


def _dotted(cls: type, prefix: str = "") -> set[str]:
    """Every key of dataclass ``cls``, nested dataclasses expanded (written independently of the generator)."""
    hints = typing.get_type_hints(cls)
    keys = set()
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            keys |= _dotted(hints[f.name], f"{prefix}{f.name}.")
        else:
            keys.add(prefix + f.name)
    return keys


def test_config_reference_covers_every_key_with_help():
    from emolab.config import RunConfig
    from emolab.data.registry import DataConfig, dataset_config_class, list_datasets
    from emolab.models.registry import ModelConfig, list_models, model_class

    ref = _reference()
    sections = {title: keys for title, _, keys in ref.sections()}
    documented = lambda *titles: {k.key for t in titles for k in sections[t]}  # noqa: E731

    run_keys = {k for k in _dotted(RunConfig) if not k.startswith(("data.", "model."))}
    run_titles = [t for t in sections if not t.startswith(("`data", "`model"))]
    assert documented(*run_titles) == run_keys
    for name in list_datasets():
        if not dataset_config_class(name).__module__.startswith("emolab."):  # registered by another test
            continue
        expected = _dotted(dataset_config_class(name), "data.")
        assert documented("`data`: every dataset", f"`data.name: {name}`") == expected, name
    for name in list_models():
        if not model_class(name).__module__.startswith("emolab."):  # registered by another test
            continue
        expected = _dotted(model_class(name).config_class, "model.")
        assert documented("`model`: every model", f"`model.name: {name}`") == expected, name
    assert _dotted(DataConfig, "data.") <= documented("`data`: every dataset")
    assert _dotted(ModelConfig, "model.") == documented("`model`: every model")

    assert ref.missing_help() == [], "config keys without a `# help` comment"
    page = ref.render()
    for keys in sections.values():
        for key in keys:
            assert f"| `{key.key}` |" in page and key.help


def test_help_comes_from_the_field_comment():
    ref = _reference()

    @dataclasses.dataclass
    class Example:
        # a comment block above the field. Only its first sentence is kept
        # (and never this line).
        above: int = 1
        trailing: str = "x"  # the comment after the field
        bare: bool = False

    assert ref._help(Example, "above")[0] == "a comment block above the field."
    assert ref._help(Example, "trailing")[0] == "the comment after the field"
    assert ref._help(Example, "bare")[0] is None


def test_readme_is_one_screen_and_keeps_the_set_up_commands():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 60
    assert re.search(r"^make test\b", readme, re.M) and re.search(r"^make demo\b", readme, re.M)
    for link in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (ROOT / link).is_file(), link


def test_ci_builds_the_docs_strictly_and_the_config_page_is_only_generated():
    make = (ROOT / "Makefile").read_text(encoding="utf-8")
    docs = make.split("\ndocs:")[1].split("\n\n")[0]
    assert "mkdocs build --strict" in docs, docs
    assert re.search(r"^make docs\b", (ROOT / ".ci" / "run").read_text(encoding="utf-8"), re.M)
    assert not (ROOT / "docs" / _reference().PAGE).exists()  # written by the hook at build time, never by hand


PRIVATE = re.compile(r"\bseed 00\d|/work/|\bissue #?\d", re.I)  # words of the sessions that built emolab


def test_user_facing_text_has_no_long_cells_or_private_words():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")), *sorted((ROOT / "configs").glob("*.yaml"))]
    for page in pages:
        text = page.read_text(encoding="utf-8")
        for line in text.splitlines():
            if line.startswith("|"):
                cells = re.split(r"(?<!\\)\|", line)[1:-1]
                assert all(len(c) <= 400 for c in cells), f"{page.name}: a table cell over 400 characters"
        assert not PRIVATE.search(text), page.name


def test_the_package_has_no_private_words():
    """Help texts, docstrings (the API reference), report templates and dataset descriptions come from src/."""
    files = [p for p in sorted((ROOT / "src").rglob("*")) if p.suffix in {".py", ".j2", ".html", ".js", ".css", ".md"}]
    found = [f"{p.relative_to(ROOT)}: {m.group()}" for p in files for m in [PRIVATE.search(p.read_text("utf-8"))] if m]
    assert not found, found


@pytest.mark.slow
def test_site_builds_strictly_and_fetches_nothing(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")
    pytest.importorskip("mkdocstrings")
    site = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={"NO_MKDOCS_2_WARNING": "1", "PATH": "", "HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr[-3000:]
    assert (site / "reference" / "config.html").is_file()
    external = re.compile(r'<(?:script|link|img|iframe|source)\b[^>]*\b(?:src|href)="(?:https?:)?//', re.I)
    for page in site.rglob("*.html"):
        html = page.read_text(encoding="utf-8")
        assert not external.search(html), f"{page} loads something from the web"
        assert not PRIVATE.search(re.sub(r"<[^>]+>", "", html)), f"{page} has a private word"
    import inspect

    from emolab.config import load_config

    api = (site / "reference" / "api.html").read_text(encoding="utf-8")  # rendered by mkdocstrings
    assert 'id="emolab.config.load_config"' in api and inspect.getdoc(load_config).split(",")[0] in api
