"""Optional dependencies: check for them cheaply and fail with the extra that installs them."""

from __future__ import annotations

from importlib.util import find_spec

from tinyset_builder.errors import MissingDependencyError


def is_available(module: str) -> bool:
    """True when ``module`` can be imported (checked without importing it)."""
    try:
        return find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require(*modules: str, extra: str) -> None:
    """Raise :class:`MissingDependencyError` naming ``extra`` if any module is missing."""
    missing = [m for m in modules if not is_available(m)]
    if missing:
        raise MissingDependencyError(
            f"{', '.join(missing)} not installed; install it with: pip install 'tinyset[{extra}]'")
