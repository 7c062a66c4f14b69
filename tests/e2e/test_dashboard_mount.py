"""`dashboard.mount(app)` on the real server: the page, its modules and plotly.js from the
installed plotly package are served with the right types and headers, and the API is not
shadowed."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from dashboard.mount import (
    CONTENT_SECURITY_POLICY,
    PLOTLY_JS_PREFIX,
    PLOTLY_JS_SUFFIX,
    STATIC_DIR,
    plotly_js_path,
)
from tests.e2e.conftest import FilledServer

pytestmark = pytest.mark.e2e


def test_root_serves_the_page_with_a_content_security_policy(filled_server: FilledServer) -> None:
    response = httpx.get(f"{filled_server.url}/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "script-src 'self'" in CONTENT_SECURITY_POLICY
    assert response.text == (STATIC_DIR / "index.html").read_text()


def test_modules_are_served_as_javascript(filled_server: FilledServer) -> None:
    modules = sorted(p.name for p in (STATIC_DIR / "js").glob("*.js"))
    assert "main.js" in modules
    for name in modules:
        response = httpx.get(f"{filled_server.url}/static/js/{name}")
        assert response.status_code == 200, name
        # browsers refuse to run an ES module served with another type
        assert response.headers["content-type"].startswith("text/javascript"), name
    assert httpx.get(f"{filled_server.url}/static/js/missing.js").status_code == 404


def test_plotly_js_comes_from_the_installed_plotly_package(filled_server: FilledServer) -> None:
    path = plotly_js_path()
    assert path.parts[-3:] == ("plotly", "package_data", "plotly.min.js")
    response = httpx.get(f"{filled_server.url}/static/vendor/plotly.min.js")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/javascript")
    assert "max-age" in response.headers["cache-control"]
    # the package's file, unchanged and on its own lines, inside the stack trace limit's switch
    assert b"\n" not in PLOTLY_JS_PREFIX
    assert response.content == PLOTLY_JS_PREFIX + Path(path).read_bytes() + PLOTLY_JS_SUFFIX
    assert int(response.headers["content-length"]) == len(response.content)
    # revalidation with the ETag sends no body
    etag = response.headers["etag"]
    again = httpx.get(response.url, headers={"If-None-Match": etag})
    assert (again.status_code, again.content, again.headers["etag"]) == (304, b"", etag)
    stale = httpx.get(response.url, headers={"If-None-Match": '"0-0"'})
    assert (stale.status_code, stale.content) == (200, response.content)
    head = httpx.head(response.url)
    assert (head.status_code, head.headers["content-length"]) == (200, str(len(response.content)))


def test_the_api_is_not_shadowed_by_the_dashboard(filled_server: FilledServer) -> None:
    assert httpx.get(f"{filled_server.url}/healthz").status_code == 200
    unauthorized = httpx.get(f"{filled_server.url}/api/v1/runs")
    assert unauthorized.status_code == 401
    runs = httpx.get(
        f"{filled_server.url}/api/v1/runs",
        headers={"Authorization": f"Bearer {filled_server.read_token}"},
    )
    assert runs.status_code == 200
    assert runs.json()["count"] == 0
