"""The package's shape: no import cycles between emolab modules, no module outside ``emolab/models`` that
branches on a model's registered name (the model or its card says what it is), and none outside ``emolab/data``
that branches on a dataset's name (its descriptor, ``emolab.data.dataset_spec``, says what it is)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import emolab

ROOT = Path(list(emolab.__path__)[0])


def _module_name(path: Path) -> str:
    parts = ["emolab", *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in ROOT.rglob("*.py")}


def _resolve(node: ast.ImportFrom, here: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = here.split(".") if is_package else here.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph() -> dict[str, set[str]]:
    """Module -> the emolab modules it imports (at module level or inside functions). ``from a.b import c`` is
    an edge to ``a.b.c`` when that is a module, else to ``a.b``; a parent package's implicit ``__init__`` is not."""
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(node, name, path.name == "__init__.py")
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
            else:
                continue
            edges |= {t for t in targets if t in MODULES and t != name}
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycles_between_emolab_modules():
    graph = import_graph()
    assert "emolab.models.registry" in graph["emolab.models.vision"]  # the graph sees real edges
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The module graph with each subpackage of emolab folded into one node (``emolab.data.images`` ->
    ``emolab.data``); top-level modules stay their own nodes; edges inside one node are dropped."""
    def node(module: str) -> str:
        return ".".join(module.split(".")[:2])

    folded: dict[str, set[str]] = {}
    for module, targets in graph.items():
        folded.setdefault(node(module), set()).update(node(t) for t in targets if node(t) != node(module))
    return folded


def test_packages_fold_and_a_planted_package_cycle_is_found():
    modules = {"emolab.data.images": {"emolab.faces.photos"}, "emolab.faces.photos": {"emolab.faces.detectors"},
               "emolab.faces.detectors": set(), "emolab.cli": {"emolab.data.images"}}
    assert package_graph(modules) == {"emolab.data": {"emolab.faces"}, "emolab.faces": set(),
                                      "emolab.cli": {"emolab.data"}}
    assert find_cycle(package_graph(modules)) is None
    modules["emolab.faces.wild"] = {"emolab.data.images"}  # no module cycle, but a package one
    assert find_cycle(modules) is None
    assert find_cycle(package_graph(modules)) == ["emolab.data", "emolab.faces", "emolab.data"]


def test_no_import_cycles_between_emolab_packages():
    """Each subpackage is one room: data, faces, models, ... import each other one way only (imports inside
    functions count)."""
    graph = package_graph(import_graph())
    assert "emolab.models" in graph["emolab.training"]  # the loop trains models, not the reverse
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def _comparisons_with(names: set[str], skip: str) -> list[str]:
    """``== / != / in / not in`` against one of ``names`` (a literal, or a literal in a tuple, list or set), and
    dict literals keyed by them, in every module not under ``skip``."""
    offenders = []
    for name, path in MODULES.items():
        if name.startswith(skip):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Dict):
                hits = [k.value for k in node.keys if isinstance(k, ast.Constant) and k.value in names]
                if hits:
                    offenders.append(f"{path.relative_to(ROOT.parent)}:{node.lineno} keys a dict by {hits}")
                continue
            if not isinstance(node, ast.Compare) or not any(isinstance(op, (ast.Eq, ast.NotEq, ast.In, ast.NotIn))
                                                            for op in node.ops):
                continue
            for side in [node.left, *node.comparators]:
                consts = [side] if isinstance(side, ast.Constant) else (
                    list(side.elts) if isinstance(side, (ast.Tuple, ast.List, ast.Set)) else [])
                hits = [c.value for c in consts if isinstance(c, ast.Constant) and c.value in names]
                if hits:
                    offenders.append(f"{path.relative_to(ROOT.parent)}:{node.lineno} compares with {hits}")
    return offenders


def test_no_module_outside_models_branches_on_a_model_name():
    from emolab.models import list_models

    offenders = [o for o in _comparisons_with(set(list_models()), "emolab.models") if "keys a dict" not in o]
    assert not offenders, "\n".join(offenders)


def test_no_module_outside_data_branches_on_a_dataset_name():
    from emolab.data import list_datasets

    # "csv" names a file format too (scoring reads and writes CSV files), so it is left to the other names
    names = set(list_datasets()) - {"csv"}
    assert {"emotion", "goemotions", "sst2", "fer2013", "ferplus", "imagefolder"} <= names
    offenders = _comparisons_with(names, "emolab.data")
    assert not offenders, "\n".join(offenders)


def test_the_finder_sees_a_comparison_and_a_dict_key(tmp_path, monkeypatch):
    source = tmp_path / "switch.py"
    source.write_text('def f(name):\n    if name in ("sst2", "x"):\n        return {"fer2013": 1}\n')
    monkeypatch.setitem(MODULES, "elsewhere.switch", source)
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path / "pkg")  # paths are shown relative to ROOT.parent
    found = [o for o in _comparisons_with({"sst2", "fer2013"}, "emolab") if "switch.py" in o]
    assert len(found) == 2, found


def test_every_dataset_describes_itself():
    """Reading a descriptor loads no data; its facts agree with the dataset's config and published scores."""
    from emolab.data import dataset_spec, list_datasets
    from emolab.data.registry import dataset_config_class

    for name in list_datasets():
        spec = dataset_spec(name)
        assert spec.name == name and spec.modality in ("text", "image"), name
        assert spec.test_split in spec.splits, name
        fields = {f for f in dataset_config_class(name).__dataclass_fields__}
        assert bool(spec.taxonomies) == ("taxonomy" in fields), name
        assert bool(spec.multi_label_policies) == ("multi_label_policy" in fields), name
        for score in spec.published:
            assert (score.variant is None) == (not spec.taxonomies), (name, score)
            assert score.split.split(",")[0] == spec.published_test_split, (name, score)
    assert dataset_spec("not-registered-here").citation is None  # a run of an unknown dataset still reports


