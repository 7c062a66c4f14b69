"""Data-mix planning and verification: from channel budgets to Megatron blend weights, and back
to what the run consumed. See docs/mix.md.

The plan math needs only the standard library; reading ``.idx`` sizes imports megatron-core
lazily, and YAML plans import pyyaml lazily.
"""

from trainer_hook.mix.megatron_args import (
    channel_map,
    data_path_args,
    data_path_string,
    read_channel_map,
    write_channel_map,
    write_data_args_file,
)
from trainer_hook.mix.plan_file import load_plan, parse_plan
from trainer_hook.mix.report import (
    ReportRow,
    build_report,
    consumed_from_jsonl,
    consumed_from_server,
    report_table,
)
from trainer_hook.mix.resolve import (
    MixWarning,
    PlannedChannel,
    PlannedPrefix,
    ResolvedPlan,
    resolve_plan,
)
from trainer_hook.mix.sizes import DataSize, read_data_size
from trainer_hook.mix.spec import ChannelSpec, MixPlanError, MixPlanSpec

__all__ = [
    "ChannelSpec",
    "DataSize",
    "MixPlanError",
    "MixPlanSpec",
    "MixWarning",
    "PlannedChannel",
    "PlannedPrefix",
    "ReportRow",
    "ResolvedPlan",
    "build_report",
    "channel_map",
    "consumed_from_jsonl",
    "consumed_from_server",
    "data_path_args",
    "data_path_string",
    "load_plan",
    "parse_plan",
    "read_channel_map",
    "read_data_size",
    "report_table",
    "resolve_plan",
    "write_channel_map",
    "write_data_args_file",
]
