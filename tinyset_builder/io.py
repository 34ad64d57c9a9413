"""Atomic, deterministic file output and friendly input.

Every file the toolkit writes goes through :func:`atomic_write_bytes`: the bytes land in a
temporary file in the same folder, are flushed to disk, and are renamed over the target. A reader
therefore sees either the old file or the complete new one, never half of one, even if the writer
is killed (the rename is atomic on POSIX file systems).

JSON is written with a fixed layout (compact separators, keys in the order the caller built them,
UTF-8, trailing newline), so the same data gives byte-identical files.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tinyset_builder.errors import TinysetError

# mkstemp creates files as 0600; written files get the usual 0666 & ~umask instead.
_UMASK = os.umask(0)
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK


#: Crash-test hook (``tests/reliability/test_rel_crashes.py``): with ``TINYSET_KILL_AT_WRITE=N``
#: in the environment, a process SIGKILLs its whole process group at its N-th atomic write,
#: after the temporary file is complete and before the rename. Unset (always, outside tests),
#: it costs one integer comparison per write.
_KILL_AT_WRITE = int(os.environ.get("TINYSET_KILL_AT_WRITE") or 0)
_writes_seen = 0


def kill_here_if_asked() -> None:
    """Count one atomic write; SIGKILL the process group if it is the ``TINYSET_KILL_AT_WRITE``-th.

    Every atomic writer calls this just before its rename, so a test can kill a real run at a
    point that is reproducible and certainly mid-run (writes are counted per process; with a
    worker pool, the first process to reach N takes the pool and its parent down with it, as an
    out-of-memory kill or a power cut would). Start the process in a new session
    (``start_new_session=True``), or the kill reaches the caller too.
    """
    global _writes_seen
    if _KILL_AT_WRITE:
        _writes_seen += 1
        if _writes_seen == _KILL_AT_WRITE:
            os.killpg(os.getpgrp(), signal.SIGKILL)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block succeeds, rename it over ``path``.

    The caller writes the temporary file however it likes (bytes, a Parquet writer,
    ``torch.save``). On success the file is fsync'd (unless ``fsync=False``, for outputs whose
    completeness another fsync'd marker vouches for), given the usual ``0666 & ~umask`` mode and
    renamed into place; on any exception, or a kill, ``path`` is untouched and the ``.part`` file
    is removed (or, after a kill, swept by the next run).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.chmod(tmp, FILE_MODE)
        kill_here_if_asked()
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, fsync: bool = True,
                       lean: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, rename).

    ``lean=True`` is the same mechanism cut down for the build's thousands of tiles, where one
    fsync'd marker (the task's result file) vouches for many outputs: no fsync, no ``mkdir``
    (the caller made the folder), and a temporary name fixed per process,
    ``.<name>.<pid>.part``, opened once with mode ``0666 & ~umask`` instead of a random
    ``mkstemp`` name that needs close + reopen + chmod. It is for paths that one writer owns
    (no two threads of a process write the same file). A killed process leaves either no file
    or the complete one; a stray ``.part`` is swept by the build.
    """
    if not lean:
        with atomic_path(path, fsync=fsync) as tmp:
            tmp.write_bytes(data)
        return Path(path)
    path = Path(path)
    tmp = f"{path.parent}/.{path.name}.{os.getpid()}.part"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        with open(fd, "wb") as f:
            f.write(data)
            if fsync:
                os.fsync(f.fileno())
        kill_here_if_asked()
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
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
