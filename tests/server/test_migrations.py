"""Alembic: upgrade to head, models match the migrations (check), downgrade to base."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from server.db.migrate import MIGRATIONS_DIR, alembic_config
from tests.server.conftest import BACKENDS, make_test_engine


def test_first_revision_is_0001_initial_and_history_is_linear() -> None:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    revisions = list(script.walk_revisions())
    assert revisions[-1].revision == "0001_initial"
    assert revisions[-1].down_revision is None
    assert len(script.get_heads()) == 1
    assert (MIGRATIONS_DIR / "env.py").is_file()


@pytest.mark.parametrize("backend", BACKENDS)
def test_upgrade_check_downgrade_round_trip(backend: str, tmp_path: Path) -> None:
    engine, url, cleanup = make_test_engine(backend, tmp_path)
    try:
        config = alembic_config(url)
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
            command.check(config)  # raises if the models and the migrations differ
            tables = set(inspect(connection).get_table_names())
            assert {"runs", "run_channels", "series", "point_chunks", "api_tokens"} <= tables
            uniques = {u["name"] for u in inspect(connection).get_unique_constraints("series")}
            assert uniques == {"uq_series_run_id_metric_channel"}
            command.downgrade(config, "base")
            assert set(inspect(connection).get_table_names()) <= {"alembic_version"}
            command.upgrade(config, "head")
    finally:
        cleanup()
