"""The three rooms keep their one-way doors: advisor ← engine ← tui, and inside the engine the
run record (`engine.record`) is the light part every other package — and the TUI — builds on.

Static: walk every module's imports. Dynamic: import the light entry points in a fresh
interpreter and check that no heavy library was loaded."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = {"torch", "transformers", "trl", "peft", "bitsandbytes", "accelerate", "datasets"}
UI = {"textual", "textual_plotext", "plotext"}
TUI_MAY_IMPORT_FROM_ENGINE = "engine.record"  # a package boundary, not a list of modules


def _imports(path: Path, top_level_only: bool = False):
    """(module name, line) for each import; top_level_only skips imports inside functions."""
    tree = ast.parse(path.read_text(), filename=str(path))
    nodes = tree.body if top_level_only else ast.walk(tree)
    for node in nodes:
        if isinstance(node, ast.Import):
            yield from ((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module, node.lineno


def _modules(package: str):
    return sorted((ROOT / package).rglob("*.py"))


def _root(name: str) -> str:
    return name.split(".")[0]


@pytest.mark.parametrize("path", _modules("advisor"), ids=lambda p: p.name)
def test_advisor_imports_no_torch_textual_engine_or_tui(path):
    bad = [(n, line) for n, line in _imports(path) if _root(n) in HEAVY | UI | {"engine", "tui"}]
    assert bad == [], f"{path.relative_to(ROOT)} imports {bad}"


@pytest.mark.parametrize("path", _modules("engine"), ids=lambda p: str(p.relative_to(ROOT)))
def test_engine_never_imports_ui_and_heavy_only_lazily(path):
    assert [(n, l) for n, l in _imports(path) if _root(n) in UI | {"tui"}] == []
    eager = [(n, l) for n, l in _imports(path, top_level_only=True) if _root(n) in HEAVY]
    assert eager == [], f"{path.relative_to(ROOT)} imports heavy libraries at module level: {eager}"


@pytest.mark.parametrize("path", _modules("engine/record"), ids=lambda p: str(p.relative_to(ROOT)))
def test_run_record_imports_no_heavy_library_and_nothing_else_of_the_engine(path):
    """The record is what the TUI reads: it may not reach into training, tasks or commands."""
    assert [(n, l) for n, l in _imports(path) if _root(n) in HEAVY] == []
    engine = [(n, l) for n, l in _imports(path) if _root(n) == "engine" and not n.startswith("engine.record")]
    assert engine == [], f"{path.relative_to(ROOT)} reaches outside the run record: {engine}"


@pytest.mark.parametrize("path", _modules("tui"), ids=lambda p: str(p.relative_to(ROOT)))
def test_tui_imports_no_heavy_library_and_only_light_engine_modules(path):
    assert [(n, l) for n, l in _imports(path) if _root(n) in HEAVY] == []
    engine = [(n, l) for n, l in _imports(path) if _root(n) == "engine"
              and not (n == TUI_MAY_IMPORT_FROM_ENGINE or n.startswith(TUI_MAY_IMPORT_FROM_ENGINE + "."))]
    assert engine == [], f"{path.relative_to(ROOT)} reaches into the engine: {engine}"


def _loaded_after(code: str) -> set[str]:
    probe = code + "\nimport sys; print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True)
    return set(out.stdout.split())


def test_import_advisor_loads_neither_torch_nor_textual():
    assert _loaded_after("import advisor") & (HEAVY | UI) == set()


def test_engine_cli_parser_loads_no_heavy_library():
    assert _loaded_after("from engine.cli import build_parser; build_parser()") & (HEAVY | UI) == set()


def test_import_tui_app_loads_no_torch():
    assert _loaded_after("import tui.app") & HEAVY == set()


SHELL_CALLS = {("os", "system"), ("os", "popen"), ("subprocess", "getoutput"), ("subprocess", "getstatusoutput")}


@pytest.mark.parametrize("path", _modules("advisor") + _modules("engine") + _modules("tui"),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_no_shell_is_ever_invoked(path):
    """User strings reach child processes only as argv lists: no shell=True, os.system or popen."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and \
                (func.value.id, func.attr) in SHELL_CALLS:
            found.append((f"{func.value.id}.{func.attr}", node.lineno))
        for keyword in node.keywords:
            if keyword.arg == "shell" and not (isinstance(keyword.value, ast.Constant) and keyword.value.value is False):
                found.append(("shell=", node.lineno))
    assert found == [], f"{path.relative_to(ROOT)}: {found}"


@pytest.mark.parametrize("path", _modules("engine"), ids=lambda p: str(p.relative_to(ROOT)))
def test_remote_code_and_pickles_stay_off(path):
    """trust_remote_code is only ever the user's flag, and nothing is unpickled."""
    source = path.read_text()
    assert "trust_remote_code=True" not in source.replace(" ", "")
    tree = ast.parse(source, filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load" \
                and isinstance(node.func.value, ast.Name) and node.func.value.id in ("torch", "pickle"):
            weights_only = [k for k in node.keywords if k.arg == "weights_only"]
            assert node.func.value.id == "torch" and weights_only and weights_only[0].value.value is True, \
                f"{path.relative_to(ROOT)}:{node.lineno} loads a pickle"
