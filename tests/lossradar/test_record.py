"""record_run: a real (short) training run recorded to JSONL without a server."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from lossradar.demo.record import read_recording, record_run

pytestmark = pytest.mark.megatron


def test_record_run_writes_every_step_and_drops_an_emptied_channel(tmp_path: Path) -> None:
    path = record_run(
        tmp_path / "run.jsonl", steps=4, seed=7, corruption="math@2:empty", batch_size=8
    )
    meta, records = read_recording(path)
    assert meta == {
        "seed": 7,
        "steps": 4,
        "corruption": "math@2:empty",
        "channels": ["finance", "math", "code", "general"],
        "target_shares": {"finance": 0.3, "math": 0.2, "code": 0.2, "general": 0.3},
        "batch_size": 8,
        "seq_length": 256,
    }
    assert [r["step"] for r in records] == [0, 1, 2, 3]
    for r in records:
        tokens = {c: m["tokens"] for c, m in r["channels"].items()}
        assert sum(tokens.values()) == r["run"]["tokens_total"]
        assert math.isfinite(r["run"]["lm_loss"])
        assert r["run"]["lr"] > 0
    # math had tokens before the corruption; empty documents leave it with none: absent
    assert "math" in records[1]["channels"]
    assert "math" not in records[2]["channels"]
    assert "math" not in records[3]["channels"]
    assert set(records[3]["channels"]) == {"finance", "code", "general"}
    shares = records[0]["channels"]
    assert sum(m["token_share"] for m in shares.values()) == pytest.approx(1.0, abs=1e-12)
    # a token-weighted lm_loss equals the token-weighted mean of the channel losses
    r0 = records[0]
    mean = sum(m["loss"] * m["tokens"] for m in r0["channels"].values()) / r0["run"]["tokens_total"]
    assert r0["run"]["lm_loss"] == pytest.approx(mean, rel=1e-6)
