"""The ``tinyset`` console script.

Sub-commands live in small modules next to the stage they drive, each with a ``register(app)``
function; this file only assembles them and turns user errors into one red line and a non-zero
exit code (never a traceback). Command modules import their stage inside the command body, so
``tinyset --help`` and ``tinyset eval`` stay free of torch.
"""

from __future__ import annotations

import importlib
import sys

import typer

#: Modules that add commands, in the order they appear in ``tinyset --help``.
COMMAND_MODULES = (
    "tinyset_builder.cli_sources",   # sources list/check/synth/convert
    "tinyset_builder.cli_build",     # build, stats
    "benchmark.cli_derive",          # derive
    "benchmark.cli_eval",            # eval
    "benchmark.cli_bench",           # benchmark, report
    "deal.cli",                      # deal train/predict
    "tinyset_builder.cli_hub",       # browse, publish
    "tinyset_builder.cli_demo",      # demo
)


def build_app() -> typer.Typer:
    """Create the Typer app with every command module registered."""
    app = typer.Typer(name="tinyset", no_args_is_help=True, add_completion=False,
                      help="Rebuild TinySet-9M, benchmark label-efficient detectors and DEAL.",
                      pretty_exceptions_enable=False)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(app)
    return app


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code; user errors print one line on stderr and give 2.

    Typer's standalone mode reports usage errors (a missing option, a bad value) itself, as one
    message with the usage line, and exits with code 2 (``tinyset eval``'s options are parsed by
    argparse derived from the same Typer signature, which does the same; see
    ``benchmark/cli_eval.py``).
    """
    from tinyset_builder.errors import TinysetError

    args = sys.argv[1:] if argv is None else list(argv)
    try:
        if args[:1] == ["eval"] and not {"-h", "--help"} & set(args):
            # Typer would import pydantic to coerce the options: ~0.2 s of a small evaluation
            from benchmark.cli_eval import main_without_typer

            main_without_typer(args[1:])
        else:
            build_app()(args=args, prog_name="tinyset")
    except TinysetError as e:
        typer.secho(f"error: {e}", fg="red", err=True)
        return 2
    except KeyboardInterrupt:
        typer.secho("interrupted", fg="red", err=True)
        return 130
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
