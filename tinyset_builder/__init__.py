"""TinySet builder: converters for the 24 TinySet-9M sources and the build that merges them.

Importing this package is cheap and never imports torch or any other framework; each stage is
imported where it is used.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
