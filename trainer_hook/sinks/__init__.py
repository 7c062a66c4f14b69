"""Metric sinks: where the logging rank sends each step's metrics (docs/sender.md).

`select_sink(is_logging_rank, ...)` picks one per rank: `HttpSender` (server), `JsonlSink`,
`TensorBoardSink`, or `NullSink` for the ranks that do not log.
"""

from trainer_hook.sinks.config import SenderConfig
from trainer_hook.sinks.counters import SenderCounters
from trainer_hook.sinks.http_sender import HttpSender
from trainer_hook.sinks.jsonl import JsonlSink, read_jsonl
from trainer_hook.sinks.multi import MultiSink
from trainer_hook.sinks.null import NullSink
from trainer_hook.sinks.protocol import MetricSink
from trainer_hook.sinks.select import is_global_last_rank, select_sink
from trainer_hook.sinks.tensorboard import TensorBoardSink

__all__ = [
    "HttpSender",
    "JsonlSink",
    "MetricSink",
    "MultiSink",
    "NullSink",
    "SenderConfig",
    "SenderCounters",
    "TensorBoardSink",
    "is_global_last_rank",
    "read_jsonl",
    "select_sink",
]
