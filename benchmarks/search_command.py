"""One ``raytailor search`` command as the search benchmarks run it: its own process, a given
teacher cache, ``--set`` overrides; returns its wall time."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path


def run_search(spec: Path, out: Path, cache: Path, sets: list[str]) -> float:
    env = {**os.environ, "RAYTAILOR_CACHE": str(cache)}
    args = [sys.executable, "-m", "raytailor.cli", "search", str(spec), "--out", str(out)]
    for item in sets:
        args += ["--set", item]
    started = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"search failed ({' '.join(sets)}):\n{done.stderr[-2000:]}")
    return seconds
