"""NetTailor (Morgado & Vasconcelos, CVPR 2019): frozen blocks + proxies, attention, pruning."""

from raytailor.nettailor.config import NetTailorConfig
from raytailor.nettailor.graph import Path, dense_paths
from raytailor.nettailor.network import PathNetwork
from raytailor.nettailor.pipeline import NetTailorOutcome, run_nettailor

__all__ = ["NetTailorConfig", "NetTailorOutcome", "Path", "PathNetwork", "dense_paths", "run_nettailor"]
