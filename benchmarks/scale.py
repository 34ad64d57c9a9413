"""TinySet-9M on one machine (issue 23): build and evaluation memory/time, fitted and extrapolated.

    .venv/bin/python benchmarks/scale.py eval --sizes 500x300x1000,1000x300x1000 --json e.json
    .venv/bin/python benchmarks/scale.py build ...

Each half lives in its own module beside this file and registers its sub-command here:
``scale_eval.py`` (``eval``: ``tinyset eval`` on synthesized GT/detection files of given sizes)
and the build half (``build``).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

#: (module beside this file, its registration function) per sub-command.
HALVES = (("scale_eval", "add_eval_parser"), ("scale_build", "add_build_parser"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    for module, register in HALVES:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
            continue  # that half is not written yet
        getattr(mod, register)(sub)
    args = ap.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
