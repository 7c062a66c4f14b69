"""lossradar's web dashboard: static ES modules and plotly.js, mounted by the server."""
