"""The tree reads as the architecture: no import cycles in sai/, the runtime never imports the
CLI, and the functions' shared package only imports itself relatively (in a container it is
`function.common`, not `common`)."""

from __future__ import annotations

import ast

from helpers import ROOT


def _imports(path, module: str) -> set[str]:
    """sai.* modules imported by `module` (at any depth: function-local imports count too)."""
    out = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.add(target)
            out |= {f"{target}.{a.name}" for a in node.names}
    return {m for m in out if m == "sai" or m.startswith("sai.")}


def _graph() -> dict[str, set[str]]:
    modules = {}
    for path in (ROOT / "sai").rglob("*.py"):
        if "triton_backends" in path.parts:
            continue
        rel = path.relative_to(ROOT).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        modules[name] = path
    return {name: {m for m in _imports(path, name) if m in modules and m != name} for name, path in modules.items()}


def test_no_import_cycles_in_sai():
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(nxt) :] + [nxt]))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node)


def test_only_the_cli_imports_the_cli():
    for name, deps in _graph().items():
        if not name.startswith("sai.cli") and name != "sai.__main__":
            assert not any(d.startswith("sai.cli") for d in deps), f"{name} imports the CLI"


def test_common_imports_itself_only_relatively():
    for path in (ROOT / "common").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                assert not (node.module or "").startswith("common"), f"{path.name}: from {node.module} import ..."
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("common") for a in node.names), path.name


def test_module_names_say_which_one_they_are():
    """No two modules of sai/ share a file name, and none is named like a top-level package (a
    reader of `common.py` or `errors.py` should not have to ask which one)."""
    names = [p.name for p in (ROOT / "sai").rglob("*.py") if p.name not in ("__init__.py", "__main__.py")]
    assert not {n for n in names if names.count(n) > 1}, sorted({n for n in names if names.count(n) > 1})
    packages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file()}
    assert not {n[:-3] for n in names} & packages


def _foreign_private(node: ast.AST) -> bool:
    """`obj._name` where obj is not self or cls (dunders and os._exit aside)."""
    return (
        isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
        and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
        and ast.unparse(node) != "os._exit"
    )


def test_no_module_touches_another_objects_private_state():
    """State has one owner: nobody assigns another object's `_name`, and the runtime (sai/local)
    does not read one either (reload.py once called the platform's private methods)."""
    offenders = []
    for path in [*(ROOT / "sai").rglob("*.py"), *(ROOT / "common").glob("*.py")]:
        runtime = "local" in path.relative_to(ROOT).parts
        for node in ast.walk(ast.parse(path.read_text())):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AugAssign) else []
            found = [t for t in targets if _foreign_private(t)] + ([node] if runtime and _foreign_private(node) else [])
            offenders += [f"{path.relative_to(ROOT)}:{node.lineno} {ast.unparse(t)}" for t in found]
    assert not offenders, offenders
