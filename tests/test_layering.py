"""The data flow of DESIGN.md §3: the library (safecb/) never imports the store or the UI, and the
store never imports the UI. Checked on the source, so a lazy import inside a function counts too."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def imported_top_level_packages(package: str, root: Path = ROOT) -> dict[str, set[str]]:
    """{module path: top-level names it imports}, for every module under `package`."""
    found = {}
    for path in sorted((root / package).rglob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(root))] = names
    return found


@pytest.mark.parametrize("package, forbidden", [("safecb", {"ui", "db", "gradio", "sqlalchemy"}), ("db", {"ui", "gradio"})])
def test_no_import_against_the_data_flow(package, forbidden):
    modules = imported_top_level_packages(package)
    assert len(modules) > 3, f"no modules found under {package}/"
    offending = {path: sorted(names & forbidden) for path, names in modules.items() if names & forbidden}
    assert offending == {}


def test_the_check_sees_lazy_imports(tmp_path):
    """The scanner finds an import hidden inside a function (the way the old entry point did it)."""
    pkg = tmp_path / "lib"
    pkg.mkdir()
    for i in range(4):
        (pkg / f"m{i}.py").write_text("x = 1\n")
    (pkg / "entry.py").write_text("def run():\n    from ui.runner import worker_main\n    return worker_main\n")
    assert imported_top_level_packages("lib", tmp_path)["lib/entry.py"] == {"ui"}
