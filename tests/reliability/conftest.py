"""Reports how many hostile inputs the reliability suite tried (the figure in docs/reliability.md)."""

from __future__ import annotations

from typing import Any


def pytest_terminal_summary(terminalreporter: Any) -> None:
    from _hostile import CRASHES, TRIED

    if TRIED or CRASHES:
        parts = ", ".join(f"{k}: {v}" for k, v in sorted(TRIED.items()))
        terminalreporter.write_line(f"reliability: {sum(TRIED.values())} hostile inputs tried "
                                    f"({parts}); {sum(CRASHES.values())} SIGKILLs survived "
                                    f"({', '.join(f'{k}: {v}' for k, v in sorted(CRASHES.items()))})")
