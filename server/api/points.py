"""``POST /api/v1/runs/{run_id}/points``: batch ingest, JSON or gzip, one transaction."""

from __future__ import annotations

import time
import zlib
from datetime import UTC, datetime

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from server.deps import SessionDep, SettingsDep, WriteAccess
from server.observability import ServerMetrics
from server.schemas import IngestResponse
from server.series.payload import PayloadError, parse_points
from server.series.store import RunNotFoundError, ingest_points

router = APIRouter(tags=["points"])

_TOO_LARGE = "body exceeds LOSSRADAR_MAX_BODY_BYTES={limit} bytes{how}; send smaller batches"


def _too_large(limit: int, how: str = "") -> HTTPException:
    return HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, _TOO_LARGE.format(limit=limit, how=how))


async def read_body_limited(request: Request, limit: int) -> bytes:
    """The request body, decompressed if gzip; 413 past ``limit`` bytes either way."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise _too_large(limit)
    parts, size = [], 0
    async for part in request.stream():
        size += len(part)
        if size > limit:
            raise _too_large(limit)
        parts.append(part)
    body = b"".join(parts)
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding != "gzip":
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            f"Content-Encoding {encoding!r} is not supported; send identity or gzip",
        )
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"invalid gzip body: {exc}") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise _too_large(limit, " after gzip decompression")
    if not inflater.eof:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "truncated gzip body")
    return out


def _ingest(
    session: Session, request: Request, run_id: int, body: bytes, metrics: ServerMetrics
) -> IngestResponse:
    started = time.perf_counter()
    now = datetime.now(UTC)
    try:
        batch = parse_points(body, now=now.timestamp())
        result = ingest_points(
            session=session,
            run_id=run_id,
            batch=batch,
            now=now,
            listeners=list(request.app.state.ingest_listeners),
        )
        session.commit()
    except PayloadError as exc:
        session.rollback()
        metrics.ingest_requests.labels("invalid").inc()
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, exc.detail()) from None
    except RunNotFoundError:
        session.rollback()
        metrics.ingest_requests.labels("not_found").inc()
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"run {run_id} does not exist") from None
    except BaseException:
        session.rollback()
        metrics.ingest_requests.labels("error").inc()
        raise
    metrics.ingest_requests.labels("ok").inc()
    metrics.ingest_points.inc(result.accepted)
    metrics.ingest_seconds.observe(time.perf_counter() - started)
    return IngestResponse(accepted=result.accepted, last_step=result.last_step)


@router.post(
    "/runs/{run_id}/points",
    response_model=IngestResponse,
    dependencies=[WriteAccess],
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["series"],
                        "properties": {
                            "series": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "required": ["metric", "steps", "values"],
                                    "properties": {
                                        "metric": {"type": "string"},
                                        "channel": {"type": ["string", "null"]},
                                        "steps": {"type": "array", "items": {"type": "integer"}},
                                        "values": {
                                            "type": "array",
                                            "items": {"type": ["number", "string"]},
                                        },
                                        "wall_times": {
                                            "type": "array",
                                            "items": {"type": "number"},
                                        },
                                    },
                                },
                            }
                        },
                    }
                }
            },
        }
    },
)
async def post_points(
    run_id: int, request: Request, session: SessionDep, settings: SettingsDep
) -> IngestResponse:
    """Write many series of a run at once; all or nothing; the last write of a step wins.

    Values are numbers or ``"NaN"``, ``"Infinity"``, ``"-Infinity"``. ``Content-Encoding:
    gzip`` is accepted. 422 names the first bad field and index; 413 above the body limit.
    """
    metrics: ServerMetrics = request.app.state.metrics
    try:
        body = await read_body_limited(request, settings.max_body_bytes)
    except HTTPException as exc:
        metrics.ingest_requests.labels("too_large" if exc.status_code == 413 else "invalid").inc()
        raise
    return await run_in_threadpool(_ingest, session, request, run_id, body, metrics)
