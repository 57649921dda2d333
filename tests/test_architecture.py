"""The package's layers, checked from the source (README: layout):

    engine/    NumPy only: imports lossbench.engine.*, lossbench.registry, lossbench.errors
    data/      never imports sweep/, analysis/, cli or api
    sweep/     never imports analysis/, cli or api
    analysis/  never imports sweep/ (it reads results through what it is handed)

and no import cycles among lossbench's modules. Imports inside functions count: they run
too, just later. The import graph comes from the AST of every module under lossbench/.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import lossbench

PACKAGE = Path(lossbench.__file__).parent
ROOT = PACKAGE.parent


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


FILES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
MODULES = set(FILES)


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the module it loads: a lossbench module, or a top-level name outside
    line: int
    text: str  # the import statement as written

    def __str__(self) -> str:
        return f"{self.source} (line {self.line}: {self.text}) -> {self.target}"


def resolve(name: str) -> str:
    """The lossbench module `name` loads: itself, the engine module a short alias stands
    for (lossbench.losses -> lossbench.engine.losses), or its longest module prefix."""
    parts = name.split(".")
    if len(parts) >= 2 and parts[0] == "lossbench" and parts[1] in lossbench.ALIASES:
        parts = lossbench.ALIASES[parts[1]].split(".") + parts[2:]
    while parts and ".".join(parts) not in MODULES:
        parts.pop()
    return ".".join(parts)


def imports_of(module: str) -> list[Import]:
    path = FILES[module]
    source = path.read_text()
    is_package = path.name == "__init__.py"
    out = []
    for node in ast.walk(ast.parse(source, str(path))):  # every import, also those inside functions
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's package
                pkg = module.split(".") if is_package else module.split(".")[:-1]
                pkg = pkg[: len(pkg) - (node.level - 1)]
                base = ".".join(pkg + ([base] if base else []))
            # `from pkg import sub` loads pkg.sub when that is a module (resolve picks it), else pkg
            names = [f"{base}.{a.name}" for a in node.names] if base.startswith("lossbench") else [base]
        else:
            continue
        text = " ".join((ast.get_source_segment(source, node) or "").split())
        targets = [resolve(n) if n.split(".")[0] == "lossbench" else n.split(".")[0] for n in names]
        out += [Import(module, t, node.lineno, text) for t in dict.fromkeys(targets)]
    return out


IMPORTS = {m: imports_of(m) for m in sorted(MODULES)}


def inside(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def violations(layer: str, allowed) -> list[str]:
    return [str(i) for m, imps in IMPORTS.items() if inside(m, layer) for i in imps if not allowed(i.target)]


# ---------------------------------------------------------------- (i) engine loads no yaml/pandas/rich

ENGINE_MODULES = sorted(m for m in MODULES if inside(m, "lossbench.engine"))


@pytest.mark.parametrize("module", ENGINE_MODULES)
def test_importing_an_engine_module_loads_no_yaml_pandas_or_rich(module):
    code = (f"import importlib, sys; importlib.import_module({module!r}); "
            "print(' '.join(m for m in ('yaml', 'pandas', 'rich') if m in sys.modules))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [], f"import {module} loaded {r.stdout.split()}"


# ---------------------------------------------------------------- (ii) the layers

STDLIB = set(sys.stdlib_module_names) | {"__future__"}


def test_engine_imports_only_engine_registry_errors_stdlib_and_numpy():
    def allowed(t):
        if t.startswith("lossbench"):
            return inside(t, "lossbench.engine") or t in ("lossbench.registry", "lossbench.errors")
        return t in STDLIB or t == "numpy"

    bad = violations("lossbench.engine", allowed)
    assert not bad, "engine imports outside its layer:\n" + "\n".join(bad)


UPWARD = {
    "lossbench.data": ["lossbench.sweep", "lossbench.analysis", "lossbench.cli", "lossbench.api"],
    "lossbench.analysis": ["lossbench.sweep"],
    "lossbench.sweep": ["lossbench.analysis", "lossbench.cli", "lossbench.api"],
}


@pytest.mark.parametrize("layer,forbidden", UPWARD.items(), ids=list(UPWARD))
def test_layer_does_not_import_upward(layer, forbidden):
    bad = violations(layer, lambda t: not any(inside(t, f) for f in forbidden))
    assert not bad, f"{layer} imports {forbidden}:\n" + "\n".join(bad)


# ---------------------------------------------------------------- (iii) no cycles

def edges() -> dict[str, list[Import]]:
    """lossbench module -> its imports of other lossbench modules. An import of an
    ancestor package is left out: Python has imported it before the module anyway."""
    return {m: [i for i in imps if i.target in MODULES and i.target != m and not inside(m, i.target)]
            for m, imps in IMPORTS.items()}


def find_cycles(graph: dict[str, list[Import]]) -> list[list[Import]]:
    """One cycle through each strongly connected component with more than one module."""
    index, low, stack, on, comps = {}, {}, [], set(), []

    def strong(v):  # Tarjan
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for i in graph[v]:
            w = i.target
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            comps.append(comp)

    for v in sorted(graph):
        if v not in index:
            strong(v)
    cycles = []
    for comp in comps:
        if len(comp) < 2:
            continue
        start = min(comp)
        # breadth-first from start back to start inside the component
        prev, frontier, seen = {}, [start], {start}
        while frontier and start not in prev:
            nxt = []
            for v in frontier:
                for i in graph[v]:
                    if i.target in comp and (i.target not in seen or i.target == start) and i.target not in prev:
                        prev[i.target] = i
                        seen.add(i.target)
                        nxt.append(i.target)
            frontier = nxt
        path, v = [], start
        while True:
            i = prev[v]
            path.append(i)
            v = i.source
            if v == start:
                break
        cycles.append(path[::-1])
    return cycles


def test_no_import_cycles():
    cycles = find_cycles(edges())
    assert not cycles, "import cycles:\n" + "\n\n".join("\n".join(f"  {i}" for i in c) for c in cycles)


# ---------------------------------------------------------------- the checker itself

def test_the_import_graph_sees_what_it_must():
    """Guards the checks above against finding nothing because they read nothing."""
    assert {"lossbench.engine.losses", "lossbench.sweep.execute", "lossbench.cli"} <= MODULES
    train = {i.target for i in IMPORTS["lossbench.engine.train"]}
    # `from lossbench.engine import losses` is the submodule, not the package
    assert {"lossbench.engine.losses", "lossbench.engine.nn", "lossbench.engine.metrics", "numpy"} <= train
    # function-local imports count
    assert "lossbench.engine.train" in {i.target for i in IMPORTS["lossbench.sweep.config"]}
    # short aliases resolve to the engine module
    assert resolve("lossbench.losses") == "lossbench.engine.losses"
    # an ancestor package is no edge: lossbench.sweep.store's `from lossbench import __version__`
    assert "lossbench" in {i.target for i in IMPORTS["lossbench.sweep.store"]}
    assert "lossbench" not in {i.target for i in edges()["lossbench.sweep.store"]}
    a, b = Import("x.a", "x.b", 1, "import x.b"), Import("x.b", "x.a", 2, "import x.a")
    assert find_cycles({"x.a": [a], "x.b": [b]}) == [[a, b]]
    assert find_cycles({"x.a": [a], "x.b": []}) == []


def test_a_config_error_is_reported_before_pandas_is_imported(tmp_path):
    """`run` validates before it loads pandas (about 0.2 s): a mistake is one line, sooner."""
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("dataset: moons\nmodel: mlp\nloss: cross_entropy\noptimizer: {name: adam, lr: -1}\n")
    code = ("import sys; from typer.testing import CliRunner; from lossbench.cli import app; "
            f"r = CliRunner().invoke(app, ['run', {str(cfg)!r}]); print(r.exit_code, 'pandas' in sys.modules)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["2", "False"], r.stdout
