"""No import cycles among pdr's modules, lazy (function-level) imports included.

A cycle hidden behind an import inside a function still ties two modules together (neither can be
understood, tested or moved without the other), so every import statement counts, except those under
``if TYPE_CHECKING:``. An import depends on the module it names: ``from a.b import c`` on ``a.b.c`` when
that is a module, else on ``a.b``. The packages Python runs on the way (``a/__init__.py`` for ``a.b``) are
not counted, and a module's own packages are left out (they run before it; a name they do not define yet
fails at once): ``from .. import __version__`` is no cycle, nor is a package's ``__init__`` importing its
own modules.
"""
import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# pyproject's package-dir: the folders installed as pdr, pdr.adapters and pdr.backbones
PACKAGE_DIRS = {"pdr": REPO / "pdr", "pdr.adapters": REPO / "adapters", "pdr.backbones": REPO / "backbones"}


def modules(package_dirs: dict) -> dict[str, tuple[Path, bool]]:
    """{dotted module name: (file, is a package's __init__)}."""
    found = {}
    for package, folder in package_dirs.items():
        for file in sorted(folder.rglob("*.py")):
            parts = list(file.relative_to(folder).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            found[".".join([package, *(parts[:-1] if is_package else parts)])] = (file, is_package)
    return found


class _Imports(ast.NodeVisitor):
    """The import statements of one module, as (line, absolute module name, imported names)."""

    def __init__(self, name: str, is_package: bool):
        self.package = name if is_package else name.rpartition(".")[0]
        self.found: list[tuple[int, str, list[str]]] = []

    def visit_If(self, node: ast.If) -> None:
        if isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING" or (
                isinstance(node.test, ast.Attribute) and node.test.attr == "TYPE_CHECKING"):
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        self.found += [(node.lineno, alias.name, []) for alias in node.names]

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:
            parts = self.package.split(".")
            parts = parts[: len(parts) - node.level + 1]
            base = ".".join(parts + ([base] if base else []))
        self.found.append((node.lineno, base, [alias.name for alias in node.names]))


def import_graph(package_dirs: dict) -> dict[str, dict[str, str]]:
    """{module: {module it imports: "file:line" of the first such import}} within the given packages."""
    known = modules(package_dirs)
    graph: dict[str, dict[str, str]] = {name: {} for name in known}
    for name, (file, is_package) in known.items():
        visitor = _Imports(name, is_package)
        visitor.visit(ast.parse(file.read_text(), str(file)))
        for line, base, names in visitor.found:
            submodules = [f"{base}.{n}" for n in names if f"{base}.{n}" in known]
            targets = submodules if names and len(submodules) == len(names) else [base, *submodules]
            for target in targets:
                if target in known and target != name and not name.startswith(target + "."):
                    graph[name].setdefault(target, f"{file.relative_to(REPO) if REPO in file.parents else file}:{line}")
    return graph


def cycles(graph: dict[str, dict[str, str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index, low, on_stack, stack, found, counter = {}, {}, set(), [], [], 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(graph[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(graph[child])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def describe(component: list[str], graph: dict[str, dict[str, str]]) -> str:
    members = set(component)
    return "\n".join(f"  {a} -> {b} ({graph[a][b]})" for a in component for b in sorted(graph[a]) if b in members)


def test_no_import_cycles_among_pdr_modules():
    graph = import_graph(PACKAGE_DIRS)
    assert len(graph) > 50 and graph["pdr"], "the modules of pdr were not found"
    found = cycles(graph)
    assert not found, "import cycles:\n" + "\n\n".join(describe(c, graph) for c in found)


def test_a_lazy_cycle_is_found(tmp_path):
    """The check sees a cycle made of a module-level and a function-level import, and not a package's
    ``__init__`` importing its own modules."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from .a import f\nVERSION = 1\n")
    (pkg / "a.py").write_text("from .sub.b import g\n\ndef f():\n    from . import VERSION\n    return g()\n")
    (pkg / "sub" / "__init__.py").write_text("from . import b\n")
    (pkg / "sub" / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .. import c\n\n"
                                      "def g():\n    from ..c import h\n    return h()\n")
    (pkg / "c.py").write_text("def h():\n    return 1\n")
    assert cycles(import_graph({"pkg": pkg})) == []
    (pkg / "c.py").write_text("def h():\n    from pkg.a import f\n    return f\n")
    graph = import_graph({"pkg": pkg})
    assert cycles(graph) == [["pkg.a", "pkg.c", "pkg.sub.b"]]
    assert "pkg.c -> pkg.a" in describe(cycles(graph)[0], graph)
