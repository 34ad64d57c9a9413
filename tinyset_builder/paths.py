"""Safe path handling: a file name from an annotation may never leave its source root.

Annotation files are data from the internet. A crafted ``file_name`` such as ``../../etc/passwd``,
an absolute path, or a symlink that points outside the source folder would otherwise make the
toolkit read (or, in a later stage, overwrite) files the user never meant to expose.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from tinyset_builder.errors import SourceError


def safe_join(root: Path, relative: str, *, location: str = "") -> Path:
    """Join ``relative`` (POSIX or Windows separators) under ``root``, refusing any escape.

    Raises:
        SourceError: the name is absolute, climbs out with ``..``, or resolves (through a
            symlink) to a place outside ``root``.
    """
    where = f"{location}: " if location else ""
    name = relative.replace("\\", "/")
    pure = PurePosixPath(name)
    if not name or pure.is_absolute() or (len(name) > 1 and name[1] == ":"):
        raise SourceError(f"{where}file name {relative!r} must be relative to the source root")
    if ".." in pure.parts:
        raise SourceError(f"{where}file name {relative!r} escapes the source root")
    path = root.joinpath(*pure.parts)
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    if os.path.commonpath([real_root, real]) != real_root:
        raise SourceError(f"{where}file name {relative!r} resolves outside the source root "
                          f"(symlink to {real})")
    return path


def relative_posix(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` with forward slashes (stable across platforms)."""
    return path.relative_to(root).as_posix()
