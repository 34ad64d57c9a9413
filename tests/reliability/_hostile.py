"""Shared pieces of the reliability suite: hostile values, a policy that records every skip,
and the checks every reader outcome must pass."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import strategies as st

from tinyset_builder.errors import ErrorPolicy, TinysetError

#: Generated inputs per reader in this session, and those of them that were hostile: the code
#: under test refused them in whole or in part (a one-line error, or a counted skip). Valid
#: inputs the generators also produce count in TRIED only. Printed at the end of every run by
#: ``tests/conftest.py`` (gathered from all xdist workers).
TRIED: Counter[str] = Counter()
HOSTILE: Counter[str] = Counter()
#: SIGKILLs that landed mid-run, per command (each followed by a resume to identical output).
CRASHES: Counter[str] = Counter()


def tried(name: str, refused: bool) -> None:
    """Count one generated input of reader ``name``; as hostile if it was ``refused``."""
    TRIED[name] += 1
    if refused:
        HOSTILE[name] += 1

#: Numbers that break naive parsers: NaN/inf, huge, negative, zero, float noise.
HOSTILE_NUMBERS = ["nan", "NaN", "inf", "-inf", "Infinity", "1e309", "-1e309", "1e308",
                   "99999999999999999999999", "-5", "0", "-0.0", "0.0", "1e-320", "0x10",
                   "1_000", "", " ", "1,5", "١٢", "２"]

#: Texts that are not numbers at all, including odd Unicode and control characters.
hostile_text = st.one_of(
    st.sampled_from(HOSTILE_NUMBERS),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12),
    st.sampled_from(["null", "[]", "{}", "true", "\x00", "\ufeff", "é", "🐛", "'", '"', "\\"]),
)

#: Finite floats, including those far outside any image.
any_float = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                      st.floats(-1e6, 1e6), st.sampled_from([0.0, -1.0, 1e300, -1e300]))


def hostile_line(n_fields: int, sep: str) -> st.SearchStrategy[str]:
    """A line of roughly ``n_fields`` fields, each possibly hostile, joined by ``sep``."""
    return st.lists(st.one_of(hostile_text, st.floats(allow_nan=True).map(repr),
                              st.integers(-10**30, 10**30).map(str)),
                    min_size=0, max_size=n_fields + 2).map(sep.join)


#: Whole-file payloads: raw bytes, other encodings, a byte-order mark, nothing at all.
hostile_bytes = st.one_of(
    st.binary(max_size=200),
    st.just(b""),
    st.text(max_size=60).map(lambda t: t.encode("utf-16")),
    st.text(alphabet="äöüßéèàç€", min_size=1, max_size=30).map(lambda t: t.encode("latin-1",
                                                                                  "replace")),
    st.just(b"\xef\xbb\xbf"),
    st.just(b"\xff\xfe\x00\x00garbage"),
)


@dataclass
class RecordingPolicy(ErrorPolicy):
    """An :class:`ErrorPolicy` that also remembers the location of every skipped record."""

    locations: list[str] = field(default_factory=list)

    def fail(self, location: str, reason: str) -> None:
        if self.on_error == "skip":
            self.locations.append(location)
        super().fail(location, reason)


def check_error(e: BaseException, path: Path | str) -> None:
    """A user error: a TinysetError, one line, naming the file."""
    assert isinstance(e, TinysetError), f"{type(e).__name__}: {e}"
    msg = str(e)
    assert "\n" not in msg and "\r" not in msg, f"multi-line error: {msg!r}"
    assert str(path) in msg, f"error does not name {path}: {msg!r}"


def line_numbers(locations: list[str], path: Path) -> list[int]:
    """The line numbers of ``<path>:<line>`` locations (file-level ones are left out)."""
    out = []
    for loc in locations:
        m = re.fullmatch(re.escape(str(path)) + r":(\d+)", loc)
        if m:
            out.append(int(m.group(1)))
    return out


def nonblank_lines(data: bytes) -> list[int] | None:
    """1-based numbers of non-blank lines as the text readers see them; None if not UTF-8."""
    from tinyset_builder.formats.text import split_lines

    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None
    return [i for i, line in enumerate(split_lines(text), start=1) if line.strip()]


# ---------------------------------------------------------------------------------------------
# Running the real CLI

ROOT = Path(__file__).resolve().parents[2]
TINYSET = str(Path(sys.executable).with_name("tinyset"))
#: A Hub token every subprocess gets in HF_TOKEN; it must never show up in output or files.
SECRET = "hf_RELIABILITYxSECRETxTOKENx8f3a9c"


def cli_env(**extra: str) -> dict[str, str]:
    """The test's environment without the user's Hub settings, plus the fake token."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    env.update({"NO_COLOR": "1", "COLUMNS": "200", "HF_HUB_OFFLINE": "1", "HF_TOKEN": SECRET,
                "HF_HOME": "/nonexistent-hf-home", **extra})
    return env


def run_cli(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    """Run to completion; return the wall time and stderr."""
    t0 = time.monotonic()
    p = subprocess.run(cmd, env=env or cli_env(), capture_output=True, text=True, timeout=600,
                       cwd=ROOT)
    assert p.returncode == 0, f"{cmd} failed:\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}"
    assert "Traceback" not in p.stderr
    assert SECRET not in p.stdout + p.stderr, f"{cmd} printed the Hub token"
    return time.monotonic() - t0, p.stderr




def assert_no_secret(root: Path) -> None:
    """No file under ``root`` holds the Hub token (results, logs, cards, state files)."""
    leaks = [p for p in root.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
    assert leaks == [], f"the Hub token was written to {leaks}"
