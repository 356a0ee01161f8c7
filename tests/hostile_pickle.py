"""A pickle that runs code when loaded (what a tampered ``tuner.pkl`` in a shared search folder
could do), for the tests that prove nothing of a search folder is unpickled."""

import os
import pickle
from pathlib import Path


class _Hostile:
    def __init__(self, canary: Path):
        self.canary = canary

    def __reduce__(self):
        return os.system, (f"touch {self.canary}",)


def plant(paths: list[Path], canary: Path) -> None:
    """Write, at each of ``paths``, a pickle whose loading creates the file ``canary``."""
    for path in paths:
        path.write_bytes(pickle.dumps(_Hostile(canary)))
