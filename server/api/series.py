"""Reading points back: columnar series (optionally downsampled) and latest values."""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
import orjson
from fastapi import APIRouter, HTTPException, Query, Response, status
from pydantic import BaseModel

from server.db.models import Run
from server.deps import ReadAccess, SessionDep
from server.series.chunks import FloatArray
from server.series.store import latest_points, read_series

router = APIRouter(tags=["series"])
_NUMPY = orjson.OPT_SERIALIZE_NUMPY


class SeriesPublic(BaseModel):
    metric: str
    channel: str | None
    steps: list[int]
    values: list[float | str]
    wall_times: list[float]
    downsampled: bool


class SeriesResponse(BaseModel):
    run_id: int
    last_step: int | None
    series: list[SeriesPublic]


class LatestPoint(BaseModel):
    step: int
    value: float | str


class LatestResponse(BaseModel):
    step: int | None
    run: dict[str, LatestPoint]
    channels: dict[str, dict[str, LatestPoint]]


def json_value(value: float) -> float | str:
    """A float as the API sends it: NaN and +-Inf become ``"NaN"``, ``"Infinity"``, ..."""
    if value != value:
        return "NaN"
    if value in (np.inf, -np.inf):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def json_values(values: FloatArray) -> Any:
    """The array itself when all finite (serialized by orjson), else a list with strings."""
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size == 0:
        return np.ascontiguousarray(values)
    out: list[Any] = values.tolist()
    for i in bad:
        out[i] = json_value(out[i])
    return out


def _run_or_404(session: SessionDep, run_id: int) -> Run:
    run = session.get(Run, run_id)
    if run is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"run {run_id} does not exist")
    return run


@router.get(
    "/runs/{run_id}/series",
    dependencies=[ReadAccess],
    response_model=None,
    responses={200: {"model": SeriesResponse}},
)
def get_series(
    run_id: int,
    session: SessionDep,
    metric: Annotated[list[str] | None, Query(description="repeatable; all when absent")] = None,
    channel: Annotated[
        list[str] | None, Query(description="repeatable; empty string = run-level series")
    ] = None,
    start_step: Annotated[int | None, Query(ge=0)] = None,
    end_step: Annotated[int | None, Query(ge=0)] = None,
    after_step: Annotated[int | None, Query(ge=-1, description="only steps > after_step")] = None,
    max_points: Annotated[
        int | None, Query(ge=2, le=1_000_000, description="min/max downsampling")
    ] = None,
) -> Response:
    """One or all series of a run, columnar; ``max_points`` keeps each bucket's min and max."""
    run = _run_or_404(session, run_id)
    data = read_series(
        session=session,
        run_id=run_id,
        metrics=metric or (),
        channels=channel or (),
        start_step=start_step,
        end_step=end_step,
        after_step=after_step,
        max_points=max_points,
    )
    body = {
        "run_id": run_id,
        "last_step": run.last_step,
        "series": [
            {
                "metric": s.metric,
                "channel": s.channel,
                "steps": np.ascontiguousarray(s.points.steps),
                "values": json_values(s.points.values),
                "wall_times": np.ascontiguousarray(s.points.wall_times),
                "downsampled": s.downsampled,
            }
            for s in data
        ],
    }
    return Response(orjson.dumps(body, option=_NUMPY), media_type="application/json")


@router.get("/runs/{run_id}/latest", dependencies=[ReadAccess], response_model=LatestResponse)
def get_latest(run_id: int, session: SessionDep) -> dict[str, Any]:
    """The last point of every series: run-level under ``run``, per channel under ``channels``."""
    run = _run_or_404(session, run_id)
    out: dict[str, Any] = {"step": run.last_step, "run": {}, "channels": {}}
    for metric, channel, step, value in latest_points(session=session, run_id=run_id):
        point = {"step": step, "value": json_value(value)}
        if channel is None:
            out["run"][metric] = point
        else:
            out["channels"].setdefault(channel, {})[metric] = point
    return out
