"""Atomic, deterministic file output and friendly input.

Every file the toolkit writes goes through :func:`atomic_write_bytes`: the bytes land in a
temporary file in the same folder, are flushed to disk, and are renamed over the target. A reader
therefore sees either the old file or the complete new one, never half of one, even if the writer
is killed (the rename is atomic on POSIX file systems).

JSON is written with a fixed layout (compact separators, keys in the order the caller built them,
UTF-8, trailing newline), so the same data gives byte-identical files.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from tinyset_builder.errors import TinysetError

# mkstemp creates files as 0600; written files get the usual 0666 & ~umask instead.
_UMASK = os.umask(0)
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks (memory does not grow with the file)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def dumps_json(obj: Any, *, indent: int | None = None) -> bytes:
    """Serialise ``obj`` to UTF-8 JSON bytes in the toolkit's fixed layout."""
    separators = (",", ":") if indent is None else (",", ": ")
    text = json.dumps(obj, ensure_ascii=False, separators=separators, indent=indent,
                      allow_nan=False)
    return (text + "\n").encode("utf-8")


def write_json(path: str | os.PathLike[str], obj: Any, *, indent: int | None = None) -> Path:
    """Write ``obj`` as JSON atomically; ``indent`` for small files people read (build.json)."""
    return atomic_write_bytes(path, dumps_json(obj, indent=indent))


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file, raising a one-line :class:`TinysetError` that names it on failure."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            return json.load(f)
    except FileNotFoundError:
        raise TinysetError(f"{path}: file not found") from None
    except UnicodeDecodeError as e:
        raise TinysetError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise TinysetError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
