"""docker-compose.yml and Dockerfile: structure, healthchecks, migrations at start, secrets.

Docker cannot run here, so Compose's variable interpolation (``${VAR}``, ``${VAR:-default}``,
``${VAR:?error}``) is re-implemented below as the Compose specification defines it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
_VAR = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:-|:\?)(?P<arg>[^}]*))?\}")


class MissingVariableError(Exception):
    pass


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose interpolation of every string in a YAML tree."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        current = env.get(name, "")
        if current:
            return current
        if op == ":?":
            raise MissingVariableError(f"{name}: {arg}")
        return arg if op == ":-" else ""

    return _VAR.sub(sub, value)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_services_are_server_and_postgres(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"server", "postgres"}
    assert compose["services"]["postgres"]["image"].startswith("postgres:")
    assert compose["services"]["server"]["build"]["dockerfile"] == "Dockerfile"
    assert "pgdata" in compose["volumes"]


def test_both_services_have_healthchecks(compose: dict[str, Any]) -> None:
    pg = compose["services"]["postgres"]["healthcheck"]
    assert pg["test"][0] == "CMD-SHELL"
    assert "pg_isready" in pg["test"][1]
    server = compose["services"]["server"]["healthcheck"]
    assert server["test"][0] == "CMD"
    assert "/readyz" in server["test"][-1]
    assert server["retries"] >= 1


def test_server_waits_for_healthy_postgres_and_migrates_first(compose: dict[str, Any]) -> None:
    server = compose["services"]["server"]
    assert server["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    script = server["command"][-1]
    assert server["command"][:2] == ["sh", "-c"]
    assert script.index("lossradar db upgrade") < script.index("lossradar serve")
    assert "&&" in script  # the server does not start when migrations fail


def test_missing_password_fails_fast_with_a_message(compose: dict[str, Any]) -> None:
    with pytest.raises(MissingVariableError, match="POSTGRES_PASSWORD: set POSTGRES_PASSWORD"):
        interpolate(compose, {})


def test_interpolated_settings_are_accepted_by_the_server(compose: dict[str, Any]) -> None:
    resolved = interpolate(compose, {"POSTGRES_PASSWORD": "s3cret"})
    env = resolved["services"]["server"]["environment"]
    assert env["LOSSRADAR_DATABASE_URL"] == (
        "postgresql+psycopg://lossradar:s3cret@postgres:5432/lossradar"
    )
    assert env["LOSSRADAR_PUBLIC_URL"] == "http://localhost:8765"
    assert resolved["services"]["server"]["ports"] == ["8765:8765"]
    assert resolved["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"] == "s3cret"
    from server.settings import Settings

    settings = Settings(**{k.removeprefix("LOSSRADAR_").lower(): v for k, v in env.items()})
    assert settings.database_url.startswith("postgresql+psycopg://")
    assert settings.host == "0.0.0.0"
    assert settings.port == 8765


def test_dockerfile_installs_server_extra_and_migrates_at_start() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in text
    assert "['optional-dependencies']['server']" in text
    assert "EXPOSE 8765" in text
    assert 'CMD ["sh", "-c", "lossradar db upgrade && exec lossradar serve"]' in text
    for folder in ("trainer_hook", "server", "dashboard", "lossradar"):
        assert f"COPY {folder} ./{folder}" in text
