"""Label-efficient variants and P2SOD point prompts, derived from a built TinySet.

``derive_variant(data_dir, setting)`` writes ``data_dir/variants/<name>/``; the settings are
listed in :data:`SETTINGS` and defined in ``docs/variants.md``. Importing this package never
imports torch.
"""

from __future__ import annotations

from benchmark.protocols.derive import SETTINGS, Setting, derive_variant, variant_name

__all__ = ["SETTINGS", "Setting", "derive_variant", "variant_name"]
