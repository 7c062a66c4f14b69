"""Write the worked example of docs/mix.md: synthetic Megatron datasets of known sizes and the
seed's finance / math / code / logic / general plans (by tokens in TOML, by samples in YAML).

    python -m trainer_hook.mix.example OUTDIR
    lossradar mix plan OUTDIR/seed_plan.toml

The token ids are random (seeded, so every run writes the same files); only the sizes matter.
Needs megatron-core (for ``IndexedDatasetBuilder``).
"""

from __future__ import annotations

import sys
from pathlib import Path

#: prefix (under data/) -> (documents, min length, max length); finance/slow counts from the issue.
SOURCES: dict[str, tuple[int, int, int]] = {
    "finance/credit": (482, 200, 1200),
    "finance/alignment": (572, 200, 1200),
    "finance/qa": (182, 200, 1200),
    "finance/openfindata": (2363, 200, 1200),
    "finance/textgen": (113, 200, 1200),
    "finance/fast": (1250, 100, 700),
    "math/slow": (2000, 300, 1500),
    "math/fast": (1000, 100, 500),
    "code/slow": (1500, 400, 2000),
    "code/fast": (2000, 200, 800),
    "logic/slow": (600, 300, 1300),
    "logic/fast": (1000, 100, 500),
    "general/dialogue": (5000, 50, 250),
    "general/web": (4000, 500, 1500),
}

TOKENS_PLAN = """\
# The seed's plan by tokens: finance : math : code : logic+dialogue = 3 : 2 : 2 : 3 of 20 M
# tokens (logic and general dialogue/web share the last 3 evenly); slow : fast = 3 : 1 inside
# each domain (DeepSeek-R1); finance's slow sources split in proportion to their data.
[mix]
seq_length = 4096
tokens = 20_000_000
max_epochs = 4
data_root = "data"

[channels.finance]
ratio = 3
[channels.finance.slow]
ratio = 3
[channels.finance.slow.credit]
prefix = "finance/credit"
[channels.finance.slow.alignment]
prefix = "finance/alignment"
[channels.finance.slow.qa]
prefix = "finance/qa"
[channels.finance.slow.openfindata]
prefix = "finance/openfindata"
[channels.finance.slow.textgen]
prefix = "finance/textgen"
[channels.finance.fast]
ratio = 1
prefix = "finance/fast"

[channels.math]
ratio = 2
[channels.math.slow]
ratio = 3
prefix = "math/slow"
[channels.math.fast]
ratio = 1
prefix = "math/fast"

[channels.code]
ratio = 2
[channels.code.slow]
ratio = 3
prefix = "code/slow"
[channels.code.fast]
ratio = 1
prefix = "code/fast"

[channels.logic]
ratio = 1.5
[channels.logic.slow]
ratio = 3
prefix = "logic/slow"
[channels.logic.fast]
ratio = 1
prefix = "logic/fast"

[channels.general]
ratio = 1.5
[channels.general.dialogue]
prefix = "general/dialogue"
[channels.general.web]
prefix = "general/web"
"""

SAMPLES_PLAN = """\
# The seed's plan by samples: 52k samples, 10k per domain, general takes the rest;
# slow : fast = 3 : 1 inside each domain.
mix:
  seq_length: 4096
  samples: 52000
  data_root: data
channels:
  finance:
    samples: 10000
    slow:
      ratio: 3
      credit: {prefix: finance/credit}
      alignment: {prefix: finance/alignment}
      qa: {prefix: finance/qa}
      openfindata: {prefix: finance/openfindata}
      textgen: {prefix: finance/textgen}
    fast: {ratio: 1, prefix: finance/fast}
  math:
    samples: 10000
    slow: {ratio: 3, prefix: math/slow}
    fast: {ratio: 1, prefix: math/fast}
  code:
    samples: 10000
    slow: {ratio: 3, prefix: code/slow}
    fast: {ratio: 1, prefix: code/fast}
  logic:
    samples: 10000
    slow: {ratio: 3, prefix: logic/slow}
    fast: {ratio: 1, prefix: logic/fast}
  general:
    ratio: 1
    dialogue: {prefix: general/dialogue}
    web: {prefix: general/web}
"""


def write_example(outdir: str | Path, *, vocab_size: int = 32000, seed: int = 0) -> Path:
    """Build the datasets under ``outdir/data`` and write both plans; return ``outdir``."""
    import warnings

    import numpy as np
    import torch

    with warnings.catch_warnings():  # "Transformer Engine and Apex are not installed"
        warnings.simplefilter("ignore", UserWarning)
        from megatron.core.datasets.indexed_dataset import DType, IndexedDatasetBuilder

    out = Path(outdir)
    rng = np.random.default_rng(seed)
    for name, (documents, low, high) in SOURCES.items():
        prefix = out / "data" / name
        prefix.parent.mkdir(parents=True, exist_ok=True)
        builder = IndexedDatasetBuilder(str(prefix) + ".bin", dtype=DType.optimal_dtype(vocab_size))
        for length in rng.integers(low, high + 1, size=documents):
            doc = rng.integers(0, vocab_size - 1, size=int(length))
            doc[-1] = vocab_size - 1  # EOD ends each document, as preprocess_data.py writes
            builder.add_document(torch.from_numpy(doc), [int(length)])
        builder.finalize(str(prefix) + ".idx")
    (out / "seed_plan.toml").write_text(TOKENS_PLAN, encoding="utf-8")
    (out / "seed_plan_samples.yaml").write_text(SAMPLES_PLAN, encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m trainer_hook.mix.example OUTDIR", file=sys.stderr)
        return 2
    out = write_example(args[0])
    print(f"wrote {out}/seed_plan.toml, {out}/seed_plan_samples.yaml and {out}/data/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
