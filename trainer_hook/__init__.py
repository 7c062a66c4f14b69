"""lossradar's in-trainer hook: exact per-channel loss, loss reweighting and metric sinks.

Imports with nothing but torch (and numpy) installed.
"""

from trainer_hook.channel_loss import ChannelLoss, MicroBatchLoss
from trainer_hook.report import (
    ChannelIdOutOfRangeWarning,
    SegmentIdOutOfRangeWarning,
    StepReport,
)
from trainer_hook.reweight import ChannelReweightConfig, SampleReweightConfig

__all__ = [
    "ChannelIdOutOfRangeWarning",
    "ChannelLoss",
    "ChannelReweightConfig",
    "MicroBatchLoss",
    "SampleReweightConfig",
    "SegmentIdOutOfRangeWarning",
    "StepReport",
]
