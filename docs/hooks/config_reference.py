"""The config reference page, generated from the config dataclasses at build time (an MkDocs hook).

Every key of the run config (``emolab.config.RunConfig``) and of each registered dataset's and model's own
section is listed with its type, its default and one line of help. The help is the ``# comment`` that
ends the field's line in the source, or the comment lines directly above the field; a key without help
stops the build, so the page cannot fall behind the code.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import sys
import textwrap
import tokenize
import types
import typing
from pathlib import Path
from typing import Any, Literal

PAGE = "reference/config.md"
SRC = Path(__file__).resolve().parents[2] / "src"


def _use_this_checkout() -> None:
    """Document this checkout's emolab, whatever else is installed (MkDocs restores sys.path after loading
    a hook module, so this runs at build time, not at import)."""
    if str(SRC) not in sys.path:
        sys.path.insert(0, str(SRC))


@dataclasses.dataclass(frozen=True)
class Key:
    """One documented config key."""

    key: str  # dotted, as a config file or `--set` writes it
    type: str
    default: str
    help: str | None
    owner: str  # the dataclass that declares it (module.Class)


# --- reading the source --------------------------------------------------------------------------------


def _field_comments(cls: type) -> dict[str, str]:
    """Field name -> its help comment, for the fields ``cls`` itself declares."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    comments: dict[int, str] = {}
    code_lines: set[int] = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
        elif tok.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER):
            code_lines.add(tok.start[0])
    found: dict[str, str] = {}
    node = ast.parse(source).body[0]
    for stmt in node.body:
        if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
            continue
        trailing = comments.get(stmt.end_lineno) if stmt.end_lineno in code_lines else None
        above: list[str] = []
        line = stmt.lineno - 1
        while line in comments and line not in code_lines:
            above.insert(0, comments[line])
            line -= 1
        if len(above) > 1:  # a comment block: its first sentence is the help line
            first = " ".join(above)
            above = [first.split(". ")[0].rstrip(".") + "."] if ". " in first else [first]
        text = " ".join(part for part in (" ".join(above), trailing) if part)
        if text:
            found[stmt.target.id] = text
    return found


def _help(cls: type, name: str) -> tuple[str | None, str]:
    """The help of field ``name`` of ``cls``: from the nearest class in its MRO that comments it."""
    owner = None
    for klass in cls.__mro__:
        if name in klass.__dict__.get("__annotations__", {}):
            owner = owner or klass
            text = _field_comments(klass).get(name)
            if text:
                return text, f"{klass.__module__}.{klass.__qualname__}"
    return None, f"{owner.__module__}.{owner.__qualname__}" if owner else cls.__qualname__


# --- types and defaults --------------------------------------------------------------------------------


