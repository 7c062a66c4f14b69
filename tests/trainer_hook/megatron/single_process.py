"""The single-process side of test_layouts.py, run in a spawned world of one (gloo).

``reference_worker`` builds the IndexedDataset files and computes the reference: the whole
global batch in one forward, channel losses as plain masked sums per ``dataset_id``. In the same
process it checks what needs no layout: step boundaries through a batch-size rampup, channel
reweighting through the adapter, and the ``pretrain_gpt.py`` decorators.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from tests.trainer_hook.megatron.corpus import CHANNELS, VOCAB, build_blend
from tests.trainer_hook.megatron.tiny_gpt import build_model, causal_mask, install_cpu_shim
from tests.trainer_hook.megatron.workers import GBS, LR, NUM_SAMPLES, SEQ, STEPS, stock_loss_func


def reference_worker(data_dir: str) -> Any:
    """Builds the IndexedDataset files, then the reference: the whole global batch in one
    process, channel losses as masked sums per dataset_id."""
    from megatron.core import parallel_state as ps

    from tests.trainer_hook.megatron.corpus import build_indexed_datasets

    install_cpu_shim()
    ps.initialize_model_parallel()
    prefixes = build_indexed_datasets(Path(data_dir))
    ds = build_blend(prefixes, NUM_SAMPLES, SEQ)
    model = build_model(VOCAB, SEQ)
    steps = []
    for step in range(STEPS):
        batch = torch.utils.data.default_collate(
            [ds[i] for i in range(step * GBS, (step + 1) * GBS)]
        )
        losses = model(
            input_ids=batch["tokens"],
            position_ids=batch["position_ids"],
            attention_mask=causal_mask(GBS, SEQ),
            labels=batch["labels"],
        ).float()
        mask = batch["loss_mask"].float()
        ids = batch["dataset_id"].long()
        channels = {}
        for c, name in enumerate(CHANNELS):
            sel = ids == c
            tokens = mask[sel].sum().item()
            if tokens > 0:
                channels[name] = {
                    "loss": ((losses * mask)[sel].sum() / tokens).item(),
                    "tokens": tokens,
                }
        total = mask.sum()
        loss = (losses * mask).sum() / total
        steps.append({"channels": channels, "lm_loss": loss.item(), "tokens": total.item()})
        loss.backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= LR * p.grad
                p.grad = None
    return {
        "prefixes": prefixes,
        "steps": steps,
        "rampup": rampup_checks(),
        "lazy": lazy_hook_checks(str(Path(data_dir) / "lazy.jsonl")),
        "reweight": reweight_checks(),
    }


def rampup_checks() -> dict[str, Any]:
    """Step boundaries follow Megatron's micro-batch calculator through a batch-size rampup; eval
    (``torch.no_grad``) micro-batches are not counted; a single-prefix run is channel 0."""
    from megatron.core.num_microbatches_calculator import (
        destroy_num_microbatches_calculator,
        get_current_global_batch_size,
        get_num_microbatches,
        init_num_microbatches_calculator,
        update_num_microbatches,
    )

    from trainer_hook.megatron import MegatronChannelLoss, MegatronHookConfig
    from trainer_hook.megatron.channels import build_channel_table, parse_blend

    destroy_num_microbatches_calculator()
    if "step_batch_size_schedule" in inspect.signature(init_num_microbatches_calculator).parameters:
        # 0.19 ignores rampup_batch_size; the same batch sizes as a step schedule (in samples)
        init_num_microbatches_calculator(0, None, 8, 2, 1, step_batch_size_schedule="0:2 4:4 8:8")
    else:
        init_num_microbatches_calculator(0, [2, 2, 8], 8, 2, 1)  # gbs 2 -> 8 by 2 / 8 samples
    table = build_channel_table(parse_blend(["/d/only_text_document"]))
    hook = MegatronChannelLoss(
        table, MegatronHookConfig(micro_batch_size=2, seq_length=4, log_interval=1000)
    )
    get_batch = hook.wrap_get_batch(lambda it: next(it))
    loss_func = hook.wrap_loss_func(stock_loss_func)
    one = {"tokens": torch.zeros(2, 4, dtype=torch.int64)}  # no dataset_id: a plain GPTDataset
    consumed, seen = 0, []
    for step in range(6):
        update_num_microbatches(consumed, consistency_check=True)
        n = get_num_microbatches()
        for _m in range(n):
            assert hook.iteration == step  # no boundary before the step's last micro-batch
            get_batch(iter([one]))
            loss_func(torch.ones(2, 4), torch.full((2, 4), 0.5, requires_grad=True))
        with torch.no_grad():  # an evaluation micro-batch in between is ignored
            get_batch(iter([one]))
            loss_func(torch.ones(2, 4), torch.full((2, 4), 9.0))
        report = hook.last_report
        seen.append(
            (n, report.run_metrics()["tokens_total"], report.channel_metrics()["only"]["loss"])
        )
        consumed += get_current_global_batch_size()
    assert hook.iteration == 6
    assert not math.isnan(seen[-1][2])
    return {"seen": seen}


def reweight_checks() -> dict[str, Any]:
    """Channel reweighting through the adapter: the returned loss is the weighted sum with the
    weights in force, ``lm loss`` stays the plain sum, the blend shares are the prior."""
    from trainer_hook import ChannelReweightConfig
    from trainer_hook.megatron import MegatronChannelLoss, MegatronHookConfig
    from trainer_hook.megatron.channels import build_channel_table, parse_blend

    table = build_channel_table(parse_blend(["1", "/d/fin", "3", "/d/web"]))
    hook = MegatronChannelLoss(
        table,
        MegatronHookConfig(micro_batch_size=2, seq_length=4, log_interval=1000),
        channel_reweight=ChannelReweightConfig(strategy="progress", ema_beta=0.0),
        num_microbatches_fn=lambda: 1,
    )
    get_batch = hook.wrap_get_batch(lambda it: next(it))
    loss_func = hook.wrap_loss_func(stock_loss_func)
    batch = {"tokens": torch.zeros(2, 4), "dataset_id": torch.tensor([0, 1], dtype=torch.int16)}
    seen = []
    for step in range(4):
        get_batch(iter([batch]))
        fin, web = 2.0 / (step + 1), 2.0  # finance is being learned, web is not
        per_token = torch.tensor([[fin] * 4, [web] * 4], requires_grad=True)
        loss, _, report = loss_func(torch.ones(2, 4), per_token)
        weights = {n: m["weight"] for n, m in hook.last_report.channel_metrics().items()}
        want = 4 * (weights["fin"] * fin + weights["web"] * web)
        assert float(loss) == pytest.approx(want, rel=1e-6), (step, weights)
        assert float(report["lm loss"][0]) == pytest.approx(4 * (fin + web))
        loss.backward()
        assert per_token.grad is not None
        assert per_token.grad[0, 0].item() == pytest.approx(weights["fin"], rel=1e-6)
        seen.append(weights)
    assert hook.channel_loss._reweighter is not None
    return {"weights": seen, "prior": list(hook.channel_loss._reweighter.config.prior or [])}


def lazy_hook_checks(jsonl: str) -> dict[str, Any]:
    """The decorators of ``pretrain_gpt.py``: built from Megatron's global args at first call,
    sinks from the environment (``LOSSRADAR_JSONL``), console line on the last rank."""
    import os

    from trainer_hook.megatron import LazyChannelLoss, compat
    from trainer_hook.sinks import read_jsonl

    args = SimpleNamespace(
        data_path=["1", "/d/web_text_document", "3", "/d/code_text_document"],
        micro_batch_size=2,
        seq_length=4,
        iteration=7,
        log_interval=1,
    )
    saved = compat.megatron_args
    compat.megatron_args = lambda: args  # what megatron.training.get_args() returns in Megatron
    os.environ["LOSSRADAR_JSONL"] = jsonl
    try:
        lazy = LazyChannelLoss()
        lazy.configure(num_microbatches_fn=lambda: 1)

        @lazy.get_batch
        def get_batch(data_iterator: Any, vp_stage: Any = None) -> Any:
            return next(data_iterator)["tokens"]

        @lazy.loss_func
        def loss_func(loss_mask: torch.Tensor, output_tensor: torch.Tensor) -> Any:
            return stock_loss_func(loss_mask, output_tensor)

        batch = {"tokens": torch.zeros(2, 4), "dataset_id": torch.tensor([1, 0], dtype=torch.int16)}
        console = io.StringIO()
        with contextlib.redirect_stdout(console):
            get_batch(iter([batch]), None)
            per_token = torch.tensor(
                [[1.0, 1.0, 1.0, 1.0], [3.0, 3.0, 3.0, 3.0]], requires_grad=True
            )
            loss_func(torch.ones(2, 4), per_token)
        lazy.hook.close(timeout=10)
    finally:
        compat.megatron_args = saved
        del os.environ["LOSSRADAR_JSONL"]
    records = list(read_jsonl(jsonl))
    return {"records": records, "console": console.getvalue(), "names": lazy.hook.table.names}
