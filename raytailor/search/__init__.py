"""Distributed search over tailoring hyper-parameters (the only package that imports Ray).

``run_search`` and ``resume_search`` are imported on first use: a trial's worker imports
``raytailor.search.trainable`` only, not the driver's runner, tables and plots.
"""

from typing import Any

__all__ = ["resume_search", "run_search"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from raytailor.search import runner

        return getattr(runner, name)
    raise AttributeError(f"module 'raytailor.search' has no attribute {name!r}")
