"""``emolab export``: a run's model as a deployable folder, ONNX (fp32 or int8 weights) or a Hugging Face
transformers folder, with the run's model card as its ``README.md``. It sits above the compression
package (whose ONNX and HF writers it calls) and the report (whose model card it writes).

The folder is built in a temporary folder beside the target and renamed when complete; an earlier export
is replaced only with ``overwrite``, and never a run or a folder emolab did not write.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

from emolab.compression.methods import model_kind
from emolab.errors import EmolabError
from emolab.models.registry import MODEL_FILE
from emolab.outputs import inside, is_run_dir, new_temp_folder, replace_folder

Say = Callable[[str], None]

EXPORT_FORMATS = ("onnx", "hf")
EXPORT_TITLES = {"hf": "a Hugging Face transformers model folder", "onnx": "an ONNX model (fp32)"}


def _export_card(run: Path, folder: Path, format: str, int8: bool) -> None:
    """The run's model card, headed for the export (``README.md`` in the export folder)."""
    from emolab.report.modelcard import write_model_card

    title = "an ONNX model with int8 weights" if int8 else EXPORT_TITLES[format]
    note = ("The results below are the run's own (fp32); int8 weights move them slightly: `emolab compress RUN` "
            "measures the change on the same test examples with a paired test." if int8 else
            "The weights are the run's, unchanged: the results below apply to this folder.")
    write_model_card(run, folder, export={"format": format + ("-int8" if int8 else ""), "title": title, "note": note})


def export_run(run_path: str | Path, *, format: str = "onnx", int8: bool = False, out: str | Path | None = None,
               overwrite: bool = False, say: Say = print) -> Path:
    """Write a deployable model folder for the run: ``onnx`` (``emolab predict`` and ``emolab serve`` load it
    like a run; ONNX Runtime and Optimum users find ``config.json`` and the tokenizer beside ``model.onnx``) or
    ``hf`` (a transformers model folder, text runs)."""
    from emolab.errors import unknown_name
    from emolab.models import load_model

    if format not in EXPORT_FORMATS:
        raise unknown_name("export format", format, EXPORT_FORMATS)
    if format == "hf" and int8:
        raise EmolabError("--int8 applies to --format onnx", hint="leave --int8 out for --format hf")
    run = Path(run_path)
    name = f"{format}-int8" if int8 else format
    final = Path(out) if out is not None else run / "exports" / name
    _check_export_target(run, final, overwrite=overwrite)
    model = load_model(run)
    partial = new_temp_folder(final)  # ours alone: removed on failure, renamed on success
    try:
        _write_export(run, model, partial, format=format, int8=int8, say=say)
        replace_folder(partial, final)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if format == "hf":
        say(f"wrote {final} (load it with: transformers.pipeline('text-classification', model='{final}', "
            "trust_remote_code=True))")
    else:
        example = "face.png" if model_kind(model) == "image" else '"some text"'
        say(f"wrote {final} (load it with: emolab predict {final} {example})")
    return final


def _check_export_target(run: Path, final: Path, *, overwrite: bool) -> None:
    """An export never writes into or over a run (its own or another), an ancestor of the run, or a folder that is
    not an earlier export; an earlier export is replaced only with ``overwrite``."""
    if inside(run, final):
        raise EmolabError(f"--out {final} would replace the run {run} (or a folder holding it)",
                          hint="choose a new folder for the export, e.g. --out exports/my-model")
    for folder in [final, *final.parents]:
        if folder.exists() and is_run_dir(folder) and not inside(final, folder / "exports"):
            raise EmolabError(f"--out {final} is inside the run {folder}",
                              hint="exports go to RUN/exports/ (the default) or a folder outside any run")
    if final.exists():
        if not final.is_dir() or not (final / MODEL_FILE).is_file():
            raise EmolabError(f"--out {final} exists and is not an emolab export",
                              hint="choose a new folder for the export; emolab never replaces a folder it did not write")
        if not overwrite:
            raise EmolabError(f"{final} exists", hint="add --overwrite to replace it, or choose another --out")


def _write_export(run: Path, model, folder: Path, *, format: str, int8: bool, say: Say) -> None:
    from emolab.compression.quantize import export_onnx

    if format == "hf":
        from emolab.compression.hf import export_hf

        export_hf(model, folder)
        _export_card(run, folder, format, int8)
        return
    side, calibration = model.card().side, None  # text models: unused
    if int8:  # static int8: activation scales from training faces or texts
        from emolab.compression.methods import calibration as calibration_inputs
        from emolab.data import load_dataset
        from emolab.rundir import load_run_config

        cfg = load_run_config(run)
        say(f"calibrating int8 on training {'faces' if model_kind(model) == 'image' else 'texts'} of {cfg.data.name}")
        calibration = calibration_inputs(load_dataset(cfg.data, cfg.seed), cfg.seed, model_kind(model))
    export_onnx(model, folder, int8=int8, source=str(run), calibration=calibration, side=side)
    _export_card(run, folder, format, int8)
