"""The package's import graph: layers point one way and no module imports itself back.

Every `import transferjax...` statement counts, at module level or inside a function, so a
function-local import cannot hide a cycle.
"""

from __future__ import annotations

import ast
import pathlib

import transferjax

ROOT = pathlib.Path(transferjax.__file__).resolve().parent
# Each layer may import only the layers before it (and itself).
LAYERS = (
    "errors",
    "config",
    "data",
    "models",
    "align",
    "methods",
    "eval",
    "diagnostics",
    "train",
    "reports",
    "cli",
)


def _module_name(path: pathlib.Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph() -> dict[str, set[str]]:
    """{module: transferjax modules it imports} over every module of the package."""
    modules = {_module_name(p): p for p in ROOT.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(
                        package.split(".")[: len(package.split(".")) - node.level + 1]
                        + ([base] if base else [])
                    )
                # `from pkg import sub` imports the module pkg.sub; `from mod import name`, mod
                targets = [
                    f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                    for a in node.names
                ]
            else:
                continue
            deps.update(t for t in targets if t in modules and t != name)
        graph[name] = deps
    return graph


def layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as a list of nodes, or None."""
    state, stack = {}, []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m) :] + [m]
            if m not in state:
                found = visit(m)
                if found:
                    return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state:
            found = visit(n)
            if found:
                return found
    return None


def test_find_cycle_finds_a_cycle_and_accepts_a_dag():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle_between_modules():
    graph = import_graph()
    graph.pop("transferjax", None)  # the package root re-exports; nothing imports it back
    graph = {k: {d for d in v if d != "transferjax"} for k, v in graph.items()}
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"


def test_layers_point_one_way():
    bad = []
    for mod, deps in import_graph().items():
        src = layer(mod)
        if src not in LAYERS:
            continue
        for dep in deps:
            dst = layer(dep)
            if dst in LAYERS and LAYERS.index(dst) > LAYERS.index(src):
                bad.append(f"{mod} -> {dep}")
    assert not bad, "imports against the layer order " + " < ".join(LAYERS) + ":\n" + "\n".join(bad)


def test_every_module_sits_in_a_layer():
    stray = sorted(m for m in import_graph() if m != "transferjax" and layer(m) not in LAYERS)
    assert not stray, f"modules outside the layers {LAYERS}: {stray}"
