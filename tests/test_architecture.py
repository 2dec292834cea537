"""The package's shape, checked: imports go one way, and modules and functions stay small.

Layers (a package may import only those listed for it; ``cli`` may import anything)::

    errors, _version <- types <- http <- backends <- runner <- executor <- api, cli
    job (may read backends' pure rules and models), input <- job, metrics; output <- job, input, metrics
    sim <- backends' rules and models, http (never the runner, never a client)
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "tgbatch"
LEAVES = {"errors", "_version"}
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "_version": set(),
    "types": LEAVES,
    "http": LEAVES | {"types"},
    "backends": LEAVES | {"types", "http"},
    "client": LEAVES | {"types", "http", "backends"},
    "job": LEAVES | {"types", "backends", "score"},  # score: only score.spec, checked below
    "metrics": LEAVES | {"types"},
    "input": LEAVES | {"types", "job"},
    "output": LEAVES | {"types", "job", "input", "metrics"},
    "status": LEAVES | {"types", "output", "metrics"},
    "export": LEAVES | {"types", "job", "input", "output", "metrics"},
    "runner": LEAVES | {"types", "http", "backends", "job", "input", "output", "metrics"},
    "executor": LEAVES | {"types", "http", "backends", "job", "input", "output", "metrics", "runner"},
    "api": LEAVES | {"types", "job", "runner", "executor"},
    "sim": LEAVES | {"types", "http", "backends"},
    "score": LEAVES | {"types", "job", "output"},
}
#: what job/ and sim/ may take from backends: the pure rules and models, never a client or a transport
PURE_BACKEND_MODULES = ("rules", "models")


def _modules() -> list[tuple[str, Path]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found.append((".".join(parts[:-1] if parts[-1] == "__init__" else parts), path))
    return found


def _imports(path: Path) -> list[tuple[str, int]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, node.lineno))
        elif isinstance(node, ast.Import):
            found.extend((alias.name, node.lineno) for alias in node.names)
    return [(name, line) for name, line in found if name == "tgbatch" or name.startswith("tgbatch.")]


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1].removesuffix(".py") if len(parts) > 1 else ""


def test_imports_go_one_way() -> None:
    wrong = []
    for module, path in _modules():
        layer = _layer(module)
        if layer in ("", "cli", "__main__"):
            continue
        for target, line in _imports(path):
            other = _layer(target)
            if other in ("", layer):
                if other == "":
                    wrong.append(f"{module}:{line} imports the package root (a cycle through its lazy names)")
                continue
            if other not in ALLOWED[layer]:
                wrong.append(f"{module}:{line} ({layer}) imports {target} ({other})")
            elif layer == "job" and other == "score" and target != "tgbatch.score.spec":
                wrong.append(f"{module}:{line} (job) imports {target}: only score.spec (pure pydantic) is allowed")
            elif layer in ("job", "sim") and other == "backends" and target.rsplit(".", 1)[-1] not in PURE_BACKEND_MODULES:
                wrong.append(f"{module}:{line} ({layer}) imports {target}: only backends' rules and models are pure")
    assert not wrong, "\n".join(wrong)


def test_every_package_has_a_layer() -> None:
    layers = {_layer(m) for m, _ in _modules()} - {"", "cli", "__main__"}
    assert layers <= set(ALLOWED), layers - set(ALLOWED)


def test_modules_and_functions_stay_small() -> None:
    """About 400 lines a module and 50 a function: past that a concept wants its own home."""
    big = []
    for module, path in _modules():
        text = path.read_text(encoding="utf-8")
        if len(text.splitlines()) > 420:
            big.append(f"{module}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                # the body: a CLI command's option declarations live in its signature, and a docstring is prose
                body = node.body[1:] if ast.get_docstring(node) and len(node.body) > 1 else node.body
                length = (node.end_lineno or node.lineno) - body[0].lineno + 1
                if length > 55:
                    big.append(f"{module}.{node.name}: {length} lines")
    assert not big, "\n".join(big)
