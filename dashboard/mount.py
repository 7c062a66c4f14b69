"""Serve the dashboard from a FastAPI app: `/` (index.html), `/static/*` and plotly.js.

The dashboard is static: plain ES modules with no build step. plotly.js is read from the
installed `plotly` Python package (`plotly/package_data/plotly.min.js`), so the UI works on
clusters without internet access. fastapi/starlette are imported inside `mount` only, so
importing `dashboard` costs nothing.
"""

from __future__ import annotations

import functools
import zlib
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI

STATIC_DIR = Path(__file__).resolve().parent / "static"

# Scripts only from this origin: an API string that slipped into the DOM as HTML could still not
# run. Plotly injects its own <style> elements, hence 'unsafe-inline' for styles only.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'"
)


def plotly_js_path() -> Path:
    """Path of plotly.min.js inside the installed `plotly` package.

    Raises RuntimeError naming the fix when the package (or its bundled JS) is missing.
    """
    try:
        path = Path(str(resources.files("plotly") / "package_data" / "plotly.min.js"))
    except ModuleNotFoundError as exc:
        raise RuntimeError(
            "the dashboard needs the 'plotly' Python package for plotly.js; "
            "install it with: pip install 'lossradar[server]'"
        ) from exc
    if not path.is_file():
        raise RuntimeError(
            f"plotly.js not found at {path}; reinstall plotly: pip install --force-reinstall plotly"
        )
    return path


# plotly.min.js is served between PLOTLY_JS_PREFIX and PLOTLY_JS_SUFFIX (the package's file
# unchanged in between, on the same lines): `Error.stackTraceLimit` is not a number while
# plotly.js sets itself up, and is restored after. Its start-up's feature tests throw and catch a
# few errors, and with DevTools attached (a developer's console, or Playwright in the tests and
# benchmarks/dashboard_load.py) V8 then looks up the source position of every frame on the stack,
# which re-parses the bundle's three enclosing functions, 4.8 MB each. Without a number V8 keeps no
# stack for those errors. Measured cold and warm on the run page of a long run: docs/dashboard.md.
PLOTLY_JS_PREFIX = b"{const limit=Error.stackTraceLimit;Error.stackTraceLimit=undefined;try{"
PLOTLY_JS_SUFFIX = b"\n}finally{Error.stackTraceLimit=limit}}\n"
# part of the ETag: a changed wrapper is a changed file
WRAPPER_CRC = zlib.crc32(PLOTLY_JS_PREFIX + PLOTLY_JS_SUFFIX)


@functools.lru_cache(maxsize=2)
def served_plotly_js(path: Path, mtime_ns: int) -> bytes:
    """plotly.min.js at `path` between PLOTLY_JS_PREFIX and PLOTLY_JS_SUFFIX (read once per file
    version)."""
    return PLOTLY_JS_PREFIX + path.read_bytes() + PLOTLY_JS_SUFFIX


def mount(app: FastAPI) -> None:
    """Add the dashboard routes to `app`: `/`, `/index.html`, `/static/vendor/plotly.min.js`,
    `/static/*`.

    Only these paths are taken, so API routes registered before or after keep working.
    """
    from fastapi.responses import FileResponse, Response
    from fastapi.staticfiles import StaticFiles
    from starlette.requests import Request

    index = STATIC_DIR / "index.html"
    plotly_js = plotly_js_path()
    html_headers = {"Content-Security-Policy": CONTENT_SECURITY_POLICY, "Cache-Control": "no-cache"}

    async def dashboard_index() -> FileResponse:
        return FileResponse(index, media_type="text/html", headers=html_headers)

    async def dashboard_plotly_js(request: Request) -> Response:
        stat = plotly_js.stat()
        etag = f'"{stat.st_mtime_ns:x}-{stat.st_size:x}-{WRAPPER_CRC:x}"'
        headers = {"Cache-Control": "public, max-age=86400", "ETag": etag}
        if etag in request.headers.get("if-none-match", ""):
            return Response(status_code=304, headers=headers)
        body = served_plotly_js(plotly_js, stat.st_mtime_ns)
        return Response(body, media_type="text/javascript", headers=headers)

    app.add_api_route("/", dashboard_index, methods=["GET"], include_in_schema=False)
    app.add_api_route("/index.html", dashboard_index, methods=["GET"], include_in_schema=False)
    # a plain Starlette route: it gets the request without FastAPI reading annotations
    app.add_route(
        "/static/vendor/plotly.min.js",
        dashboard_plotly_js,
        methods=["GET"],
        include_in_schema=False,
    )
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="dashboard-static")
