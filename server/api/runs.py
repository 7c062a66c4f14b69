"""``/api/v1/runs``: create-or-get by key, list and filter, read, update, delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response, status

from server.db.models import Run
from server.deps import ReadAccess, SessionDep, WriteAccess
from server.runs import create_or_get_run, delete_run, get_run_by_key, list_runs, update_run
from server.schemas import RunCreate, RunPublic, RunsPublic, RunStatus, RunUpdate

router = APIRouter(tags=["runs"])


def _get_or_404(session: SessionDep, run_id: int) -> Run:
    run = session.get(Run, run_id)
    if run is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"run {run_id} does not exist")
    return run


@router.post(
    "/runs",
    response_model=RunPublic,
    dependencies=[WriteAccess],
    status_code=status.HTTP_201_CREATED,
    responses={200: {"model": RunPublic, "description": "the run with this key already existed"}},
)
def post_run(run_in: RunCreate, session: SessionDep, response: Response) -> Run:
    """Create the run with ``key``, or return the existing one (new channels appended)."""
    run, created = create_or_get_run(session=session, run_in=run_in)
    session.commit()
    if not created:
        response.status_code = status.HTTP_200_OK
    return run


@router.get("/runs", response_model=RunsPublic, dependencies=[ReadAccess])
def get_runs(
    session: SessionDep,
    project: str | None = None,
    tag: str | None = None,
    q: Annotated[str | None, Query(description="substring of name or key")] = None,
    status_: Annotated[RunStatus | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> RunsPublic:
    runs, count = list_runs(
        session=session,
        project=project,
        tag=tag,
        q=q,
        status=status_,
        limit=limit,
        offset=offset,
    )
    return RunsPublic(data=[RunPublic.model_validate(r) for r in runs], count=count)


@router.get("/runs/by-key/{key:path}", response_model=RunPublic, dependencies=[ReadAccess])
def get_run_by_key_route(key: str, session: SessionDep) -> Run:
    run = get_run_by_key(session=session, key=key)
    if run is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no run has key {key!r}")
    return run


@router.get("/runs/{run_id}", response_model=RunPublic, dependencies=[ReadAccess])
def get_run(run_id: int, session: SessionDep) -> Run:
    return _get_or_404(session, run_id)


@router.patch("/runs/{run_id}", response_model=RunPublic, dependencies=[WriteAccess])
def patch_run(run_id: int, run_in: RunUpdate, session: SessionDep) -> Run:
    """Change a run's status (``running``, ``finished``, ``failed``, ``crashed``), name or tags."""
    run = update_run(session=session, run=_get_or_404(session, run_id), run_in=run_in)
    session.commit()
    return run


@router.delete("/runs/{run_id}", status_code=status.HTTP_204_NO_CONTENT, dependencies=[WriteAccess])
def delete_run_route(run_id: int, session: SessionDep) -> Response:
    """Delete a run with all its channels, series and points."""
    delete_run(session=session, run=_get_or_404(session, run_id))
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
