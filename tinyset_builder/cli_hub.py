"""Commands of this stage; they import their stage inside the command body."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this stage's commands to ``app`` (none yet)."""
