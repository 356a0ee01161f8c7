"""TransTailor (Liu et al., AAAI 2021): target-aware filter pruning + importance-aware fine-tuning."""

from raytailor.transtailor.config import TransTailorConfig
from raytailor.transtailor.gates import ChannelScale, attach_scales, remove_scales_by_folding, set_scales
from raytailor.transtailor.importance import filter_importance
from raytailor.transtailor.pipeline import TransTailorOutcome, run_transtailor
from raytailor.transtailor.surgery import PruneResult, prune_lowest

__all__ = [
    "ChannelScale", "PruneResult", "TransTailorConfig", "TransTailorOutcome", "attach_scales",
    "filter_importance", "prune_lowest", "remove_scales_by_folding", "run_transtailor", "set_scales",
]
