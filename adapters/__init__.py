"""Framework adapters behind one plain dict, imported lazily by name.

``ADAPTERS`` maps the ``adapter`` field of ``manifests/methods.toml`` to ``module:Class``.
:func:`get_adapter` imports only the module of the adapter asked for, so planning a benchmark
never imports torch, ultralytics or mmengine.
"""

from __future__ import annotations

import importlib

from adapters.base import Adapter, Detections, Job

ADAPTERS: dict[str, str] = {
    "torchvision": "adapters.torchvision_adapter:TorchvisionAdapter",
    "ultralytics": "adapters.ultralytics_adapter:UltralyticsAdapter",
    "mmdet": "adapters.mmdet_adapter:MMDetAdapter",
    "external": "adapters.external:ExternalAdapter",
    "zeroshot": "adapters.zeroshot:ZeroShotAdapter",
    "deal": "adapters.deal_adapter:DealAdapter",
    "native": "adapters.native:NativeAdapter",
}


def get_adapter(name: str) -> Adapter:
    """Instantiate the adapter registered as ``name``."""
    from tinyset_builder.errors import TinysetError

    if name not in ADAPTERS:
        raise TinysetError(f"unknown adapter {name!r}; known: {', '.join(ADAPTERS)}")
    module_name, cls_name = ADAPTERS[name].split(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    return cls()  # type: ignore[no-any-return]


__all__ = ["ADAPTERS", "Adapter", "Detections", "Job", "get_adapter"]