def type_name(tp: Any) -> str:
    """A type annotation as a reader writes it in YAML terms."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " \\| ".join(f"`{a}`" if not isinstance(a, str) else f'`"{a}"`' for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        text = " or ".join(type_name(a) for a in args)
        return text + " or null" if len(args) < len(typing.get_args(tp)) else text
    names = {int: "int", float: "float", bool: "bool", str: "str", list: "list", dict: "mapping"}
    if tp in names:
        return names[tp]
    return getattr(tp, "__name__", str(tp))


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _yaml(value: Any) -> str:
    if value is dataclasses.MISSING:
        return "(required)"
    if value is None:
        return "`null`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f'`"{value}"`' if value else '`""`'
    return f"`{value!r}`"


# --- walking the dataclasses ---------------------------------------------------------------------------


def section_keys(cls: type, prefix: str = "", *, skip: tuple[str, ...] = (), expand: bool = True) -> list[Key]:
    """Every key of dataclass ``cls`` (nested dataclasses expanded as ``augment.p``), in declaration order."""
    hints = typing.get_type_hints(cls)
    keys: list[Key] = []
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        tp = hints[f.name]
        help_text, owner = _help(cls, f.name)
        if expand and dataclasses.is_dataclass(tp):
            keys.extend(section_keys(tp, f"{prefix}{f.name}."))
            continue
        keys.append(Key(f"{prefix}{f.name}", type_name(tp), _yaml(_default(f)), help_text, owner))
    return keys


def sections() -> list[tuple[str, str, list[Key]]]:
    """(title, introduction, keys) for every part of the page, in page order."""
    _use_this_checkout()
    import emolab.data
    import emolab.models
    from emolab import config
    from emolab.data.registry import DataConfig, dataset_config_class, list_datasets
    from emolab.models.registry import ModelConfig, list_models, model_class

    run = config.RunConfig
    hints = typing.get_type_hints(run)
    nested = [f.name for f in dataclasses.fields(run) if dataclasses.is_dataclass(hints[f.name])]
    out = [("Top level", "Keys at the top of a config file, beside its sections.",
            section_keys(run, skip=tuple(nested)))]
    for name in nested:
        if name in ("data", "model"):
            continue
        out.append((f"`{name}`", (inspect.getdoc(hints[name]) or "").split("\n\n")[0] if hints[name].__doc__
                    and not hints[name].__doc__.startswith(hints[name].__name__ + "(") else "",
                    section_keys(hints[name], f"{name}.")))
    base_data = {f.name for f in dataclasses.fields(DataConfig)}
    out.append(("`data`: every dataset", "Keys every dataset's `data` section has.", section_keys(DataConfig, "data.")))
    for name in list_datasets():
        cls = dataset_config_class(name)
        if not cls.__module__.startswith("emolab."):  # a dataset a test or a user registered
            continue
        keys = section_keys(cls, "data.", skip=tuple(base_data))
        intro = (f"`data: {{name: {name}}}` also takes these keys." if keys
                 else f"`data: {{name: {name}}}` takes only the keys every dataset has.")
        out.append((f"`data.name: {name}`", intro, keys))
    out.append(("`model`: every model", "Keys every model's `model` section has.", section_keys(ModelConfig, "model.")))
    for name in list_models():
        if not model_class(name).__module__.startswith("emolab."):  # a model a test or a user registered
            continue
        cls = model_class(name).config_class
        keys = section_keys(cls, "model.", skip=tuple(f.name for f in dataclasses.fields(ModelConfig)))
        written = "Written by `emolab compress` or `emolab export`, not named in a config"
        if model_class(name).training == "none":
            intro = written + ("; its saved config holds these keys." if keys else "; no keys beyond `name`.")
        elif keys:
            intro = f"`model: {{name: {name}}}` takes these keys."
        else:
            intro = f"`model: {{name: {name}}}` takes no keys beyond `name`."
        out.append((f"`model.name: {name}`", intro, keys))
    return out


def missing_help() -> list[Key]:
    """Keys without a help line (the build fails while there are any)."""
    return [k for _, _, keys in sections() for k in keys if not k.help]


def _cell(text: str) -> str:
    """Text for a table cell: pipes, angle brackets and braces escaped outside `code spans` (kept inside)."""
    parts = text.split("`")
    for i in range(0, len(parts), 2):
        parts[i] = (parts[i].replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")
                    .replace("{", "&#123;"))  # `{...}` would be read as attributes (attr_list)
    return "`".join(parts)


def render() -> str:
    """The Markdown page."""
    lines = [
        "# Config reference",
        "",
        "Generated from the config dataclasses when the documentation is built: every key, its type, its",
        "default and one line of help (the comment beside the field in the source). A config file is YAML",
        "with the sections below; any key can also be set on the command line with `--set section.key=value`.",
        "Unknown keys are refused, and every problem in a file is reported at once.",
        "",
        "The `data` and `model` sections belong to the dataset and the model they name: `data.name` picks",
        "the dataset (default `emotion`), `model.name` the model (default `tfidf`); each adds its own keys.",
        "",
    ]
    for title, intro, keys in sections():
        lines += [f"## {title}", ""]
        if intro:
            lines += [intro, ""]
        if keys:
            lines += ["| key | type | default | help |", "|---|---|---|---|"]
            lines += [f"| `{k.key}` | {k.type} | {_cell(k.default)} | {_cell(k.help or '')} |" for k in keys]
            lines.append("")
    return "\n".join(lines)


# --- the MkDocs hook -----------------------------------------------------------------------------------


def on_files(files, config):
    """Add the generated page; a key without help stops the build."""
    from mkdocs.exceptions import PluginError
    from mkdocs.structure.files import File

    missing = missing_help()
    if missing:
        raise PluginError("config keys without a help comment (add `# ...` after the field): "
                          + ", ".join(f"{k.key} ({k.owner})" for k in missing))
    files.append(File.generated(config, PAGE, content=render()))
    return files
