"""Benchmark scripts record their results one way: every script in benchmarks/ takes ``Record`` from
benchmarks/record.py, which writes results/NAME.md and NAME.json (the command, the machine, the figures);
results files are named in kebab-case, and every one the docs name exists."""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import sys
from pathlib import Path

import numpy as np

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = sorted(p for p in BENCHMARKS.glob("*.py") if p.name != "record.py")


def _record_module():
    spec = importlib.util.spec_from_file_location("benchmarks_record", BENCHMARKS / "record.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _imports_record(path: Path) -> bool:
    return any(isinstance(node, ast.ImportFrom) and node.module == "record" and
               any(alias.name == "Record" for alias in node.names)
               for node in ast.walk(ast.parse(path.read_text(), str(path))))


def test_every_benchmark_script_records_with_the_helper():
    assert len(SCRIPTS) >= 10
    assert [p.name for p in SCRIPTS if not _imports_record(p)] == []


def test_the_helper_writes_the_markdown_and_json_with_the_command_and_machine(tmp_path, monkeypatch, capsys):
    record_module = _record_module()
    out = tmp_path / "results" / "toy-bench.md"
    monkeypatch.setattr(sys, "argv", ["benchmarks/toy.py", "--rounds", "2", "--note", "two words", "--out", str(out)])
    record = record_module.Record()
    lines = ["# Toy", "", f"Command: `{record.command}`", "", "| a | b |", "|---|---|", "| 1 | 0.50 |"]
    figures = {"rates": np.array([1.5, 2.5]), "best": np.float32(2.5), "count": np.int64(3), "missing": float("nan"),
               "run": tmp_path / "run", "per_round": [(1, 2.0)]}
    text = record.finish(lines, out, figures)

    assert text == "\n".join(lines) + "\n"
    assert out.read_text() == text
    assert capsys.readouterr().out == text + "\n"
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["command"] == "python benchmarks/toy.py --rounds 2 --note 'two words' --out " + str(out)
    assert saved["command"] in text
    machine = saved["machine"]
    assert machine["cpu_count"] >= 1 and machine["platform"] and machine["processor"]
    assert len(machine["load_before"]) == len(machine["load_after"]) == 3
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", machine["started_utc"]) and machine["wall_minutes"] >= 0
    assert "torch" in machine["versions"]
    assert saved["figures"] == {"rates": [1.5, 2.5], "best": 2.5, "count": 3, "missing": None,
                                "run": str(tmp_path / "run"), "per_round": [[1, 2.0]]}


def test_without_out_the_helper_only_prints(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    text = _record_module().Record().finish(["# Toy", "", "| a |"], None, {"a": 1})
    assert capsys.readouterr().out == text + "\n"
    assert list(tmp_path.iterdir()) == []


def test_a_saved_record_keeps_what_came_in_and_finish_fixes_the_machine(tmp_path):
    record = _record_module().Record()
    out = tmp_path / "partial.md"
    record.save(["# Partial", "| 1 |"], out, {"rows": [1]})
    assert json.loads(out.with_suffix(".json").read_text())["figures"] == {"rows": [1]}
    record.finish(["# Partial", "| 1 |", "| 2 |"], out, {"rows": [1, 2]})
    assert out.read_text() == "# Partial\n| 1 |\n| 2 |\n"
    assert json.loads(out.with_suffix(".json").read_text())["machine"] == record.machine()


def test_results_files_are_named_in_kebab_case_and_json_sits_beside_its_markdown():
    results = sorted((BENCHMARKS / "results").iterdir())
    assert [p.name for p in results if not re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*\.(md|json)", p.name)] == []
    assert [p.name for p in results if p.suffix == ".json" and not p.with_suffix(".md").is_file()] == []


def test_every_results_file_the_docs_name_exists():
    root = BENCHMARKS.parent
    texts = [root / "README.md", *(root / "docs").rglob("*.md"), *(root / "configs").glob("*.yaml"),
             *(root / "src").rglob("*.py")]
    named = {m for path in texts for m in re.findall(r"benchmarks/results/[\w.-]+\.(?:md|json)", path.read_text())}
    assert named and sorted(n for n in named if not (root / n).is_file()) == []
