"""What each spawned process runs in test_layouts.py (importable by the spawned children).

``layout_worker`` trains 2 optimizer steps of the tiny GPTModel on real text under one parallel
layout, through ``MegatronChannelLoss.wrap_get_batch`` / ``wrap_loss_func`` around stand-ins of
``pretrain_gpt.get_batch`` / ``loss_func`` (same code paths as Megatron-LM main: TP broadcast
of the fixed keys, ``dataset_id`` kept on TP rank 0 only, Megatron's own CP slicer), checks many
things on every rank (assertions fail the test with the rank's traceback) and returns, from the
global last rank, the step reports and what the writers received. The single-process reference
is in single_process.py.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
import torch.distributed as dist

from tests.trainer_hook.megatron.corpus import (
    CHANNELS,
    EOD,
    VOCAB,
    WEIGHTS,
    build_blend,
    channel_documents,
    encode,
)
from tests.trainer_hook.megatron.tiny_gpt import (
    backward_stage,
    build_model,
    forward_loss,
    install_cpu_shim,
)

MBS, SEQ, GBS, STEPS, LR = 2, 32, 8, 2, 0.5
NUM_SAMPLES = GBS * STEPS
KEYS = ("tokens", "labels", "loss_mask", "position_ids")
BATCH_KEYS = (  # pretrain_gpt.BATCH_KEYS of Megatron-LM main
    "attention_mask",
    "cu_seqlens",
    "cu_seqlens_padded",
    "hybrid_cp_group",
    "labels",
    "local_cp_size",
    "loss_mask",
    "max_seqlen",
    "position_ids",
    "tokens",
)


def data_path(prefixes: list[str]) -> list[str]:
    """``--data-path`` as Megatron parses it: ``w1 p1 w2 p2 ...``."""
    return [x for w, p in zip(WEIGHTS, prefixes, strict=True) for x in (str(w), p)]


class WandbStandIn:
    """Records ``wandb.log`` calls (W&B is a vendor's server: the one thing stood in for)."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, float], int]] = []

    def log(self, data: dict[str, float], step: int) -> None:
        self.calls.append((dict(data), step))


def stock_get_batch(data_iterator: Any) -> tuple[Any, ...]:
    """``pretrain_gpt.get_batch`` of Megatron-LM main, on CPU: TP rank 0 reads and broadcasts the
    fixed keys (``dataset_id`` stays on TP rank 0 only), then Megatron's CP slicer runs. With
    megatron-core 0.19+ the TP broadcast is megatron-core's own ``get_batch_on_this_tp_rank``."""
    from megatron.core import parallel_state as ps
    from megatron.core import utils as mcu

    from trainer_hook.megatron import compat

    first, last = ps.is_pipeline_first_stage(), ps.is_pipeline_last_stage()
    if hasattr(mcu, "get_batch_on_this_tp_rank"):  # megatron-core >= 0.19: the real thing
        return _core_get_batch(data_iterator, first, last)
    wanted = {"tokens": first, "position_ids": first, "labels": last, "loss_mask": last}
    batch: dict[str, Any] = {}
    if ps.get_tensor_model_parallel_rank() == 0:
        data = next(data_iterator)
        batch = {k: data[k] for k in KEYS}
        if "dataset_id" in data:
            batch["dataset_id"] = data["dataset_id"]
    for key in KEYS:
        if not wanted[key]:
            batch[key] = None
            continue
        dtype = torch.float32 if key == "loss_mask" else torch.int64
        if ps.get_tensor_model_parallel_world_size() > 1:
            if ps.get_tensor_model_parallel_rank() != 0:
                batch[key] = torch.empty(MBS, SEQ, dtype=dtype)
            dist.broadcast(
                batch[key],
                ps.get_tensor_model_parallel_src_rank(),
                group=ps.get_tensor_model_parallel_group(),
            )
    batch = compat.cp_slice(batch, ps.get_context_parallel_group())
    return batch["tokens"], batch["labels"], batch["loss_mask"], None, batch["position_ids"]


def _core_get_batch(data_iterator: Any, first: bool, last: bool) -> tuple[Any, ...]:
    from megatron.core import parallel_state as ps
    from megatron.core import utils as mcu

    tp_rank = ps.get_tensor_model_parallel_rank()
    batch: dict[str, Any] = {}
    if tp_rank == 0:
        batch = dict(next(data_iterator))  # dataset_id stays in, as in Megatron-LM main
        for key in BATCH_KEYS:
            batch[key] = batch.get(key)
    batch = mcu.get_batch_on_this_tp_rank(
        batch,
        has_cu_seqlens=False,
        is_hybrid_cp=False,
        create_attention_mask_in_dataloader=False,
        broadcast_src_rank=ps.get_tensor_model_parallel_src_rank(),
        broadcast_group=ps.get_tensor_model_parallel_group(),
        cp_size=ps.get_context_parallel_world_size(),
        tp_rank=tp_rank,
        micro_batch_size=MBS,
        seq_length=SEQ,
        mtp_on_this_rank=False,
        pipeline_model_parallel_size=ps.get_pipeline_model_parallel_world_size(),
        is_pipeline_first_stage=first,
        is_pipeline_last_stage=last,
    )
    batch = mcu.get_batch_on_this_cp_rank(
        batch, is_hybrid_cp=False, cp_group=ps.get_context_parallel_group()
    )
    return batch["tokens"], batch["labels"], batch["loss_mask"], None, batch["position_ids"]


def stock_loss_func(loss_mask: torch.Tensor, output_tensor: torch.Tensor) -> Any:
    """``pretrain_gpt.loss_func``: ``(loss_sum, num_tokens, {"lm loss": [sum, count]})``."""
    losses = output_tensor.view(-1).float()
    mask = loss_mask.view(-1).float()
    loss = torch.sum(losses * mask)
    num_tokens = mask.sum().clone().detach().to(torch.int)
    return (
        loss,
        num_tokens,
        {"lm loss": torch.cat([loss.clone().detach().view(1), num_tokens.view(1)])},
    )


def schedule_scaled(
    loss: torch.Tensor, num_tokens: torch.Tensor, per_token_loss: bool, cp: int, n_micro: int
) -> torch.Tensor:
    """What ``schedules.forward_step_calc_loss`` back-propagates for a 3-tuple loss result."""
    if per_token_loss:
        return loss
    return loss / num_tokens * cp / n_micro


def megatron_report_reduction(
    reports: list[dict[str, torch.Tensor]], group: Any
) -> dict[str, float]:
    """``training.train_step``: keys of micro-batch 0, sum over micro-batches, all-reduce over
    DP x CP, report ``sum / count``."""
    out = {}
    for key in reports[0]:
        val = torch.vstack([r[key].view(-1) for r in reports]).sum(dim=0)
        dist.all_reduce(val, group=group)
        out[key] = (val[0] / val[1]).item()
    return out


def micro_batches(ds: Any, dp_rank: int, dp: int, n_micro: int) -> Any:
    """Megatron's pretraining sampler: micro-batch ``m`` of step ``s`` on DP rank ``r`` holds
    samples ``(s * n_micro + m) * MBS * dp + r * MBS + [0, MBS)``."""
    for step in range(STEPS):
        for m in range(n_micro):
            base = (step * n_micro + m) * MBS * dp + dp_rank * MBS
            yield torch.utils.data.default_collate([ds[i] for i in range(base, base + MBS)])


def layout_worker(tp: int, pp: int, cp: int, prefixes: list[str], out_dir: str) -> Any:
    from megatron.core import parallel_state as ps
    from megatron.core.num_microbatches_calculator import (
        destroy_num_microbatches_calculator,
        init_num_microbatches_calculator,
    )
    from torch.utils.tensorboard import SummaryWriter

    from trainer_hook.megatron import MegatronChannelLoss, MegatronHookConfig, compat
    from trainer_hook.megatron.channels import channel_table_from_args
    from trainer_hook.sinks.jsonl import JsonlSink

    install_cpu_shim()
    ps.initialize_model_parallel(
        tensor_model_parallel_size=tp, pipeline_model_parallel_size=pp, context_parallel_size=cp
    )
    rank, world = dist.get_rank(), dist.get_world_size()
    dp, dp_rank = ps.get_data_parallel_world_size(), ps.get_data_parallel_rank()
    tp_rank = ps.get_tensor_model_parallel_rank()
    first, last = ps.is_pipeline_first_stage(), ps.is_pipeline_last_stage()
    n_micro = GBS // (MBS * dp)
    destroy_num_microbatches_calculator()
    init_num_microbatches_calculator(rank, None, GBS, MBS, dp)
    dp_cp = ps.get_data_parallel_group(with_context_parallel=True)
    cp_group = ps.get_context_parallel_group()

    reads = tp_rank == 0 and (first or last)
    ds = build_blend(prefixes, NUM_SAMPLES, SEQ, built_on_rank=reads)
    result: dict[str, Any] = {}

    # 1. The stock path with a blend crashes under CP > 1 on the ranks that hold dataset_id.
    crashed = torch.zeros(1)
    if cp > 1 and (first or last):
        try:
            stock_get_batch(micro_batches(ds, dp_rank, dp, n_micro) if reads else None)
        except (IndexError, RuntimeError):
            crashed += 1
    dist.all_reduce(crashed)
    result["stock_crashed_ranks"] = int(crashed.item())

    # 2. The wrapped path.
    table = channel_table_from_args(SimpleNamespace(data_path=data_path(prefixes)))
    logging_rank = rank == world - 1
    tb = SummaryWriter(str(Path(out_dir) / "tb")) if logging_rank else None
    wandb = WandbStandIn() if logging_rank else None
    sinks = [JsonlSink(Path(out_dir) / "steps.jsonl")] if logging_rank else []
    hook = MegatronChannelLoss(
        table,
        MegatronHookConfig(
            micro_batch_size=MBS, seq_length=SEQ, log_interval=1, report_channels=True
        ),
        sinks=sinks,
        tensorboard_writer=tb,
        wandb_writer=wandb,
    )
    get_batch = hook.wrap_get_batch(stock_get_batch)
    loss_func = hook.wrap_loss_func(stock_loss_func)
    model = build_model(VOCAB, SEQ)
    cp_slice = lambda b: compat.cp_slice(b, cp_group)  # noqa: E731
    it = micro_batches(ds, dp_rank, dp, n_micro) if reads else None
    steps = []
    console = io.StringIO()
    with contextlib.redirect_stdout(console):
        for step in range(STEPS):
            reports, tokens_here = [], 0
            for _ in range(n_micro):
                tokens, labels, loss_mask, _, pos = get_batch(it)
                per_token, activations = forward_loss(
                    model, tokens, labels, pos, cp_slice, cp_group
                )
                if not last:
                    assert len(hook._pending) == 0  # first stage of PP: ids not kept
                    backward_stage(model, None, activations)
                    continue
                ids = hook._pending[0].ids
                assert ids.dtype == torch.int64
                assert tuple(ids.shape) == (MBS,)
                for b in range(MBS):  # dataset_id flowed to the loss: the tokens say the same
                    row = labels[b][labels[b] != EOD]
                    assert set((row // 256).tolist()) == {int(ids[b])}, (row, ids)
                stock = stock_loss_func(loss_mask, per_token)
                loss, num_tokens, report = loss_func(loss_mask, per_token)
                assert num_tokens is not None
                assert int(num_tokens) == int(stock[1])
                assert torch.equal(report["lm loss"], stock[2]["lm loss"])  # lm loss unchanged
                torch.testing.assert_close(loss, stock[0], rtol=1e-6, atol=0)
                for per_token_loss in (True, False):  # --calculate-per-token-loss on and off
                    ours = schedule_scaled(loss, num_tokens, per_token_loss, cp, n_micro)
                    theirs = schedule_scaled(stock[0], stock[1], per_token_loss, cp, n_micro)
                    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=0)
                reports.append(report)
                tokens_here += int(num_tokens)
                backward_stage(model, loss, None)
            total = torch.tensor([float(tokens_here)])
            if last:
                dist.all_reduce(total, group=dp_cp)
                rep = hook.last_report
                assert hook.iteration == step + 1
                assert hook.microbatch == 0
                steps.append(
                    {
                        "channels": rep.channel_metrics(),
                        "run": rep.run_metrics(),
                        "megatron": megatron_report_reduction(reports, dp_cp),
                    }
                )
            if pp > 1:
                dist.broadcast(
                    total,
                    ps.get_pipeline_model_parallel_last_rank(),
                    group=ps.get_pipeline_model_parallel_group(),
                )
            with torch.no_grad():
                for p in model.parameters():
                    if p.grad is None:
                        p.grad = torch.zeros_like(p)
                    dist.all_reduce(p.grad, group=dp_cp)
                    p -= LR * p.grad / total
                    p.grad = None
    hook.close(timeout=10)
    if tb is not None:
        tb.close()
    if cp > 1 and dp > 1:
        result["packed"] = packed_checks(table, cp_group)
    if logging_rank:
        result.update(steps=steps, console=console.getvalue(), wandb=wandb.calls if wandb else [])
        return result
    return None


def packed_checks(table: Any, cp_group: Any) -> dict[str, Any]:
    """Packed rows with documents of several channels (per-document ``dataset_id``, MindSpeed-LLM
    style): per-token ids must be sliced under CP exactly like the tokens (token // 256 tells the
    channel), and per-channel token counts over DP x CP must be exact."""
    from megatron.core import parallel_state as ps

    from trainer_hook.megatron import MegatronChannelLoss, MegatronHookConfig

    docs = [channel_documents(name)[:6] for name in CHANNELS[:3]]
    g = torch.Generator().manual_seed(7 + ps.get_data_parallel_rank())
    rows, pos_rows, doc_ids = [], [], []
    for _ in range(MBS):  # each row: documents of random channels cut to random lengths
        toks, pos = [], []
        while len(toks) < SEQ:
            c = int(torch.randint(0, 3, (1,), generator=g))
            n = min(int(torch.randint(3, 12, (1,), generator=g)), SEQ - len(toks))
            doc = [*encode(docs[c][len(toks) % 6], c)[: n - 1].tolist(), EOD]
            toks += doc
            pos += list(range(len(doc)))
            doc_ids.append(c)
        rows.append(toks)
        pos_rows.append(pos)
    tokens = torch.tensor(rows)
    batch = {
        "tokens": tokens,
        "labels": tokens.clone(),
        "loss_mask": (tokens != EOD).float(),
        "position_ids": torch.tensor(pos_rows),
        "dataset_id": torch.tensor(doc_ids, dtype=torch.int16),
    }
    hook = MegatronChannelLoss(
        table,
        MegatronHookConfig(micro_batch_size=MBS, seq_length=SEQ, packed=True, console=False),
        num_microbatches_fn=lambda: 1,
    )
    get_batch = hook.wrap_get_batch(stock_get_batch)
    loss_func = hook.wrap_loss_func(stock_loss_func)
    _, labels, loss_mask, _, _ = get_batch(iter([batch]))
    ids = hook._pending[0]
    assert ids.segments is not None
    assert ids.ids.shape == labels.shape
    real = labels // 256
    assert torch.equal(torch.where(labels == EOD, ids.ids, real), ids.ids), (ids.ids, real)
    per_token = torch.ones(labels.shape, requires_grad=True)
    loss, _, _ = loss_func(loss_mask, per_token)
    loss.backward()
    local = torch.zeros(len(table.names)).index_add_(0, ids.ids.reshape(-1), loss_mask.reshape(-1))
    dist.all_reduce(local, group=ps.get_data_parallel_group(with_context_parallel=True))
    metrics = hook.last_report.channel_metrics()
    got = [metrics.get(n, {}).get("tokens", 0.0) for n in table.names]
    assert got == local.tolist(), (got, local.tolist())
    docs = torch.tensor([float(len(doc_ids))])  # every CP rank holds the same documents
    dist.all_reduce(docs, group=ps.get_data_parallel_group())
    samples = sum(m["samples"] for m in metrics.values())
    assert samples == docs.item(), (samples, docs.item())  # documents cut by CP counted once
    return {"tokens": got, "samples": samples}
