"""`lossradar mix plan` end to end, and the worked example of docs/mix.md, re-run and compared."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from trainer_hook.mix.cli import main
from trainer_hook.mix.example import write_example
from trainer_hook.mix.resolve import ResolvedPlan

from .conftest import PLAN

pytestmark = pytest.mark.megatron

ROOT = Path(__file__).resolve().parents[3]
DOC_DIR = "/tmp/mix-example"


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["mix", *argv])
    return code, out.getvalue(), err.getvalue()


def test_plan_prints_the_tree_and_data_path_and_writes_both_files(
    planned: ResolvedPlan, tmp_path: Path
) -> None:
    code, out, err = run_cli(
        "plan",
        str(tmp_path / "plan.toml"),
        "--channel-map",
        str(tmp_path / "map.json"),
    )
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == (
        f"plan {tmp_path / 'plan.toml'}: 160,000 tokens in 5 prefixes; seq_length 16 -> "
        "--train-samples 10000"
    )
    rows = {line.split()[0]: line.split() for line in lines[3:10]}
    assert rows["qa"] == ["qa", "11.25%", "18,000", "360", "1,125", "900", "18", "20.00"]
    assert rows["finance"][1:3] == ["30.00%", "48,000"]
    data = tmp_path / "data"
    assert lines[-2] == (
        f"--data-path 0.1125 {data}/credit 0.1125 {data}/qa 0.075 {data}/fin_fast "
        f"0.2 {data}/math 0.5 {data}/general --train-samples 10000"
    )
    assert lines[-1] == f"channel map: {tmp_path / 'map.json'}"
    assert (tmp_path / "map.json").is_file()

    code, out, _ = run_cli(
        "plan", str(tmp_path / "plan.toml"), "--data-args-path", str(tmp_path / "blend.txt")
    )
    assert code == 0
    assert (
        out.splitlines()[-1] == f"--data-args-path {tmp_path / 'blend.txt'} --train-samples 10000"
    )
    assert (tmp_path / "blend.txt").read_text().splitlines()[3] == f"0.2 {data}/math"


def test_strict_fails_on_warnings_and_errors_exit_2(planned: ResolvedPlan, tmp_path: Path) -> None:
    strict = tmp_path / "strict.toml"
    strict.write_text(PLAN.replace("max_epochs = 1000", "max_epochs = 10"))
    code, out, _ = run_cli("plan", str(strict))
    assert code == 0
    assert "warning (repeats): finance/slow/credit: repeats 20.00 times" in out
    assert run_cli("plan", str(strict), "--strict")[0] == 1

    (tmp_path / "data" / "qa.idx").unlink()
    code, out, err = run_cli("plan", str(tmp_path / "plan.toml"))
    assert (code, out) == (2, "")
    assert err.startswith("lossradar mix: error: entry 'finance/slow/qa': prefix ")
    assert f"no {tmp_path / 'data' / 'qa.idx'}" in err


def _blocks(markdown: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", markdown, flags=re.S)


def test_docs_worked_example_prints_what_the_doc_shows(tmp_path: Path) -> None:
    """Re-run docs/mix.md's example in tmp_path; the outputs must equal the doc's blocks."""
    doc = (ROOT / "docs" / "mix.md").read_text()
    write_example(tmp_path)
    here = str(tmp_path)
    assert _blocks(doc, "toml")[1] == (tmp_path / "seed_plan.toml").read_text()

    code, out, err = run_cli(
        "plan", f"{here}/seed_plan.toml", "--channel-map", f"{here}/channels.json"
    )
    assert (code, err) == (0, "")
    plan_block, report_block = _blocks(doc, "text")
    assert out.replace(here, DOC_DIR) == plan_block

    snippet = next(b for b in _blocks(doc, "bash") if "python - <<'EOF'" in b)
    python = snippet.split("python - <<'EOF'\n", 1)[1].split("\nEOF\n", 1)[0]
    subprocess.run([sys.executable, "-c", python.replace(DOC_DIR, here)], check=True)
    code, out, _ = run_cli("report", f"{here}/run.jsonl", "--plan", f"{here}/seed_plan.toml")
    assert code == 0
    assert out.replace(here, DOC_DIR) == report_block
