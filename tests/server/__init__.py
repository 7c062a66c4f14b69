"""Tests of the metrics service; `tests.server.live` starts a real server for other parts."""
