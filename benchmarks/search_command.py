"""One ``raytailor search`` command as the search benchmarks run it: its own process, a given
teacher cache, ``--set`` overrides, optionally another source tree's code; returns its wall
time."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path


def run_search(spec: Path, out: Path, cache: Path, sets: list[str], *, tree: Path | None = None) -> float:
    """``tree``: run that source tree's raytailor (e.g. ``git archive`` of an earlier commit):
    first on the path of the command and of its Ray workers, and the command's folder."""
    env = {**os.environ, "RAYTAILOR_CACHE": str(cache)}
    if tree is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(tree), *filter(None, [os.environ.get("PYTHONPATH")])])
    args = [sys.executable, "-m", "raytailor.cli", "search", str(spec), "--out", str(out)]
    for item in sets:
        args += ["--set", item]
    started = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, env=env, cwd=tree)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"search failed ({' '.join(sets)}):\n{done.stderr[-2000:]}")
    return seconds
