"""Runs: create-or-get by key, channels merge, list and filter, read, update, delete."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient

Auth = Callable[..., dict[str, str]]


def test_create_then_get_by_key_is_idempotent_and_merges_channels(
    client: TestClient, auth: Auth
) -> None:
    w = auth("write")
    body = {
        "key": "job-1",
        "name": "fin 1:5",
        "project": "dcpt",
        "tags": ["a"],
        "config": {"lr": 3e-4},
        "channels": [{"name": "finance", "target_share": 0.2}, {"name": "general"}],
    }
    first = client.post("/api/v1/runs", json=body, headers=w)
    assert first.status_code == 201
    run = first.json()
    assert run["key"] == "job-1"
    assert run["name"] == "fin 1:5"
    assert run["project"] == "dcpt"
    assert run["status"] == "running"
    assert run["last_step"] is None
    assert run["config"] == {"lr": 3e-4}
    assert run["tags"] == ["a"]
    assert run["channels"] == [
        {"index": 0, "name": "finance", "target_share": 0.2},
        {"index": 1, "name": "general", "target_share": None},
    ]
    again = client.post(
        "/api/v1/runs",
        json={
            "key": "job-1",
            "channels": [{"name": "general", "target_share": 0.8}, {"name": "math"}],
        },
        headers=w,
    )
    assert again.status_code == 200
    assert again.json()["id"] == run["id"]
    assert again.json()["name"] == "fin 1:5"
    assert again.json()["channels"] == [
        {"index": 0, "name": "finance", "target_share": 0.2},
        {"index": 1, "name": "general", "target_share": 0.8},
        {"index": 2, "name": "math", "target_share": None},
    ]
    r = auth("read")
    by_key = client.get("/api/v1/runs/by-key/job-1", headers=r)
    assert by_key.status_code == 200
    assert by_key.json()["id"] == run["id"]
    by_id = client.get(f"/api/v1/runs/{run['id']}", headers=r)
    assert by_id.json() == again.json()
    # keys may contain slashes (e.g. "project/job-7")
    slashed = client.post("/api/v1/runs", json={"key": "proj/job 7"}, headers=w).json()
    found = client.get("/api/v1/runs/by-key/proj/job%207", headers=r)
    assert found.json()["id"] == slashed["id"]


def test_run_create_rejects_bad_bodies_with_field_names(client: TestClient, auth: Auth) -> None:
    w = auth("write")
    resp = client.post("/api/v1/runs", json={"name": "no key"}, headers=w)
    assert resp.status_code == 422
    assert resp.json()["detail"][0]["loc"] == ["body", "key"]
    resp = client.post(
        "/api/v1/runs",
        json={"key": "k", "channels": [{"name": "a"}, {"name": "a"}]},
        headers=w,
    )
    assert resp.status_code == 422
    assert "repeated: ['a']" in resp.text
    resp = client.post(
        "/api/v1/runs",
        json={"key": "k", "channels": [{"name": "a", "target_share": 1.5}]},
        headers=w,
    )
    assert resp.status_code == 422
    assert resp.json()["detail"][0]["loc"] == ["body", "channels", 0, "target_share"]


def test_list_filters_and_pages(client: TestClient, auth: Auth) -> None:
    w, r = auth("write"), auth("read")
    for key, project, tags in [
        ("alpha-1", "p1", ["x"]),
        ("alpha-2", "p1", ["y"]),
        ("beta-1", "p2", ["x", "y"]),
    ]:
        assert (
            client.post(
                "/api/v1/runs", json={"key": key, "project": project, "tags": tags}, headers=w
            ).status_code
            == 201
        )
    run_id = client.get("/api/v1/runs/by-key/alpha-2", headers=r).json()["id"]
    client.patch(f"/api/v1/runs/{run_id}", json={"status": "finished"}, headers=w)

    def keys(**params: object) -> tuple[list[str], int]:
        body = client.get("/api/v1/runs", params=params, headers=r).json()
        return sorted(d["key"] for d in body["data"]), body["count"]

    assert keys() == (["alpha-1", "alpha-2", "beta-1"], 3)
    assert keys(project="p1") == (["alpha-1", "alpha-2"], 2)
    assert keys(tag="x") == (["alpha-1", "beta-1"], 2)
    assert keys(q="ALPHA") == (["alpha-1", "alpha-2"], 2)
    assert keys(status="finished") == (["alpha-2"], 1)
    assert keys(status="running", tag="y") == (["beta-1"], 1)
    page = client.get("/api/v1/runs", params={"limit": 1, "offset": 1}, headers=r).json()
    assert page["count"] == 3
    assert len(page["data"]) == 1
    # most recently updated first: alpha-2 was patched last
    assert client.get("/api/v1/runs", headers=r).json()["data"][0]["key"] == "alpha-2"
    bad = client.get("/api/v1/runs", params={"status": "sleeping"}, headers=r)
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["query", "status"]


def test_patch_and_delete(client: TestClient, auth: Auth) -> None:
    w, r = auth("write"), auth("read")
    run_id = client.post("/api/v1/runs", json={"key": "k"}, headers=w).json()["id"]
    client.post(
        f"/api/v1/runs/{run_id}/points",
        json={"series": [{"metric": "loss", "channel": "a", "steps": [1], "values": [2.0]}]},
        headers=w,
    )
    patched = client.patch(
        f"/api/v1/runs/{run_id}", json={"status": "failed", "name": "n", "tags": ["t"]}, headers=w
    )
    assert patched.status_code == 200
    assert (patched.json()["status"], patched.json()["name"], patched.json()["tags"]) == (
        "failed",
        "n",
        ["t"],
    )
    assert (
        client.patch(f"/api/v1/runs/{run_id}", json={"status": "x"}, headers=w).status_code == 422
    )
    # re-registering the key (a resumed job) marks it running again
    assert client.post("/api/v1/runs", json={"key": "k"}, headers=w).json()["status"] == "running"
    assert client.delete(f"/api/v1/runs/{run_id}", headers=w).status_code == 204
    assert client.get(f"/api/v1/runs/{run_id}", headers=r).status_code == 404
    assert client.get(f"/api/v1/runs/{run_id}/series", headers=r).status_code == 404
    assert client.delete(f"/api/v1/runs/{run_id}", headers=w).status_code == 404
    # the key is free again, and the new run starts empty
    new_id = client.post("/api/v1/runs", json={"key": "k"}, headers=w).json()["id"]
    assert client.get(f"/api/v1/runs/{new_id}/series", headers=r).json()["series"] == []


def test_unknown_runs_are_404(client: TestClient, auth: Auth) -> None:
    r, w = auth("read"), auth("write")
    assert client.get("/api/v1/runs/999", headers=r).status_code == 404
    assert client.get("/api/v1/runs/by-key/nope", headers=r).status_code == 404
    assert client.get("/api/v1/runs/999/latest", headers=r).status_code == 404
    assert client.patch("/api/v1/runs/999", json={}, headers=w).status_code == 404
    resp = client.post("/api/v1/runs/999/points", json={"series": []}, headers=w)
    assert resp.status_code == 404
    assert resp.json()["detail"] == "run 999 does not exist"
