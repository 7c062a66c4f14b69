"""Auth on every route: 401 without or with a bad token, 403 without the scope, open reads."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from server.api import points, runs, series
from server.tokens import create_token, list_tokens, revoke_token

Auth = Callable[..., dict[str, str]]

# (method, path template, scope, json body)
ROUTES: list[tuple[str, str, str, Any]] = [
    ("POST", "/runs", "write", {"key": "other"}),
    ("GET", "/runs", "read", None),
    ("GET", "/runs/by-key/{key:path}", "read", None),
    ("GET", "/runs/{run_id}", "read", None),
    ("PATCH", "/runs/{run_id}", "write", {"name": "x"}),
    ("DELETE", "/runs/{run_id}", "write", None),
    ("POST", "/runs/{run_id}/points", "write", {"series": []}),
    ("GET", "/runs/{run_id}/series", "read", None),
    ("GET", "/runs/{run_id}/latest", "read", None),
]


def test_the_table_covers_every_route() -> None:
    declared = {
        (method, route.path)
        for router in (runs.router, points.router, series.router)
        for route in router.routes
        if isinstance(route, APIRoute)
        for method in route.methods
    }
    assert declared == {(m, p) for m, p, _, _ in ROUTES}


@pytest.fixture
def run_id(client: TestClient, auth: Auth) -> int:
    return int(client.post("/api/v1/runs", json={"key": "k"}, headers=auth("write")).json()["id"])


def call(
    client: TestClient, method: str, path: str, body: Any, run_id: int, headers: dict[str, str]
):  # type: ignore[no-untyped-def]
    url = "/api/v1" + path.replace("{key:path}", "k").format(run_id=run_id)
    return client.request(method, url, json=body, headers=headers)


@pytest.mark.parametrize(("method", "path", "scope", "body"), ROUTES)
def test_every_route_checks_its_scope(
    client: TestClient, auth: Auth, run_id: int, method: str, path: str, scope: str, body: Any
) -> None:
    missing = call(client, method, path, body, run_id, {})
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert "lossradar token create" in missing.json()["detail"]
    for bad in ({"Authorization": "Bearer lr_not-a-token"}, {"Authorization": "Basic dXNlcg=="}):
        assert call(client, method, path, body, run_id, bad).status_code == 401
    other = "read" if scope == "write" else "write"
    denied = call(client, method, path, body, run_id, auth(other))
    assert denied.status_code == 403
    assert f"lacks the {scope!r} scope" in denied.json()["detail"]
    allowed = call(client, method, path, body, run_id, auth(scope))
    assert allowed.status_code in (200, 201, 204), allowed.text


@pytest.mark.parametrize(("method", "path", "scope", "body"), ROUTES)
def test_open_reads_need_no_token_but_writes_still_do(
    client: TestClient, auth: Auth, run_id: int, method: str, path: str, scope: str, body: Any
) -> None:
    client.app.state.settings.open_reads = True  # type: ignore[attr-defined]
    resp = call(client, method, path, body, run_id, {})
    assert resp.status_code == (200 if scope == "read" else 401)


def test_revoked_tokens_stop_working(
    client: TestClient, session_factory: sessionmaker[Session], run_id: int
) -> None:
    with session_factory() as session:
        token, secret = create_token(session=session, name="ci", scopes=["read"])
        session.commit()
        token_id = token.id
    headers = {"Authorization": f"Bearer {secret}"}
    assert client.get("/api/v1/runs", headers=headers).status_code == 200
    with session_factory() as session:
        assert revoke_token(session=session, token_id=token_id) is True
        assert revoke_token(session=session, token_id=token_id) is False
        session.commit()
        row = next(t for t in list_tokens(session=session) if t.id == token_id)
        assert row.revoked_at is not None
        assert secret not in (row.token_hash, row.prefix)
        assert row.prefix == secret[:10]
    assert client.get("/api/v1/runs", headers=headers).status_code == 401


def test_token_scopes_are_validated(session_factory: sessionmaker[Session]) -> None:
    with session_factory() as session, pytest.raises(ValueError, match="'admin'"):
        create_token(session=session, name="x", scopes=["admin"])


def test_operations_endpoints_are_open(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ok"}
    assert client.get("/metrics").status_code == 200
    schema = client.get("/openapi.json").json()
    assert "/api/v1/runs/{run_id}/points" in schema["paths"]
    body = schema["paths"]["/api/v1/runs/{run_id}/points"]["post"]["requestBody"]
    assert "series" in body["content"]["application/json"]["schema"]["properties"]
