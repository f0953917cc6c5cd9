"""The core's imports go one way: down the layers below, never up, and never round in a circle.

Every import in fer_core counts, the ones inside functions too: a deferred import still
ties the two modules together. docs/architecture.md draws the same layers.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from fnmatch import fnmatch
from pathlib import Path

from .conftest import REPO

CORE = REPO / "fer_core"

# Top to bottom: a module may import from its own layer or any layer below it.
LAYERS: list[tuple[str, list[str]]] = [
    ("entry points", ["fer_core.__main__", "fer_core.cli", "fer_core.cli.*"]),
    ("shipping", ["fer_core.promote"]),
    ("workflows", ["fer_core.train", "fer_core.video", "fer_core.serve"]),
    ("training parts", ["fer_core.callbacks", "fer_core.distill", "fer_core.pipeline", "fer_core.augment"]),
    ("model use", ["fer_core.evaluate", "fer_core.explain", "fer_core.inference"]),
    ("engine", ["fer_core.engine"]),
    ("model tools", ["fer_core.export", "fer_core.finalize", "fer_core.quality"]),
    ("data and models", ["fer_core.data", "fer_core.model", "fer_core.faces", "fer_core.jobs", "fer_core.ensemble"]),
    (
        "files and settings",
        [
            "fer_core.config",
            "fer_core.runs",
            "fer_core.card",
            "fer_core.images",
            "fer_core.preprocess",
            "fer_core.metrics",
            "fer_core.drawing",
            "fer_core.blazeface",
            "fer_core.tracking",
        ],
    ),
    ("foundation", ["fer_core", "fer_core.constants", "fer_core.errors", "fer_core.jsonio", "fer_core.hardware"]),
]
# Importing these must not load them (TensorFlow/Keras take seconds; the dashboard imports the core).
HEAVY = ("tensorflow", "keras", "streamlit")
# The modules that import Keras when imported, because they define Keras classes; the rest of the
# core imports them only inside functions. {module: why}
KERAS_AT_IMPORT = {
    "fer_core.model": "the model definitions are Keras layers and models",
    "fer_core.callbacks": "the training callbacks derive from keras.callbacks.Callback",
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def core_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(CORE.rglob("*.py"))}


def layer_of(module: str) -> int:
    """Index in LAYERS, 0 at the top; KeyError for a module no layer names."""
    for i, (_, patterns) in enumerate(LAYERS):
        if any(fnmatch(module, pattern) for pattern in patterns):
            return i
    raise KeyError(module)


def imports_of(module: str, path: Path, known: set[str]) -> list[tuple[int, str]]:
    """(line, imported fer_core module) for every import in the file, at any depth."""
    out = []
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            # `from fer_core import runs` imports the module fer_core.runs
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        out += [(node.lineno, n) for n in names if n == "fer_core" or n.startswith("fer_core.")]
    return out


def import_graph() -> dict[str, list[tuple[int, str]]]:
    modules = core_modules()
    return {m: imports_of(m, p, set(modules)) for m, p in modules.items()}


def upward_imports(graph: dict[str, list[tuple[int, str]]]) -> list[str]:
    """Every import that points to a higher layer than its module's, as 'a:line -> b'."""
    return [
        f"{m}:{line} -> {target} ({LAYERS[layer_of(m)][0]} imports {LAYERS[layer_of(target)][0]})"
        for m, targets in graph.items()
        for line, target in targets
        if layer_of(target) < layer_of(m)
    ]


def cycles(graph: dict[str, list[tuple[int, str]]]) -> list[list[str]]:
    """Import cycles among the modules (within a layer; across layers the order forbids them)."""
    edges = {m: {t for _, t in targets if t in graph and t != m} for m, targets in graph.items()}
    found, state = [], {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = "open"
        for t in sorted(edges[m]):
            if state.get(t) == "open":
                found.append([*path[path.index(t) :], t])
            elif t not in state:
                visit(t, [*path, t])
        state[m] = "done"

    for m in sorted(edges):
        if m not in state:
            visit(m, [m])
    return found


def test_every_module_has_a_layer():
    missing = []
    for m in core_modules():
        try:
            layer_of(m)
        except KeyError:
            missing.append(m)
    assert not missing, f"add these to LAYERS (and docs/architecture.md): {missing}"


def test_no_import_points_up_a_layer():
    assert upward_imports(import_graph()) == []


def test_no_import_cycle():
    assert cycles(import_graph()) == []


def test_the_check_catches_an_evaluate_train_cycle():
    """evaluate importing train (for the run folder's kept epochs) while train imports evaluate."""
    graph = {
        "fer_core.evaluate": [(10, "fer_core.train")],
        "fer_core.train": [(20, "fer_core.evaluate")],
    }
    assert upward_imports(graph) == [
        "fer_core.evaluate:10 -> fer_core.train (model use imports workflows)",
    ]
    assert cycles(graph) == [["fer_core.evaluate", "fer_core.train", "fer_core.evaluate"]]


def test_function_level_imports_are_read_too(tmp_path):
    src = tmp_path / "mod.py"
    src.write_text("import os\n\ndef f():\n    from fer_core.train import train\n    from fer_core import runs\n")
    found = imports_of("fer_core.evaluate", src, {"fer_core.runs"})
    assert found == [(4, "fer_core.train"), (5, "fer_core.runs")]


def test_importing_the_core_stays_light():
    """Every module but those of KERAS_AT_IMPORT imports without TensorFlow, Keras or Streamlit."""
    modules = [m for m in core_modules() if m != "fer_core.__main__" and m not in KERAS_AT_IMPORT]
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})\n"
        "assert not bad, bad[:5]\n"
        "print('ok')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]


# A function longer than this no longer fits on a screen with its docstring: split it into named steps.
MAX_FUNCTION_LINES = 80


def test_no_core_function_is_longer_than_a_screen():
    long = [
        f"{module}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for module, path in core_modules().items()
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert long == []
