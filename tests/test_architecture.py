"""The package's layers (docs/architecture.md): no import cycles, no import from a lower layer to a higher one.

Every module under src/xraygan is parsed with ``ast``; every import counts, including deferred
ones inside functions. Run with ``-s`` to see the import graph's problems printed.
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "xraygan"

# lowest first; a module belongs to the layer of its longest matching prefix
LAYERS: list[tuple[str, list[str]]] = [
    ("base", ["xraygan", "xraygan.errors", "xraygan.options", "xraygan.presets", "xraygan.utils"]),
    ("data", ["xraygan.data", "xraygan.export.dicom"]),
    ("models", ["xraygan.models"]),
    ("augment", ["xraygan.augment"]),
    ("training", ["xraygan.training"]),
    ("run", ["xraygan.pretrained", "xraygan.run", "xraygan.generate"]),
    ("metrics", ["xraygan.metrics"]),
    ("report", ["xraygan.report"]),
    ("workflow", ["xraygan.workflow"]),
    ("experiments", ["xraygan.experiments"]),
    ("apps", ["xraygan.demo", "xraygan.export"]),
    ("commands", ["xraygan.commands"]),
    ("cli", ["xraygan.cli", "xraygan.__main__"]),
]

# Import cycles tolerated for now (none: experiments.runner <-> experiments.summary was removed by
# issue 13's wiring; the runner loads the unit records and hands them to the summary).
KNOWN_CYCLES: set[frozenset[str]] = set()


def modules(root: Path = PACKAGE) -> dict[str, Path]:
    out = {}
    for p in sorted(root.rglob("*.py")):
        parts = list(p.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def import_graph(root: Path = PACKAGE) -> dict[str, dict[str, int]]:
    """module -> {imported xraygan module: first line}, every import statement (deferred ones too)."""
    mods = modules(root)

    def known(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, dict[str, int]] = {}
    for mod, path in mods.items():
        pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        edges = graph.setdefault(mod, {})
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                    base_name = ".".join(base + ([node.module] if node.module else []))
                else:
                    base_name = node.module or ""
                # `from pkg import mod` imports pkg.mod; `from pkg import name` imports pkg
                targets = [f"{base_name}.{a.name}" if f"{base_name}.{a.name}" in mods else base_name for a in node.names]
            for t in targets:
                t = known(t) if t.startswith("xraygan") else None
                if t and t != mod:
                    edges.setdefault(t, node.lineno)
    return graph


def layer_of(mod: str) -> int:
    best, level = -1, -1
    for i, (_, prefixes) in enumerate(LAYERS):
        for pre in prefixes:
            if (mod == pre or mod.startswith(pre + ".")) and len(pre) > best:
                best, level = len(pre), i
    assert level >= 0, f"{mod} is in no layer; add it to LAYERS and docs/architecture.md"
    return level


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def upward_imports(graph: dict[str, dict[str, int]]) -> list[str]:
    out = []
    for mod, edges in sorted(graph.items()):
        for target, line in sorted(edges.items()):
            if mod == "xraygan" and target.startswith("xraygan."):
                continue  # the package's lazy public names (strings, not imports) are not in the graph anyway
            lo, hi = layer_of(mod), layer_of(target)
            if hi > lo:
                out.append(f"{mod}:{line} ({LAYERS[lo][0]}) imports {target} ({LAYERS[hi][0]})")
    return out


def describe(root: Path = PACKAGE) -> tuple[list[list[str]], list[str]]:
    graph = import_graph(root)
    found_cycles, upward = cycles(graph), upward_imports(graph)
    print(f"{len(graph)} modules, {sum(map(len, graph.values()))} imports")
    print(f"import cycles: {len(found_cycles)}")
    for c in found_cycles:
        print("  " + " <-> ".join(c) + ("  (known exception, see KNOWN_CYCLES)" if frozenset(c) in KNOWN_CYCLES else ""))
    print(f"upward imports: {len(upward)}")
    for u in upward:
        print("  " + u)
    return found_cycles, upward


def test_every_module_has_a_layer():
    for mod in modules():
        layer_of(mod)


def test_no_import_cycles():
    found, _ = describe()
    unexpected = [c for c in found if frozenset(c) not in KNOWN_CYCLES]
    assert not unexpected, f"import cycles (deferred imports included): {unexpected}"


def test_no_upward_imports():
    _, upward = describe()
    assert not upward, "imports from a lower layer to a higher one:\n" + "\n".join(upward)


def test_the_checker_sees_deferred_imports_and_cycles(tmp_path):
    pkg = tmp_path / "xraygan"
    (pkg / "training").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "training" / "__init__.py").write_text("")
    (pkg / "training" / "loop.py").write_text("def f():\n    from xraygan.metrics import hook\n")
    (pkg / "metrics").mkdir()
    (pkg / "metrics" / "__init__.py").write_text("")
    (pkg / "metrics" / "hook.py").write_text("from ..training import loop\n")
    found, upward = describe(pkg)
    assert found == [["xraygan.metrics.hook", "xraygan.training.loop"]]
    assert upward == ["xraygan.training.loop:2 (training) imports xraygan.metrics.hook (metrics)"]


if __name__ == "__main__":  # python tests/test_architecture.py [SRC/xraygan]: print the findings
    import sys

    describe(Path(sys.argv[1]) if len(sys.argv) > 1 else PACKAGE)
