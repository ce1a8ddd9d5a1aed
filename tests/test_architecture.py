"""The code's shape: data flows one way, CLI -> pipeline -> (data, model) -> trainer -> evaluation/measures ->
figures/report, and no module imports one that stands later in that flow."""

import ast
from pathlib import Path

import vaelab

PACKAGE = Path(vaelab.__file__).parent
# Each module's place in the flow; a module may import only modules at its own place or earlier.
LAYERS = {
    0: ["errors", "atomic", "metrics", "quality", "losses", "architectures", "precision", "progress"],
    1: ["config", "presets", "rundir", "locks", "environment"],
    2: ["grid", "data", "images", "datasets", "perceptual", "models", "resources", "checkpoint", "prepare",
        "classifier"],
    3: ["evaluation", "distributed", "callbacks"],
    4: ["training", "run_store", "parallel"],
    5: ["latent_geometry", "measures", "visualisation", "trackers"],
    6: ["report"],
    7: ["pipeline", "explorer", "guard", "export"],
    8: ["serve", "options", "cli", "notebook", "__init__", "__main__"],
}
PLACE = {name: layer for layer, names in LAYERS.items() for name in names}


def module_of(path: Path) -> str:
    relative = path.relative_to(PACKAGE).with_suffix("")
    return relative.parts[0] if len(relative.parts) > 1 else relative.name  # report/page.py -> report


def imported_modules(path: Path) -> set[str]:
    """The vaelab modules ``path`` imports, at the top or inside a function: relative imports (``from . import x``
    names module x) and absolute ones (``from vaelab.x import ...``, ``import vaelab.x``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").startswith("vaelab."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("vaelab."))
        elif isinstance(node, ast.ImportFrom) and node.level:
            inside_subpackage = path.parent != PACKAGE
            if node.level == 1 and inside_subpackage:
                continue  # a sibling in the same sub-package
            if node.module:
                found.add(node.module.split(".")[0])
            else:
                found.update(alias.name for alias in node.names)
    return found - {"__version__"}


def test_every_module_has_a_place_in_the_flow():
    modules = {module_of(p) for p in PACKAGE.rglob("*.py")}
    assert modules == set(PLACE), f"place these modules in LAYERS: {sorted(modules ^ set(PLACE))}"


def test_no_module_imports_one_later_in_the_flow():
    backwards = []
    for path in PACKAGE.rglob("*.py"):
        importer = module_of(path)
        for imported in imported_modules(path):
            if PLACE[imported] > PLACE[importer]:
                backwards.append(f"{path.relative_to(PACKAGE)} imports {imported}")
    assert backwards == []


def test_no_function_is_longer_than_sixty_lines():
    long = [f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for path in PACKAGE.rglob("*.py") for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno >= 60]
    assert long == []


def test_no_modules_import_each_other_in_a_cycle():
    """Modules of one layer may import each other, but never round in a circle (data <-> images once did)."""
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        graph.setdefault(module_of(path), set()).update(imported_modules(path) - {module_of(path)})

    def cycle_from(start: str, node: str, seen: tuple[str, ...]) -> tuple[str, ...] | None:
        for nxt in sorted(graph.get(node, ())):
            if nxt == start:
                return (*seen, nxt)
            if nxt not in seen:
                found = cycle_from(start, nxt, (*seen, nxt))
                if found:
                    return found
        return None

    cycles = [" -> ".join(c) for m in sorted(graph) if (c := cycle_from(m, m, (m,)))]
    assert cycles == []


def test_no_class_is_longer_than_250_lines():
    long = [f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for path in PACKAGE.rglob("*.py") for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno >= 250]
    assert long == []


def calls_to(name: str) -> set[str]:
    """The modules (file paths in the package) that call a function called ``name``."""
    return {str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py")
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == name}


def test_a_run_directory_has_one_writer():
    """metrics.json and checkpoint.pt are written by the run store alone, and the trainer neither locks nor writes
    (it emits moments to callbacks, the run store among them)."""
    assert calls_to("write_metrics") == {"run_store.py"}
    assert calls_to("save_checkpoint") == {"run_store.py"}
    assert calls_to("RunLock") == {"run_store.py"}
    assert {"locks", "checkpoint", "run_store"}.isdisjoint(imported_modules(PACKAGE / "training.py"))


def test_the_trainer_knows_no_architecture_and_no_perceptual_arithmetic():
    source = (PACKAGE / "training.py").read_text()
    assert not any(f'"{name}"' in source for name in vaelab.architectures.names())
    assert not any(word in source for word in ("least_squares", "LPIPS_WEIGHT", "ADVERSARIAL", "discriminator("))


def test_each_architecture_module_registers_one_architecture():
    modules = sorted(p.stem for p in (PACKAGE / "architectures").glob("*.py")
                     if not p.stem.startswith("_") and p.stem != "registry")
    assert sorted(name.replace("-", "_") for name in vaelab.architectures.names()) == modules
