"""Megatron-LM's ``pretrain_gpt.py`` flow on CPU with the lossradar hook (megatron-core only).

The functions ``get_batch``, ``loss_func`` and ``forward_step`` have the shape of those in
``pretrain_gpt.py``; the two lines marked ``# lossradar`` are the whole integration. Data: three
channels cut from Python standard-library packages (``json``, ``email``, ``http``), tokenised as
bytes, written as Megatron IndexedDatasets and blended 5:3:2 by ``BlendedMegatronDatasetBuilder``.

    torchrun --standalone --nproc_per_node 2 examples/megatron/run_cpu.py --steps 20  # DP=2
    torchrun --standalone --nproc_per_node 2 examples/megatron/run_cpu.py --tp 2  # TP=2

The last rank prints one channel line per ``--log-interval`` and appends every logged step to
``OUT/steps.jsonl``. Megatron's own schedule needs CUDA, so micro-batches are driven here.
"""

from __future__ import annotations

import argparse
import sysconfig
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
import torch.distributed as dist

from trainer_hook.megatron import MegatronChannelLoss, MegatronHookConfig, channel_table_from_args

CHANNELS = {"json": 0.5, "email": 0.3, "http": 0.2}
VOCAB, SEQ, MBS, GBS = 258, 64, 2, 8
EOD = VOCAB - 1


def write_datasets(out: Path) -> list[str]:
    """One IndexedDataset per stdlib package; documents are 1 kB pieces of its ``.py`` files."""
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    prefixes = []
    for name in CHANNELS:
        prefix = out / name / f"{name}_text_document"
        prefix.parent.mkdir(parents=True, exist_ok=True)
        builder = IndexedDatasetBuilder(f"{prefix}.bin", dtype=np.int32)
        for path in sorted((stdlib / name).glob("*.py")):
            data = path.read_bytes()
            for start in range(0, len(data), 1024):
                doc = np.append(np.frombuffer(data[start : start + 1024], np.uint8), EOD)
                builder.add_document(torch.from_numpy(doc.astype(np.int64)), [len(doc)])
        builder.finalize(f"{prefix}.idx")
        prefixes.append(str(prefix))
    return prefixes


def build_train_dataset(prefixes: list[str], num_samples: int, on_this_rank: bool) -> object:
    from megatron.core.datasets.blended_megatron_dataset_builder import (
        BlendedMegatronDatasetBuilder,
    )
    from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig
    from megatron.core.tokenizers import MegatronTokenizer

    try:  # megatron-core 0.19 names the null tokenizer "null-text", 0.16 "null"
        tok = MegatronTokenizer.from_pretrained(
            metadata_path={"library": "null-text"}, vocab_size=VOCAB
        )
    except Exception:
        tok = MegatronTokenizer.from_pretrained(metadata_path={"library": "null"}, vocab_size=VOCAB)
    config = GPTDatasetConfig(
        random_seed=1234,
        sequence_length=SEQ,
        blend=(prefixes, list(CHANNELS.values())),
        split="100,0,0",
        path_to_cache=None,
        tokenizer=tok,
        reset_position_ids=False,
        reset_attention_mask=False,
        eod_mask_loss=False,
        create_attention_mask=False,
    )
    sizes = [num_samples, 0, 0]
    return BlendedMegatronDatasetBuilder(GPTDataset, sizes, lambda: on_this_rank, config).build()[0]


def build_model() -> torch.nn.Module:
    from megatron.core import parallel_state as ps
    from megatron.core.models.gpt import GPTModel
    from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec
    from megatron.core.tensor_parallel.random import model_parallel_cuda_manual_seed
    from megatron.core.transformer.transformer_config import TransformerConfig

    model_parallel_cuda_manual_seed(123, inference_rng_tracker=True)
    config = TransformerConfig(
        num_layers=2,
        hidden_size=64,
        num_attention_heads=4,
        use_cpu_initialization=True,
        tensor_model_parallel_size=ps.get_tensor_model_parallel_world_size(),
        hidden_dropout=0.0,
        attention_dropout=0.0,
        params_dtype=torch.float32,
        calculate_per_token_loss=True,
    )
    return GPTModel(
        config=config,
        transformer_layer_spec=get_gpt_layer_local_spec(),
        vocab_size=VOCAB,
        max_sequence_length=SEQ,
        position_embedding_type="learned_absolute",
    )


