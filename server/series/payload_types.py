"""The pieces both forms of a points batch share: the parsed series, the error, the limits."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from server.series.chunks import FloatArray, IntArray

MAX_STEP = 2**53
MAX_NAME = 255
SPECIAL_VALUES = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
Loc = tuple[str | int, ...]
NOT_A_VALUE = 'must be a number, "NaN", "Infinity" or "-Infinity"'


class PayloadError(ValueError):
    """A field of the body is malformed; ``loc`` is its path, as in FastAPI's 422 errors."""

    def __init__(self, loc: Loc, msg: str) -> None:
        super().__init__(msg)
        self.loc = ("body", *loc)
        self.msg = msg

    def detail(self) -> list[dict[str, Any]]:
        return [{"loc": list(self.loc), "msg": self.msg, "type": "value_error"}]


@dataclass(slots=True)
class ParsedSeries:
    """One validated series of a batch; ``channel`` is ``""`` for run-level metrics."""

    metric: str
    channel: str
    steps: IntArray
    values: FloatArray
    wall_times: FloatArray
