"""Errors and the error policy shared by every reader, converter and build step.

A user error (a malformed annotation line, a missing folder, an unknown category) is raised as
:class:`TinysetError` with a one-line message that names the file and the line or record. The CLI
prints that line and exits non-zero; it never shows a traceback for one.

Converters run under an :class:`ErrorPolicy`. With ``on_error="raise"`` (the default) the first
problem stops the run; with ``on_error="skip"`` the offending record is skipped and counted by
reason, and the counts end up in the converter's summary and in ``build.json``. Nothing is ever
dropped silently.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal, NoReturn

OnError = Literal["raise", "skip"]


class TinysetError(Exception):
    """A problem with the user's input, reported as one line without a traceback."""


class SourceError(TinysetError):
    """A problem in a source's native files: names the file and the line or record."""


class MissingDependencyError(TinysetError, ModuleNotFoundError):
    """An optional package is missing; the message names the extra that installs it."""


def where(path: object, record: object | None = None) -> str:
    """Format a location as ``path`` or ``path:record`` for error messages."""
    return f"{path}" if record is None else f"{path}:{record}"


_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_PATH = re.compile(r"[^\s'\"]*/[^\s'\"]*")
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|\b(?:nan|inf)\b")


def reason_kind(reason: str) -> str:
    """A reason with its specifics blanked, for counting skips by kind.

    Paths become ``<path>``, quoted values ``'…'`` and numbers ``#``: ``box [1, 2, 3, 4] lies
    outside the 800x600 image`` → ``box [#, #, #, #] lies outside the #x# image``.
    """
    return _NUMBER.sub("#", _QUOTED.sub("'…'", _PATH.sub("<path>", reason)))


@dataclass
class ErrorPolicy:
    """Decides what happens to a bad record: raise at once, or skip it and count why.

    Attributes:
        on_error: ``"raise"`` stops at the first problem; ``"skip"`` counts and goes on.
        skipped: how many records were skipped, by reason (only with ``"skip"``).
        examples: the first location seen for each reason, so a summary can point at one.
    """

    on_error: OnError = "raise"
    skipped: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.on_error not in ("raise", "skip"):
            raise TinysetError(f"on_error must be 'raise' or 'skip', got {self.on_error!r}")

    def fail(self, location: str, reason: str) -> None:
        """Report a bad record at ``location``: raise, or count it and go on.

        Skips are counted by the *kind* of reason (:func:`reason_kind`: numbers and quoted values
        blanked), so a thousand boxes outside their images make one row with a count, and the
        first full message of each kind (``location: reason``) is kept in ``examples``. Returns
        only in skip mode; the caller then drops the record.
        """
        if self.on_error == "raise":
            raise SourceError(f"{location}: {reason}")
        kind = reason_kind(reason)
        self.skipped[kind] += 1
        self.examples.setdefault(kind, f"{location}: {reason}")

    def fatal(self, location: str, reason: str) -> NoReturn:
        """Report a problem that no policy can skip (e.g. a missing source root)."""
        raise SourceError(f"{location}: {reason}")

    @property
    def total_skipped(self) -> int:
        """Number of records skipped so far, all reasons together."""
        return sum(self.skipped.values())
