"""Megatron-LM / MindSpeed-LLM adapter: channel loss and reweighting without forking the trainer.

Needs megatron-core (0.16.1 ... 0.19.x). See docs/megatron.md and docs/mindspeed.md.
"""

from trainer_hook.megatron.adapter import MegatronChannelLoss, MegatronHookConfig
from trainer_hook.megatron.batch import (
    ChannelIds,
    DatasetIdTap,
    segments_from_actual_seq_len,
    segments_from_position_ids,
)
from trainer_hook.megatron.channels import (
    Blend,
    ChannelTable,
    build_channel_table,
    channel_table_from_args,
    group_rollup,
    load_channel_map,
    parse_blend,
    readable_names,
    train_blend_from_args,
)
from trainer_hook.megatron.lazy import LazyChannelLoss, channel_loss_hook

__all__ = [
    "Blend",
    "ChannelIds",
    "ChannelTable",
    "DatasetIdTap",
    "LazyChannelLoss",
    "MegatronChannelLoss",
    "MegatronHookConfig",
    "build_channel_table",
    "channel_loss_hook",
    "channel_table_from_args",
    "group_rollup",
    "load_channel_map",
    "parse_blend",
    "readable_names",
    "segments_from_actual_seq_len",
    "segments_from_position_ids",
    "train_blend_from_args",
]
