"""The controller's yapf grammar priming (google/yapf#1204): works with no cache, an older cache
and a truncated cache, in a fresh interpreter with its own cache directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("yapf_third_party._ylib2to3.pgen2.driver")

HERE = Path(__file__).resolve().parent
PRIME = ("import sys; sys.path.insert(0, {here!r}); from _yapf_grammar import prime_yapf_grammar;"
         "prime_yapf_grammar();"
         "from yapf_third_party._ylib2to3.pgen2 import driver;"
         "print(driver._generate_pickle_name('Grammar.txt'))")


def _prime(cache: Path) -> Path:
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    out = subprocess.run([sys.executable, "-c", PRIME.format(here=str(HERE))], env=env,
                         capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def _loads_in_fresh_process(cache: Path) -> None:
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    subprocess.run([sys.executable, "-c", "import yapf"], env=env,
                   check=True, capture_output=True)


def test_priming_writes_a_readable_grammar_cache(tmp_path: Path) -> None:
    pickle_path = _prime(tmp_path)
    assert str(pickle_path).startswith(str(tmp_path)) and pickle_path.stat().st_size > 1000
    _loads_in_fresh_process(tmp_path)


@pytest.mark.parametrize("state", ["truncated", "older"])
def test_priming_repairs_a_bad_or_stale_cache(tmp_path: Path, state: str) -> None:
    pickle_path = _prime(tmp_path)
    good = pickle_path.read_bytes()
    if state == "truncated":  # what a reader sees when the writer has not flushed yet
        pickle_path.write_bytes(b"")
        env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
        broken = subprocess.run([sys.executable, "-c", "import yapf"],
                                env=env, capture_output=True, text=True)
        assert broken.returncode != 0 and "EOFError" in broken.stderr
    else:  # a pickle from an earlier install: older than the installed Grammar.txt
        os.utime(pickle_path, (1, 1))
    _prime(tmp_path)
    assert pickle_path.read_bytes() == good
    _loads_in_fresh_process(tmp_path)