def test_readers_of_runs_import_no_deep_learning_framework(tmp_path):
    """Reading a run (its config, card and metrics), comparing and reporting load no torch: the registry imports
    a model's module only when the model itself is needed, and config sections live apart from the models."""
    import subprocess
    import sys

    code = """
import sys
import emolab.rundir, emolab.compare, emolab.report, emolab.config, emolab.models
from emolab.config import config_from_dict, config_from_saved
from emolab.models import list_models, model_config
for raw in ({"model": {"name": "transformer", "pooling": "attention"}},
            {"model": {"name": "vgg-fer", "depths": [1, 1, 1, 1]}, "data": {"name": "fer2013"}},
            {"model": {"name": "tfidf"}}, {"model": {"name": "pixel-logreg"}, "data": {"name": "fer2013"}}):
    cfg = config_from_dict(raw)
    config_from_saved(cfg.to_dict(), source="saved")
assert "transformer" in list_models() and model_config("cnn-small").modality == "image"
print(sorted(m for m in ("torch", "transformers", "onnxruntime") if m in sys.modules))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]", r.stdout


# what the error analysis leaves to the step that gathers its inputs (emolab.analyze): models, training, runs, data
NOT_IN_ANALYSIS = ("torch", "sklearn.linear_model", "emolab.models", "emolab.training", "emolab.evaluation",
                   "emolab.data", "emolab.rundir", "emolab.pipeline", "emolab.analyze")


def test_the_analysis_package_is_pure_functions_on_predictions():
    """No module of ``emolab.analysis`` imports a model, the training loop, a run or dataset reader, or torch
    (imports inside functions count): it takes predictions, inputs and a ``predict_proba``, and returns dicts
    and figures."""
    offenders = []
    for name, path in MODULES.items():
        if name != "emolab.analysis" and not name.startswith("emolab.analysis."):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(node, name, path.name == "__init__.py")
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            hits = {t for t in targets for banned in NOT_IN_ANALYSIS if t == banned or t.startswith(banned + ".")}
            if hits:
                offenders.append(f"{path.relative_to(ROOT.parent)}:{node.lineno} imports {sorted(hits)}")
    assert "emolab.analysis.summary" in MODULES  # the walk sees the package
    assert not offenders, "\n".join(offenders)


def test_importing_the_analysis_package_loads_no_model_code():
    import subprocess

    code = f"""
import importlib, pkgutil, sys
import emolab.analysis
for m in pkgutil.iter_modules(emolab.analysis.__path__):
    importlib.import_module("emolab.analysis." + m.name)
print(sorted(m for m in sys.modules if m.startswith({NOT_IN_ANALYSIS!r})))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]", r.stdout


def test_the_builtin_model_table_matches_the_registered_classes():
    from emolab.models import registry

    for name, (module, config) in registry.BUILTIN.items():
        cls = registry.model_class(name)
        assert cls.__module__ == module, name
        assert registry._import(config) is cls.config_class, name


def test_labels_decide_one_way_everywhere():
    import numpy as np

    from emolab.records import LabelSet

    probs = np.array([[0.2, 0.7, 0.1], [0.6, 0.5, 0.55], [np.nan, np.nan, np.nan]])
    assert LabelSet(("a", "b", "c")).decide(probs) == ["b", "a", ""]
    multi = LabelSet(("a", "b", "c"), multi_label=True)
    assert multi.decide(probs, [0.5, 0.5, 0.6]) == ["b", "a;b", ""]
    assert multi.decide(probs) == ["b", "a;b;c", ""]


def test_a_model_folder_decides_at_its_runs_thresholds(tmp_path):
    import json

    import yaml

    from emolab.rundir import decision_thresholds

    run = tmp_path / "run"
    (run / "exports" / "onnx").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump({"eval": {"threshold": 0.3}}))
    (run / "metrics.json").write_text(json.dumps({"tuned_thresholds": {"a": 0.7}}))
    assert list(decision_thresholds(run / "exports" / "onnx", ("a", "b"))) == [0.7, 0.3]  # tuned, else eval.threshold
    (run / "metrics.json").write_text(json.dumps({}))  # eval.tune_thresholds: false
    assert list(decision_thresholds(run, ("a", "b"))) == [0.3, 0.3]
    assert list(decision_thresholds(tmp_path / "elsewhere", ("a", "b"))) == [0.5, 0.5]


def test_run_files_are_named_in_one_place():
    """Writers and readers of a run name its files through ``emolab.runfiles``, never by a literal of their own
    (scoring's ``manifest.json`` is the manifest of a scoring output, not of a run)."""
    from emolab import runfiles

    names = {v for k, v in vars(runfiles).items() if k.isupper() and isinstance(v, str) and "." in v}
    assert {"metrics.json", "data_stats.json", "analysis/analysis.json"} <= names
    allowed = {("emolab.scoring.writers", "manifest.json")}
    offenders = []
    for name, path in MODULES.items():
        if name == "emolab.runfiles":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Constant) and node.value in names and (name, node.value) not in allowed:
                offenders.append(f"{path.relative_to(ROOT.parent)}:{node.lineno} spells {node.value!r}")
    assert not offenders, "\n".join(offenders)
