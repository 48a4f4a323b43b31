"""Where dataset files come from: an explicit path, ``EMOLAB_DATA_DIR``, the local cache, or a download
from the canonical online source with sha256 verification."""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from emolab.errors import DataError


@dataclass(frozen=True)
class Source:
    """The files a named dataset needs and how to fetch them.

    ``sha256`` maps each file name to its expected checksum (None: not published). Files are fetched
    one by one from ``urls``, or extracted from the zip at ``archive_url`` (member paths in ``members``).
    """

    name: str
    sha256: dict[str, str | None]
    urls: dict[str, str] = field(default_factory=dict)
    archive_url: str | None = None
    members: dict[str, str] = field(default_factory=dict)


def sha256_of(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cache_dir() -> Path:
    root = os.environ.get("EMOLAB_CACHE_DIR") or Path.home() / ".cache" / "emolab"
    return Path(root) / "datasets"


def _missing(folder: Path, names) -> list[str]:
    return [n for n in names if not (folder / n).is_file()]


def _download(url: str, timeout: float = 60.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (fixed, known URLs)
        return response.read()


def _verify(name: str, data: bytes, expected: str | None, origin: str) -> None:
    if expected is None:
        return
    got = hashlib.sha256(data).hexdigest()
    if got != expected:
        raise DataError(
            f"checksum mismatch for {name} from {origin}: sha256 {got}, expected {expected}",
            hint="the download is corrupt or the upstream file changed; delete it and retry, or place a "
                 "verified copy in EMOLAB_DATA_DIR",
        )


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def download(source: Source, dest: Path) -> None:
    """Fetch every file of ``source`` into ``dest``, verifying checksums before anything is kept."""
    blobs: dict[str, bytes] = {}
    if source.archive_url:
        archive = _download(source.archive_url)
        with zipfile.ZipFile(io.BytesIO(archive)) as zf:
            for fname, member in source.members.items():
                blobs[fname] = zf.read(member)
        origin = source.archive_url
    else:
        origin = ", ".join(source.urls.values())
    for fname, url in source.urls.items():
        blobs[fname] = _download(url)
    for fname, data in blobs.items():
        _verify(fname, data, source.sha256.get(fname), origin)
    for fname, data in blobs.items():
        _atomic_write(dest / fname, data)


def resolve(source: Source, path: str | None = None, *, allow_download: bool = True) -> Path:
    """The folder holding every file of ``source``; downloads into the cache as a last resort."""
    names = list(source.sha256)
    if path:
        folder = Path(path).expanduser()
        missing = _missing(folder, names)
        if missing:
            raise DataError(
                f"dataset {source.name!r}: {folder} lacks {', '.join(missing)}",
                hint=f"data.path must be a folder holding {', '.join(names)}",
            )
        return folder
    candidates = []
    if os.environ.get("EMOLAB_DATA_DIR"):
        candidates.append(Path(os.environ["EMOLAB_DATA_DIR"]).expanduser() / source.name)
    candidates.append(cache_dir() / source.name)
    for folder in candidates:
        if not _missing(folder, names):
            return folder
    dest = cache_dir() / source.name
    if allow_download and (source.urls or source.archive_url):
        try:
            download(source, dest)
            return dest
        except DataError:
            raise
        except OSError as exc:
            reason = f"download failed ({exc})"
    else:
        reason = "downloads are off (data.download: false)"
    where = " or ".join(str(c) for c in candidates)
    raise DataError(
        f"dataset {source.name!r} not found locally and {reason}",
        hint=f"put {', '.join(names)} in {where} (or set EMOLAB_DATA_DIR to a folder holding "
             f"{source.name}/, or give data.path)",
    )


def checksums(folder: Path, names) -> dict[str, str]:
    return {str(folder / n): sha256_of(folder / n) for n in names}


