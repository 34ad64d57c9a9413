"""Reports how many hostile inputs the reliability suite tried (figures in docs/reliability.md)."""

from __future__ import annotations

from typing import Any


def pytest_terminal_summary(terminalreporter: Any) -> None:
    from _hostile import CRASHES, TRIED

    if TRIED or CRASHES:
        tried = ", ".join(f"{k}: {v}" for k, v in sorted(TRIED.items()))
        kills = ", ".join(f"{k}: {v}" for k, v in sorted(CRASHES.items()))
        terminalreporter.write_line(f"reliability: {sum(TRIED.values())} hostile inputs tried "
                                    f"({tried}); {sum(CRASHES.values())} SIGKILLs survived "
                                    f"({kills})")
