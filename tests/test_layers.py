"""The package's shape: concerns in layers whose imports point one way (none upward, none in a
circle, lazy imports inside functions included), few modules at the root, short modules."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "biodl"

#: the layers, lowest first; a module may import its own layer's modules and lower ones only
LAYERS = [
    ("errors", "progress", "__init__"),  # the root package: __version__ and lazy names, nothing imported
    ("io",),
    ("evaluation",),
    ("trust",),
    ("config",),
    ("runs", "repro"),
    ("datasets", "data"),
    ("models", "report"),
    ("engine",),
    ("omics",),
    ("tasks",),
    ("inference",),
    ("interpret",),
    ("studies",),
    ("api", "cli", "__main__"),
]
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}


def _modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The biodl modules ``module`` imports anywhere in its code (not under ``if TYPE_CHECKING``)."""
    tree = ast.parse(path.read_text())
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for n in ast.walk(node)}
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")
            base = base[: len(base) - (node.level - 1)] if node.level else []
            target = ".".join(base + ([node.module] if node.module else [])) if node.level else node.module
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in modules else target)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m in modules and m != module}


def _layer(module: str) -> int:
    parts = module.split(".")
    return LAYER["__init__" if len(parts) == 1 else parts[1]]


def test_every_module_has_a_layer_and_imports_point_down():
    modules = _modules()
    upward = []
    for module, path in modules.items():
        for target in _imports(module, path, modules):
            if _layer(target) > _layer(module):
                upward.append(f"{module} -> {target}")
    assert upward == []


def test_no_import_goes_round_in_a_circle():
    modules = _modules()
    graph = {m: _imports(m, p, modules) for m, p in modules.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                cycles.append(stack[stack.index(t):] + [t])
            elif t not in state:
                visit(t, stack + [t])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    # a package's __init__ re-exporting its own modules is not a circle of concerns
    real = [c for c in cycles if not all(x == c[0] or x.startswith(c[0] + ".") or c[0].startswith(x + ".")
                                         for x in c)]
    assert real == []


def test_the_root_holds_few_modules_and_no_module_but_the_cli_is_long():
    assert len(list(SRC.glob("*.py"))) <= 9
    long = {str(p.relative_to(SRC)): n for p in SRC.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 400 and p.name != "cli.py"}
    assert long == {}


@pytest.mark.parametrize("module", ["biodl.trust.calibration", "biodl.trust.conformal", "biodl.trust.uncertainty"])
def test_trust_imports_only_evaluation_and_errors(module):
    modules = _modules()
    targets = _imports(module, modules[module], modules)
    assert {t.split(".")[1] for t in targets} <= {"evaluation", "errors", "trust"}
