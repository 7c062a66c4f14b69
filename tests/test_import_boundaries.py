"""The three parts keep one direction of dependency, proven in fresh interpreters.

`trainer_hook` must import with only torch and numpy (plus the standard library and torch's own
dependencies); the server and the dashboard must never import torch.
"""

from __future__ import annotations

import pkgutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Third-party top-level modules that torch itself imports.
TORCH_DEPS = {
    "torch",
    "numpy",
    "sympy",
    "mpmath",
    "networkx",
    "jinja2",
    "markupsafe",
    "filelock",
    "fsspec",
    "typing_extensions",
    "functorch",
    "torchgen",
    "opt_einsum",
}

_BLOCKER = textwrap.dedent(
    """
    import importlib.abc, sys
    allowed = set(sys.stdlib_module_names) | ALLOWED
    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            top = name.split(".")[0]
            if top not in allowed:
                raise ModuleNotFoundError(f"forbidden import of {name!r}")
            return None
    sys.meta_path.insert(0, Blocker())
    """
)


def _modules(package: str, skip: tuple[str, ...] = ()) -> list[str]:
    pkg_dir = ROOT / package
    names = [package]
    for info in pkgutil.walk_packages([str(pkg_dir)], prefix=f"{package}."):
        if info.name.endswith(".__main__"):
            continue  # running a package's __main__ starts its program
        if not any(info.name.startswith(s) for s in skip):
            names.append(info.name)
    return names


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def test_trainer_hook_imports_with_only_torch_and_numpy() -> None:
    # The Megatron adapter needs megatron-core by definition; everything else needs torch only.
    modules = _modules("trainer_hook", skip=("trainer_hook.megatron",))
    allowed = TORCH_DEPS | {"trainer_hook"}
    code = _BLOCKER.replace("ALLOWED", repr(allowed)) + "".join(f"import {m}\n" for m in modules)
    proc = _run(code)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("package", ["server", "dashboard"])
def test_service_side_never_imports_torch(package: str) -> None:
    modules = _modules(package)
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in modules)
        + (
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "{'torch', 'trainer_hook', 'megatron'})\n"
            "assert not bad, bad\n"
        )
    )
    proc = _run(code)
    assert proc.returncode == 0, proc.stderr
