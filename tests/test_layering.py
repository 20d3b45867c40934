"""The folder rules of docs/architecture.md, checked on the source (a lazy import inside a function
counts too, and relative imports are resolved):

- the library (`safecb`) never imports the store, the jobs layer, the UI, gradio or sqlalchemy;
- the Safe-CB loop (`safecb.engine`, its in-loop red team `safecb.engine.redteam` included), VAπ
  (`safecb.vapi`) and the model side (`safecb.models`) never import evaluation (`safecb.eval`), so no
  oracle judgment can steer a round or choose the prompts it mines;
- the jobs layer never imports the UI or gradio, so the headless worker never loads the web framework;
- the store never imports the UI, the jobs layer or gradio;
- the report (`safecb.report`) recomputes figures from result rows alone: it never imports torch, a
  model, the loop or evaluation, so it cannot measure anything anew.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

RULES = [  # (a folder, module prefixes nothing under it may import)
    ("safecb", ("ui", "jobs", "db", "gradio", "sqlalchemy")),
    ("safecb/engine", ("safecb.eval",)),
    ("safecb/vapi", ("safecb.eval",)),
    ("safecb/models", ("safecb.eval",)),
    ("jobs", ("ui", "gradio")),
    ("db", ("ui", "jobs", "gradio")),
    ("safecb/report", ("torch", "transformers", "safecb.models", "safecb.engine", "safecb.eval", "safecb.vapi",
                       "safecb.bench")),
]


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, root: Path) -> set[str]:
    """Every module `path` imports, as absolute dotted names; `from a import b` gives both `a` and
    `a.b`, since b may be a module."""
    own = module_name(path, root).split(".")
    package = own if path.name == "__init__.py" else own[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            found.add(module)
            found |= {f"{module}.{alias.name}" for alias in node.names}
    return found


def violations(folder: str, forbidden: tuple[str, ...], root: Path = ROOT) -> dict[str, list[str]]:
    """{module path: forbidden modules it imports} for every module under `folder`."""
    out = {}
    for path in sorted((root / folder).rglob("*.py")):
        bad = sorted(m for m in imported_modules(path, root)
                     if any(m == f or m.startswith(f + ".") for f in forbidden))
        if bad:
            out[str(path.relative_to(root))] = bad
    return out


@pytest.mark.parametrize("folder, forbidden", RULES, ids=[folder for folder, _ in RULES])
def test_folder_rule_holds(folder, forbidden):
    assert len(list((ROOT / folder).rglob("*.py"))) >= 3, f"no modules found under {folder}/"
    assert violations(folder, forbidden) == {}


def test_the_in_loop_red_team_is_under_the_rule_that_keeps_the_oracle_out():
    """Self-red-teaming (safecb/engine/redteam.py) decides which prompts a round mines, so it must live
    where the folder rule forbids evaluation, and import none of it."""
    path = ROOT / "safecb" / "engine" / "redteam.py"
    assert path.is_file()
    covering = [forbidden for folder, forbidden in RULES if path.is_relative_to(ROOT / folder)]
    assert any("safecb.eval" in forbidden for forbidden in covering)
    assert not [m for m in imported_modules(path, ROOT) if m == "safecb.eval" or m.startswith("safecb.eval.")]
    assert "safecb/engine/redteam.py" not in violations("safecb/engine", ("safecb.eval",))


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_a_relative_import_of_evaluation_from_the_loop_is_caught(tmp_path):
    root = _tree(tmp_path, {
        "safecb/__init__.py": "", "safecb/eval/__init__.py": "", "safecb/eval/toy_oracle.py": "",
        "safecb/engine/__init__.py": "",
        "safecb/engine/driver.py": "def judge():\n    from ..eval.toy_oracle import Oracle\n    return Oracle\n",
        "safecb/engine/mining.py": "from .. import eval as evaluation\n",
        "safecb/engine/space.py": "from ..metrics import rate\n",
    })
    found = violations("safecb/engine", ("safecb.eval",), root)
    assert found == {"safecb/engine/driver.py": ["safecb.eval.toy_oracle", "safecb.eval.toy_oracle.Oracle"],
                     "safecb/engine/mining.py": ["safecb.eval"]}


def test_a_lazy_gradio_import_in_the_jobs_layer_is_caught(tmp_path):
    root = _tree(tmp_path, {"jobs/__init__.py": "", "jobs/runner.py": "def run():\n    import gradio as gr\n    return gr\n",
                            "jobs/__main__.py": "from ui.common import upscale\n"})
    assert violations("jobs", ("ui", "gradio"), root) == {"jobs/__main__.py": ["ui.common", "ui.common.upscale"],
                                                        "jobs/runner.py": ["gradio"]}


def test_the_worker_loads_without_gradio():
    import subprocess
    import sys

    code = "import jobs.runner, jobs.__main__, sys; assert 'gradio' not in sys.modules and 'ui' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
