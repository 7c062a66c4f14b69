"""Loss reweighting: sample level (Sow et al., 2025) and channel level (progress, DoReMi)."""

from trainer_hook.reweight.channel import ChannelReweightConfig, ChannelReweighter
from trainer_hook.reweight.sample import SampleReweightConfig, sample_factors

__all__ = [
    "ChannelReweightConfig",
    "ChannelReweighter",
    "SampleReweightConfig",
    "sample_factors",
]
