"""JSONL, TensorBoard, null and fan-out sinks, and the choice of a sink per rank."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from trainer_hook.sinks import (
    HttpSender,
    JsonlSink,
    MetricSink,
    MultiSink,
    NullSink,
    TensorBoardSink,
    is_global_last_rank,
    read_jsonl,
    select_sink,
)


def test_jsonl_sink_writes_strict_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "out" / "metrics.jsonl"
    sink = JsonlSink(path)
    sink.log_step(1, {"lm_loss": 2.0}, {"fin": {"loss": math.nan, "tokens": 7.0}}, wall_time=5.0)
    sink.log_step(2, {"lm_loss": math.inf}, {}, wall_time=6.0)
    assert sink.flush(5)
    lines = path.read_text().splitlines()
    assert lines[0] == (
        '{"step":1,"wall_time":5.0,"run":{"lm_loss":2.0},'
        '"channels":{"fin":{"loss":"NaN","tokens":7.0}}}'
    )
    assert lines[1] == '{"step":2,"wall_time":6.0,"run":{"lm_loss":"Infinity"},"channels":{}}'
    sink.log_step(3, {"lm_loss": 1.0}, {})
    sink.close()
    back = read_jsonl(path)
    assert [r["step"] for r in back] == [1, 2, 3]
    assert math.isnan(back[0]["channels"]["fin"]["loss"])  # type: ignore[index]
    sink.log_step(4, {"lm_loss": 1.0}, {})  # after close: ignored, no error
    assert len(read_jsonl(path)) == 3


def test_jsonl_sink_rejects_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="is a directory"):
        JsonlSink(tmp_path)


def test_jsonl_sink_in_a_forked_child_is_inert(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    sink = JsonlSink(path)
    sink.log_step(0, {"a": 1.0}, {})
    pid = os.fork()
    if pid == 0:
        sink.log_step(1, {"a": 1.0}, {})
        sink.close()
        os._exit(0)
    os.waitpid(pid, 0)
    sink.close()
    assert [r["step"] for r in read_jsonl(path)] == [0]


def test_tensorboard_sink_writes_scalars_per_metric_and_channel(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    sink = TensorBoardSink(tmp_path / "tb")
    for step in range(3):
        sink.log_step(step, {"lm_loss": 3.0 - step}, {"fin/slow": {"loss": 2.0 + step}}, 1e9)
    sink.close()
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    assert sorted(acc.Tags()["scalars"]) == ["loss/fin/slow", "run/lm_loss"]
    assert [(e.step, e.value) for e in acc.Scalars("loss/fin/slow")] == [
        (0, 2.0),
        (1, 3.0),
        (2, 4.0),
    ]
    assert [e.wall_time for e in acc.Scalars("run/lm_loss")] == [1e9] * 3


def test_null_and_multi_sinks(tmp_path: Path) -> None:
    null = NullSink()
    null.log_step(0, {"a": 1.0}, {})
    assert null.flush(0)
    a, b = JsonlSink(tmp_path / "a.jsonl"), JsonlSink(tmp_path / "b.jsonl")
    multi = MultiSink([a, b])
    multi.log_step(4, {"x": 1.5}, {"c": {"loss": 2.0}})
    assert multi.flush(5)
    multi.close(5)
    assert read_jsonl(tmp_path / "a.jsonl") == read_jsonl(tmp_path / "b.jsonl")
    assert read_jsonl(tmp_path / "a.jsonl")[0]["run"] == {"x": 1.5}
    for sink in (null, a, multi):
        assert isinstance(sink, MetricSink)


def test_select_sink_per_rank(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOSSRADAR_URL", raising=False)
    monkeypatch.delenv("LOSSRADAR_RUN_KEY", raising=False)
    assert type(select_sink(False, url="http://x:1", run_key="k")) is NullSink
    assert type(select_sink(True)) is NullSink  # nowhere to send: warns, records nothing
    assert type(select_sink(True, jsonl_path=tmp_path / "m.jsonl")) is JsonlSink
    assert type(select_sink(True, run_key="k", channels=["a"])) is NullSink
    with pytest.raises(ValueError, match="set LOSSRADAR_RUN_KEY"):
        select_sink(True, url="http://x:1", run_key=None)
    monkeypatch.setenv("LOSSRADAR_URL", "http://127.0.0.1:9")
    sender = select_sink(True, run_key="k", spool_dir=tmp_path)
    assert type(sender) is HttpSender
    both = select_sink(True, run_key="k", spool_dir=tmp_path, tensorboard_dir=tmp_path / "tb")
    assert type(both) is MultiSink
    assert [type(s) for s in both.sinks] == [HttpSender, TensorBoardSink]
    for sink in (sender, both):
        sink.close(0)
    assert is_global_last_rank()  # not distributed: the only process logs
