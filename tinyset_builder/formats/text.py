"""Reading native text annotation files line by line, with the file and line in every error."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from tinyset_builder.errors import ErrorPolicy, SourceError


def read_text(path: Path, *, encoding: str = "utf-8") -> str:
    """Read a whole text file; a missing file or bad encoding is a :class:`SourceError`."""
    try:
        return path.read_bytes().decode(encoding)
    except FileNotFoundError:
        raise SourceError(f"{path}: file not found") from None
    except UnicodeDecodeError as e:
        raise SourceError(f"{path}: not {encoding} text (byte {e.start})") from None


def read_text_or_skip(path: Path, policy: ErrorPolicy, *, encoding: str = "utf-8-sig",
                      ) -> str | None:
    """Read a whole annotation file; an undecodable one is one bad record (``None`` if skipped).

    ``utf-8-sig`` drops a byte-order mark that Windows tools put at the start of a file. A missing
    file still raises: that is a layout problem, which no policy can skip.
    """
    try:
        return read_text(path, encoding=encoding)
    except SourceError as e:
        if "file not found" in str(e):
            raise
        policy.fail(str(path), str(e).removeprefix(f"{path}: "))
        return None


_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def split_lines(text: str) -> list[str]:
    """``text`` cut at line breaks (``\\n``, ``\\r\\n``, ``\\r``) only, so line numbers are the ones
    an editor shows. (``str.splitlines`` also breaks at form feeds, ``\\x1c``-``\\x1e``, ``\\x85``
    and U+2028/9, which would shift every later line number and cut a record in two.)"""
    return _LINE_BREAK.split(text)


def read_lines(path: Path, policy: ErrorPolicy, *, encoding: str = "utf-8-sig",
               ) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, stripped_text)`` for every non-blank line (1-based numbers).

    An undecodable file is reported through ``policy`` as one bad record and yields nothing.
    """
    text = read_text_or_skip(path, policy, encoding=encoding)
    if text is None:
        return
    for lineno, line in enumerate(split_lines(text), start=1):
        line = line.strip()
        if line:
            yield lineno, line
