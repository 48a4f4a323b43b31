"""Where emolab writes: the rules every command that writes a file or a folder follows.

Nothing the user had is lost: a file is written whole or not at all (:func:`atomic_write`), an existing
output is replaced only when the user asked (``--overwrite``), an input is never an output, a name given
for a run or an output is a name (no ``..`` or separators), and a folder is removed only by the code that
created it. A leaf module: it imports nothing of emolab but its errors and the names of run files.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable

from emolab import runfiles
from emolab.errors import EmolabError


def atomic_write(path: Path, data: str | bytes) -> None:
    """Write via a temporary file in the same folder and rename, so readers never see half a file."""
    path = Path(path)
    writable_folder(path.parent, what=str(path))
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the mode a plain open() would
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def writable_folder(folder: Path, *, what: str) -> Path:
    """Create ``folder`` if needed and check it can be written; a clear error naming ``what`` otherwise."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise EmolabError(f"cannot write {what}: {folder} is a file, not a folder",
                          hint="choose an output path whose folder is a folder") from None
    except OSError as exc:
        raise EmolabError(f"cannot write {what}: cannot create the folder {folder} ({exc.strerror})",
                          hint="choose an output in a folder you can write") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise EmolabError(f"cannot write {what}: the folder {folder} is not writable",
                          hint="choose an output in a folder you can write") from None
    return folder


def check_name(name: str, *, what: str = "output.name") -> str:
    """A run or output name is one folder name: not empty, not ``.`` or ``..``, no path separators."""
    text = str(name)
    if (not text.strip() or text in (".", "..") or "/" in text or "\\" in text or os.sep in text
            or "\x00" in text or text != text.strip() or text.startswith(".")):
        raise EmolabError(f"{what} {text!r} is not a name",
                          hint=f"give a plain folder name (letters, digits, '-', '_'), e.g. --set {what}=my-run; "
                               "output.dir chooses the parent folder")
    return text


def _same(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def inside(path: Path, folder: Path) -> bool:
    """``path`` is ``folder`` or lies under it (links resolved)."""
    try:
        Path(path).resolve().relative_to(Path(folder).resolve())
        return True
    except ValueError:
        return False


def check_output(path: str | Path, *, inputs: Iterable[str | Path] = (), overwrite: bool = False,
                 flag: str = "--output") -> Path:
    """An output file may be written here: never an input (not even with ``--overwrite``), never a folder,
    an existing file only with ``--overwrite``, and its folder writable."""
    path = Path(path)
    for item in inputs:
        item = Path(item)
        if _same(path, item) or path.resolve() == item.resolve():
            raise EmolabError(f"{flag} {path} is one of the inputs; emolab never writes over an input",
                              hint=f"choose another {flag} path")
    if path.is_dir():
        raise EmolabError(f"{flag} {path} is a folder", hint=f"give {flag} a file name, e.g. {path / 'out.csv'}")
    if path.exists() and not overwrite:
        raise EmolabError(f"{flag} {path} exists", hint="add --overwrite to replace it, or choose another path")
    writable_folder(path.parent, what=str(path))
    return path


def unique_names(files: list[Path], suffix: str) -> dict[Path, str]:
    """One output name per input file, ``<stem><suffix>``: inputs that share a stem (``a.jpg`` and ``a.png``, or
    ``x/a.jpg`` and ``y/a.jpg``) get ``<stem>-2<suffix>``, ``-3`` ... in input order."""
    names: dict[Path, str] = {}
    taken: set[str] = set()
    for f in files:
        stem, i = f.stem, 1
        name = f"{stem}{suffix}"
        while name.lower() in taken:
            i += 1
            name = f"{stem}-{i}{suffix}"
        taken.add(name.lower())
        names[f] = name
    return names


def check_new_files(folder: Path, names: Iterable[str], *, overwrite: bool = False, inputs: Iterable[Path] = (),
                    flag: str = "--annotate") -> None:
    """Files about to be written into ``folder``: none may exist unless ``--overwrite``, none may be an input."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise EmolabError(f"{flag} {folder} is a file", hint=f"give {flag} a folder")
    inputs = [Path(i) for i in inputs]
    clashes = []
    for name in names:
        target = folder / name
        if any(_same(target, i) for i in inputs):
            raise EmolabError(f"{flag} would write {target}, which is one of the inputs",
                              hint=f"choose another {flag} folder")
        if target.exists():
            clashes.append(target)
    if clashes and not overwrite:
        more = f" (and {len(clashes) - 1} more)" if len(clashes) > 1 else ""
        raise EmolabError(f"{clashes[0]} exists{more}", hint=f"add --overwrite to replace, or choose another {flag} folder")
    writable_folder(folder, what=f"{flag} {folder}")


def is_run_dir(folder: Path) -> bool:
    """A folder written by ``emolab run`` (finished or not)."""
    folder = Path(folder)
    return folder.is_dir() and any((folder / name).is_file()
                                   for name in (runfiles.CONFIG, runfiles.MANIFEST, runfiles.METRICS))


def new_temp_folder(final: Path) -> Path:
    """A fresh folder beside ``final`` to build it in; it belongs to the caller, who alone may remove it."""
    writable_folder(final.parent, what=str(final))
    folder = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.partial-"))
    os.chmod(folder, 0o777 & ~_umask())  # mkdtemp makes 0700 folders; give the mode a plain mkdir would
    return folder


def replace_folder(partial: Path, final: Path) -> Path:
    """``partial`` (a finished temporary folder) renamed to ``final``; an earlier ``final`` is swapped out first
    and removed only once the new one is in place."""
    if final.exists():
        trash = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, trash)
        os.replace(partial, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(partial, final)
    return final
