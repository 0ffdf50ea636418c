"""The core's layering: rlmig/ never imports envs/, agents/, eval/, Gymnasium or torch at module level
(the CLI may, lazily, inside a command), no import circles, and the GPU-node path runs the learned
policy in a process where Gymnasium and torch cannot be imported."""

from __future__ import annotations

import ast
import itertools
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "rlmig"
FORBIDDEN = ("rlmig.envs", "rlmig.agents", "rlmig.eval", "gymnasium", "torch")
FOLDERS = {"rlmig.envs": ROOT / "envs", "rlmig.agents": ROOT / "agents", "rlmig.eval": ROOT / "eval"}


def _module_name(path: Path) -> str:
    for name, folder in FOLDERS.items():
        if folder in path.parents:
            parts = path.relative_to(folder).with_suffix("").parts
            return ".".join((name, *parts)).removesuffix(".__init__")
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts).removesuffix(".__init__")


def _imports(tree: ast.Module, lazy: bool) -> list[tuple[int, str]]:
    """(line, module) of the imports at module level, or (lazy=True) inside functions."""
    found: list[tuple[int, str]] = []
    nodes = ast.walk(tree) if lazy else iter(tree.body)
    for node in nodes:
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def _sources() -> list[Path]:
    files = [p for p in CORE.rglob("*.py")]
    for folder in FOLDERS.values():
        files += list(folder.rglob("*.py"))
    return files


def test_the_core_imports_nothing_above_it_at_module_level() -> None:
    offenders = []
    for path in CORE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for line, module in _imports(tree, lazy=False):
            if any(module == f or module.startswith(f + ".") for f in FORBIDDEN):
                offenders.append(f"{path.relative_to(ROOT)}:{line} {module}")
        if "cli" not in path.relative_to(CORE).parts[0]:  # only the CLI may import upward, lazily
            for line, module in _imports(tree, lazy=True):
                if any(module == f or module.startswith(f + ".") for f in FORBIDDEN):
                    offenders.append(f"{path.relative_to(ROOT)}:{line} {module} (inside a function)")
    assert offenders == []


def test_no_import_circles() -> None:
    names = {_module_name(p): p for p in _sources()}
    graph: dict[str, set[str]] = {}
    for name, path in names.items():
        targets = set()
        for _, module in _imports(ast.parse(path.read_text()), lazy=False):
            if module in names and module != name:
                targets.add(module)
        graph[name] = targets
    circles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the stack, 2: done

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                # A package importing its own submodules (an __init__ re-export) is no circle.
                circle = [*stack[stack.index(target) :], target]
                if not all(b.startswith(a + ".") for a, b in itertools.pairwise(circle)):
                    circles.append(circle)
            elif target not in state:
                visit(target, [*stack, target])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert circles == []


def test_the_rl_planner_runs_where_gymnasium_and_torch_cannot_be_imported() -> None:
    scenario = ROOT / "eval" / "scenarios" / "spike-shift.yaml"
    script = (
        "import sys\n"
        "sys.modules['gymnasium'] = None\n"  # `import gymnasium` now raises ImportError
        "sys.modules['torch'] = None\n"
        "from rlmig.cli import main\n"
        f"code = main(['simulate', {str(scenario)!r}, '--planner', 'rl', '--json'])\n"
        "assert 'gymnasium' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
        "sys.exit(code)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert 0.0 < json.loads(proc.stdout)["metrics"]["goodput_ratio"] <= 1.0
