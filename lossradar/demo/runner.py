"""`lossradar demo`, end to end: server, webhook receiver, run registration, training, summary.

1. start a local webhook receiver (prints every alert it gets);
2. start `lossradar serve` on SQLite in ``data_dir`` with a fresh token;
3. register the run (channels, target shares) and a generic-webhook notifier pointing at (1);
4. build the data (IndexedDataset + BlendedDataset) and train through ``ChannelLoss`` with
   channel-level reweighting; the ``HttpSender`` streams every step to the server;
5. corrupt one channel at a step; the server's alert engine fires and notifies the receiver;
6. print a one-screen summary and the dashboard URL; ``keep_serving`` leaves the server up.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import httpx

from lossradar.demo.corrupt import Corruption
from lossradar.demo.progress import ProgressBar
from lossradar.demo.server_process import LocalServer
from lossradar.demo.sources import CHANNELS, TARGET_SHARES
from lossradar.demo.summary import format_summary
from lossradar.demo.webhook import Received, WebhookReceiver


@dataclass(kw_only=True, slots=True)
class DemoOptions:
    """What `lossradar demo` was asked to do."""

    steps: int = 300
    """optimizer steps (~0.6 s each on 2 cores)."""
    corrupt: str | None = "finance@150:language"
    """CHANNEL@STEP:KIND or None."""
    reweight: str = "progress"
    """channel-level reweighting strategy: progress, doremi or none."""
    device: str = "cpu"
    """torch device."""
    seed: int = 1234
    """model initialisation seed."""
    batch_size: int = 16
    """samples of 256 tokens per step."""
    data_dir: Path
    """server database, sender spool and logs."""
    keep_serving: bool = False
    """leave the server (dashboard) running until Ctrl-C."""
    alert_wait_s: float = 20.0
    """after training, how long to wait for the corruption alert to reach the receiver."""
    summary_json: Path | None = None
    """write URLs, token, run id, alerts and received messages here (for scripts and tests)."""

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"--steps must be >= 1, got {self.steps}")
        if self.reweight not in ("progress", "doremi", "none"):
            raise ValueError(
                f"--reweight {self.reweight!r} is unknown; use progress, doremi or none"
            )
        if self.corrupt:
            spec = Corruption.parse(self.corrupt, CHANNELS)
            if spec.step >= self.steps:
                raise ValueError(
                    f"--corrupt {self.corrupt} starts at step {spec.step}, but the run has only "
                    f"{self.steps} steps; pick a step below {self.steps} or raise --steps"
                )


def _describe(message: Received) -> str:
    body = message.body
    if isinstance(body, dict) and isinstance(body.get("alerts"), list):
        parts = [
            f"{a.get('event')} {a.get('rule')} {a.get('channel') or '(run)'} "
            f"at step {a.get('step')}: {a.get('summary')}"
            for a in body["alerts"]
        ]
        return f"[webhook] {body.get('title', '')} | " + " | ".join(parts)
    return f"[webhook] {str(body)[:200]}"


def _register(client: httpx.Client, run_key: str, options: DemoOptions) -> dict[str, Any]:
    body = {
        "key": run_key,
        "name": f"demo {time.strftime('%Y-%m-%d %H:%M:%S')}",
        "project": "lossradar-demo",
        "tags": ["demo", f"corrupt:{options.corrupt or 'none'}"],
        "config": {
            "steps": options.steps,
            "batch_size": options.batch_size,
            "seq_length": 256,
            "seed": options.seed,
            "reweight": options.reweight,
            "corrupt": options.corrupt,
        },
        "channels": [{"name": c, "target_share": TARGET_SHARES[c]} for c in CHANNELS],
    }
    response = client.post("/api/v1/runs", json=body)
    response.raise_for_status()
    return dict(response.json())


def _add_webhook_notifier(client: httpx.Client, url: str, run_key: str) -> str:
    """Configure the generic webhook notifier through the REST API; returns a status line."""
    body = {"name": f"demo-receiver-{run_key}", "kind": "webhook", "config": {"url": url}}
    response = client.post("/api/v1/notifiers", json=body)
    if response.status_code == 404:
        return "the server has no notifier API (alert engine not installed): no webhook"
    response.raise_for_status()
    return f"webhook notifier -> {url}"


def _alerts(client: httpx.Client, run_id: int) -> list[dict[str, Any]]:
    response = client.get("/api/v1/alerts", params={"run_id": run_id})
    if response.status_code == 404:
        return []
    response.raise_for_status()
    return list(response.json().get("data", []))


def _make_hook(options: DemoOptions) -> Any:
    from trainer_hook import ChannelLoss, ChannelReweightConfig

    reweight = None
    if options.reweight != "none":
        reweight = ChannelReweightConfig(
            strategy=options.reweight,  # type: ignore[arg-type]
            prior=[TARGET_SHARES[c] for c in CHANNELS],
            warmup_steps=10,
        )
    return ChannelLoss(channels=list(CHANNELS), channel_reweight=reweight)


def run_demo(options: DemoOptions, *, out: TextIO | None = None) -> int:
    """Run the whole demo; returns the process exit code."""
    out = out or sys.stdout
    say: Callable[[str], None] = lambda text: print(text, file=out, flush=True)  # noqa: E731
    import torch

    from lossradar.demo.megatron_data import prepare_data
    from lossradar.demo.train import TrainConfig, build_model, train
    from trainer_hook.sinks import HttpSender

    corruption = Corruption.parse(options.corrupt, CHANNELS) if options.corrupt else None
    run_key = f"demo-{time.strftime('%Y%m%d-%H%M%S')}-{options.seed}"
    bar: ProgressBar | None = None

    def on_message(message: Received) -> None:
        (bar.note if bar is not None else say)(_describe(message))

    with contextlib.ExitStack() as stack:
        receiver = stack.enter_context(WebhookReceiver(on_message=on_message))
        say(f"webhook receiver listening on {receiver.url}")
        say(f"starting lossradar server (SQLite in {options.data_dir}) ...")
        server = stack.enter_context(LocalServer(options.data_dir))
        say(f"server at {server.url}")
        client = stack.enter_context(server.client())
        run = _register(client, run_key, options)
        run_id = int(run["id"])
        say(_add_webhook_notifier(client, receiver.url, run_key))
        dashboard_url = f"{server.url}/#/runs/{run_id}"
        say(f"run {run_id} ({run_key}); dashboard: {dashboard_url}")

        say("building data: package text -> BPE -> IndexedDataset -> BlendedDataset 3:2:2:3 ...")
        cfg = TrainConfig(
            steps=options.steps,
            batch_size=options.batch_size,
            seed=options.seed,
            device=options.device,
            corruption=corruption,
        )
        data = prepare_data(
            num_samples=options.steps * options.batch_size, seq_length=cfg.model.seq_length
        )
        model = build_model(cfg, data.vocab_size)
        sink = HttpSender(
            url=server.url,
            token=server.token,
            run_key=run_key,
            channels=[{"name": c, "target_share": TARGET_SHARES[c]} for c in CHANNELS],
            spool_dir=options.data_dir / "spool",
        )
        hook = _make_hook(options)
        say(
            f"training a {model.num_parameters() / 1e6:.2f} M-parameter GPT on {options.device} "
            f"for {options.steps} steps (torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads); corruption: {options.corrupt or 'none'}"
        )
        bar = ProgressBar(
            total=options.steps,
            channels=CHANNELS,
            stream=out,
            tokens_per_step=options.batch_size * cfg.model.seq_length,
        )
        first: dict[str, dict[str, float]] = {}

        def on_step(step: int, run_m: Any, channel_m: Any) -> None:
            for name, metrics in channel_m.items():
                first.setdefault(name, dict(metrics))
            assert bar is not None
            bar.update(step, run_m, channel_m)
            if corruption is not None and step == corruption.step:
                bar.note(f"step {step}: corrupting {corruption.channel} ({corruption.kind})")

        try:
            result = train(cfg, data, hook=hook, sink=sink, on_step=on_step, model=model)
        finally:
            bar.close()
            delivered = sink.flush(timeout=60)
            sink.close(timeout=10)
        bar = None
        if not delivered:
            say("warning: not every step reached the server (see the spool)")
        if corruption is not None:
            say(f"waiting up to {options.alert_wait_s:.0f} s for the alert to reach the receiver")
            receiver.wait_for(lambda m: True, timeout=options.alert_wait_s)
        alerts = _alerts(client, run_id)
        with contextlib.suppress(httpx.HTTPError):
            client.patch(f"/api/v1/runs/{run_id}", json={"status": "finished"})
        say(
            format_summary(
                steps=result.steps,
                seconds=result.seconds,
                tokens=result.tokens,
                parameters=model.num_parameters(),
                channels=CHANNELS,
                shares=TARGET_SHARES,
                first=first,
                last=result.last_channel_metrics,
                corruption=options.corrupt,
                alerts=alerts,
                received=receiver.messages,
                dashboard_url=dashboard_url,
                api_url=server.url,
                token=server.token,
            )
        )
        if options.summary_json is not None:
            options.summary_json.write_text(
                json.dumps(
                    {
                        "server_url": server.url,
                        "token": server.token,
                        "run_id": run_id,
                        "run_key": run_key,
                        "dashboard_url": dashboard_url,
                        "steps": result.steps,
                        "alerts": alerts,
                        "received": [m.body for m in receiver.messages],
                        "last_channel_metrics": result.last_channel_metrics,
                    },
                    indent=1,
                )
            )
        if options.keep_serving:
            say(f"serving the dashboard at {dashboard_url}; press Ctrl-C to stop")
            try:
                server.wait()
            except KeyboardInterrupt:
                say("stopping")
    return 0