def get_batch(data_iterator):
    """``pretrain_gpt.get_batch``: TP rank 0 reads, the fixed keys are broadcast over TP."""
    from megatron.core import parallel_state as ps

    keys = {"tokens": torch.int64, "labels": torch.int64, "loss_mask": torch.float32,
            "position_ids": torch.int64}  # fmt: skip
    batch = {}
    if ps.get_tensor_model_parallel_rank() == 0:
        data = next(data_iterator)
        batch = {k: data[k] for k in keys}
    for key, dtype in keys.items():
        if ps.get_tensor_model_parallel_rank() != 0:
            batch[key] = torch.empty(MBS, SEQ, dtype=dtype)
        dist.broadcast(batch[key], ps.get_tensor_model_parallel_src_rank(),
                       group=ps.get_tensor_model_parallel_group())  # fmt: skip
    return batch["tokens"], batch["labels"], batch["loss_mask"], batch["position_ids"]


def loss_func(loss_mask, output_tensor):
    """``pretrain_gpt.loss_func``: ``(loss_sum, num_tokens, {"lm loss": [sum, count]})``."""
    losses = output_tensor.view(-1).float()
    mask = loss_mask.view(-1).float()
    loss = torch.sum(losses * mask)
    num_tokens = mask.sum().clone().detach().to(torch.int)
    return loss, num_tokens, {"lm loss": torch.cat([loss.detach().view(1), num_tokens.view(1)])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tp", type=int, default=1)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--log-interval", type=int, default=5)
    parser.add_argument("--out", default="/tmp/lossradar-megatron-example")
    args = parser.parse_args()

    if not torch.cuda.is_available():  # megatron-core allocates on current_device() (CPU only)
        torch.cuda.current_device = lambda: "cpu"
    dist.init_process_group("gloo")
    from megatron.core import parallel_state as ps

    ps.initialize_model_parallel(tensor_model_parallel_size=args.tp)
    out = Path(args.out)
    if dist.get_rank() == 0:
        write_datasets(out / "data")
    dist.barrier()
    prefixes = [str(out / "data" / n / f"{n}_text_document") for n in CHANNELS]
    dp, dp_rank = ps.get_data_parallel_world_size(), ps.get_data_parallel_rank()
    n_micro = GBS // (MBS * dp)
    reader = ps.get_tensor_model_parallel_rank() == 0
    train = build_train_dataset(prefixes, args.steps * GBS, reader)

    def samples():  # Megatron's pretraining sampler: this DP rank's slice of each micro-batch
        for first in range(0, args.steps * GBS, MBS * dp):
            start = first + dp_rank * MBS
            yield torch.utils.data.default_collate([train[i] for i in range(start, start + MBS)])

    logging_rank = dist.get_rank() == dist.get_world_size() - 1
    sinks = []
    if logging_rank:
        from trainer_hook.sinks import JsonlSink

        sinks.append(JsonlSink(out / "steps.jsonl"))
    data_path = [x for w, p in zip(CHANNELS.values(), prefixes, strict=True) for x in (str(w), p)]
    hook = MegatronChannelLoss(  # lossradar
        channel_table_from_args(SimpleNamespace(data_path=data_path)),
        MegatronHookConfig(micro_batch_size=MBS, seq_length=SEQ, log_interval=args.log_interval),
        sinks=sinks,
        num_microbatches_fn=lambda: n_micro,  # Megatron-LM: its calculator, used by default
    )
    wrapped_get_batch = hook.wrap_get_batch(get_batch)  # lossradar
    wrapped_loss_func = hook.wrap_loss_func(loss_func)  # lossradar

    model = build_model()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    it = samples() if reader else None
    causal = torch.triu(torch.ones(SEQ, SEQ, dtype=torch.bool), 1).expand(MBS, 1, SEQ, SEQ)
    dp_group = ps.get_data_parallel_group()
    for _ in range(args.steps):
        total = torch.zeros(1)
        for _ in range(n_micro):  # forward_step + the schedule's backward, per micro-batch
            tokens, labels, loss_mask, position_ids = wrapped_get_batch(it)
            output = model(tokens, position_ids, causal, labels=labels)
            loss, num_tokens, _ = wrapped_loss_func(loss_mask, output)
            loss.backward()
            total += num_tokens
        dist.all_reduce(total, group=dp_group)
        for p in model.parameters():  # --calculate-per-token-loss: grads / global tokens
            dist.all_reduce(p.grad, group=dp_group)
            p.grad /= total
        opt.step()
        opt.zero_grad()
    hook.close(timeout=10)
    ps.destroy_model_parallel()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
