"""Stand-in for the mmdet package (tests only; see ../../README.md)."""

__version__ = "3.3.0"
