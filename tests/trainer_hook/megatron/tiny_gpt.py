"""A tiny megatron-core GPTModel on CPU, driven micro-batch by micro-batch.

Megatron's own schedule hard-codes CUDA, so the tests drive the pipeline themselves:
stage 0 sends its activations to stage 1 (``dist.send``/``recv``), stage 1 computes the loss,
the gradient of the activations goes back. Local attention has no context parallelism on CPU,
so under CP the sequence is all-gathered over the CP group (what ring attention computes, in
one go), the model runs on the whole sequence and the per-token loss is sliced back with
Megatron's own CP slicer: every CP rank then holds the exact per-token losses of its tokens.

Weights are set from the parameter's *global* name (layer offset added under PP) with a seeded
generator, then sharded like Megatron shards them (``partition_dim``), so every layout holds the
same model as the single-process reference.
"""

from __future__ import annotations

import re
import zlib
from typing import Any

import torch
import torch.distributed as dist

HIDDEN, HEADS, FFN, LAYERS = 32, 4, 64, 2


def install_cpu_shim() -> None:
    """megatron-core allocates on ``torch.cuda.current_device()`` in a few places (tests only)."""
    if not torch.cuda.is_available():
        torch.cuda.current_device = lambda: "cpu"  # type: ignore[assignment,return-value]


def build_model(vocab: int, seq_length: int) -> Any:
    """GPTModel with the local layer spec, learned positions, untied output layer."""
    from megatron.core import parallel_state as ps
    from megatron.core.models.gpt import GPTModel
    from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec
    from megatron.core.tensor_parallel.random import model_parallel_cuda_manual_seed
    from megatron.core.transformer.transformer_config import TransformerConfig

    model_parallel_cuda_manual_seed(123, inference_rng_tracker=True)
    config = TransformerConfig(
        num_layers=LAYERS,
        hidden_size=HIDDEN,
        num_attention_heads=HEADS,
        ffn_hidden_size=FFN,
        use_cpu_initialization=True,
        tensor_model_parallel_size=ps.get_tensor_model_parallel_world_size(),
        pipeline_model_parallel_size=ps.get_pipeline_model_parallel_world_size(),
        sequence_parallel=False,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        bf16=False,
        params_dtype=torch.float32,
        pipeline_dtype=torch.float32,
        calculate_per_token_loss=True,
    )
    model = GPTModel(
        config=config,
        transformer_layer_spec=get_gpt_layer_local_spec(),
        vocab_size=vocab,
        max_sequence_length=seq_length,
        pre_process=ps.is_pipeline_first_stage(),
        post_process=ps.is_pipeline_last_stage(),
        share_embeddings_and_output_weights=False,
        position_embedding_type="learned_absolute",
    )
    set_global_weights(model)
    return model


def set_global_weights(model: Any) -> None:
    """Same weights in every layout: value = f(global name), then the rank's TP shard."""
    from megatron.core import parallel_state as ps

    tp = ps.get_tensor_model_parallel_world_size()
    tp_rank = ps.get_tensor_model_parallel_rank()
    offset = ps.get_pipeline_model_parallel_rank() * (
        LAYERS // ps.get_pipeline_model_parallel_world_size()
    )
    with torch.no_grad():
        for name, p in model.named_parameters():
            global_name = re.sub(
                r"layers\.(\d+)\.", lambda m: f"layers.{int(m.group(1)) + offset}.", name
            )
            shape = list(p.shape)
            dim = (
                getattr(p, "partition_dim", 0)
                if getattr(p, "tensor_model_parallel", False)
                else None
            )
            if dim is not None:
                shape[dim] *= tp
            g = torch.Generator().manual_seed(zlib.crc32(global_name.encode()))
            full = 0.05 * torch.randn(shape, generator=g)
            if name.endswith(("layer_norm_weight", "layernorm.weight", "norm.weight")):
                full += 1.0
            p.copy_(full.chunk(tp, dim)[tp_rank] if dim is not None else full)


def causal_mask(batch: int, seq: int) -> torch.Tensor:
    """``[B, 1, S, S]`` bool, True = masked out."""
    return torch.triu(torch.ones(seq, seq, dtype=torch.bool), diagonal=1).expand(batch, 1, seq, seq)


def gather_cp_sequence(local: torch.Tensor, cp_group: Any) -> torch.Tensor:
    """Inverse of Megatron's zigzag CP slicing: ``[B, S/cp]`` on each CP rank -> ``[B, S]``."""
    cp = dist.get_world_size(cp_group)
    if cp == 1:
        return local
    parts = [torch.empty_like(local) for _ in range(cp)]
    dist.all_gather(parts, local.contiguous(), group=cp_group)
    chunks: list[torch.Tensor | None] = [None] * (2 * cp)
    for r, part in enumerate(parts):
        a, b = part.chunk(2, dim=1)
        chunks[r], chunks[2 * cp - 1 - r] = a, b
    return torch.cat([c for c in chunks if c is not None], dim=1)


def forward_loss(
    model: Any,
    tokens: torch.Tensor | None,
    labels: torch.Tensor | None,
    position_ids: torch.Tensor | None,
    cp_slice: Any,
    cp_group: Any,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """One micro-batch forward on this stage.

    Returns ``(per_token_loss [B, S/cp] or None, activations sent downstream or None)``; the
    last stage also returns the received input (for the backward hand-off) through
    ``model._lossradar_input``.
    """
    from megatron.core import parallel_state as ps

    first, last = ps.is_pipeline_first_stage(), ps.is_pipeline_last_stage()
    full_tokens = gather_cp_sequence(tokens, cp_group) if tokens is not None else None
    full_pos = gather_cp_sequence(position_ids, cp_group) if position_ids is not None else None
    full_labels = gather_cp_sequence(labels, cp_group) if labels is not None else None
    ref = full_tokens if full_tokens is not None else full_labels
    assert ref is not None
    b, s = ref.shape
    if not first:
        x = torch.empty(s, b, HIDDEN, requires_grad=False)
        dist.recv(x, ps.get_pipeline_model_parallel_prev_rank())
        x.requires_grad_(True)
        model._lossradar_input = x
        model.set_input_tensor(x)
    out = model(
        input_ids=full_tokens if first else None,
        position_ids=full_pos if first else None,
        attention_mask=causal_mask(b, s),
        labels=full_labels if last else None,
    )
    if not last:
        dist.send(out.detach().contiguous(), ps.get_pipeline_model_parallel_next_rank())
        return None, out
    return cp_slice({"loss": out})["loss"], None


def backward_stage(model: Any, loss: torch.Tensor | None, activations: torch.Tensor | None) -> None:
    """Backward of one micro-batch on this stage, handing activation grads upstream."""
    from megatron.core import parallel_state as ps

    if ps.is_pipeline_last_stage():
        assert loss is not None
        loss.backward()
        if not ps.is_pipeline_first_stage():
            dist.send(
                model._lossradar_input.grad.contiguous(), ps.get_pipeline_model_parallel_prev_rank()
            )
    else:
        assert activations is not None
        grad = torch.empty_like(activations)
        dist.recv(grad, ps.get_pipeline_model_parallel_next_rank())
        activations.backward(grad)
