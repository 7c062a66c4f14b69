"""lossradar's web dashboard: static ES modules and plotly.js, mounted by the server.

`mount(app)` serves the single-page UI at `/`, its modules under `/static/`, and plotly.js from
the installed `plotly` package (no CDN: training clusters are often offline).
"""

from dashboard.mount import mount

__all__ = ["mount"]
