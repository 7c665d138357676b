"""The house's layers, enforced: who may import what, read from the source's import statements (lazy ones too).

* Pure modules (``core/``, ``utils/``, ``errors``, the PR gate and comment texts) import no Ray, Hub, GitHub,
  Slack, pydantic or audio library, and nothing of hugflow_ray outside the pure layer.
* Only ``executors/`` and the Ray job driver import Ray; only ``adapters/<service>`` imports that service's client; only ``codec/`` the
  audio libraries; only ``settings`` pydantic; only ``cli/`` typer.
* The layers point one way: core <- codec, copies, adapters <- pipeline <- catalog <- drivers <- gitops <- cli; the
  executors run the steps the pipeline hands them (executors.base), importing none of it.
* Every third-party package imported is declared in pyproject.toml.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "hugflow_ray"

PURE = ("core", "utils", "errors", "gitops.gate", "gitops.comments")

# Third-party top-level modules that only these parts of the package may import.
OWNERS: dict[str, tuple[str, ...]] = {
    "ray": ("executors", "drivers.ray_job"),
    "huggingface_hub": ("adapters.hub",),
    "datasets": ("adapters.hub", "cli.demo"),  # the demo writes its source dataset as the Hub's library does
    "httpx2": ("adapters.hub",),
    "github": ("adapters.github",),
    "requests": ("adapters.github",),
    "slack_sdk": ("adapters.slack",),
    "soundfile": ("codec", "cli.demo"),  # the demo makes its audio files
    "soxr": ("codec",),
    "lameenc": ("codec",),
    "av": ("codec",),
    "pydantic": ("settings",),
    "pydantic_settings": ("settings",),
    "typer": ("cli",),
}
PURE_THIRD_PARTY = {"yaml", "numpy"}

# hugflow_ray parts each part may import (a part always may import itself).
ALLOWED: dict[str, tuple[str, ...]] = {
    "core": ("utils", "errors"),
    "utils": ("errors",),
    "errors": (),
    "gitops.gate": ("core", "utils", "errors"),
    "gitops.comments": ("core", "utils", "errors"),
    "codec": ("core", "utils", "errors"),
    "settings": ("core", "errors"),
    "adapters": ("core", "utils", "errors", "settings"),
    # a copy's modules take the store's layout, not the settings: only the layout reads them (StoreLayout.of)
    "copies": ("core", "utils", "errors"),
    "copies.layout": ("core", "utils", "errors", "settings"),
    "pipeline": ("core", "codec", "copies", "adapters.hub", "utils", "errors", "settings", "executors.base",
                 "executors.default"),
    # the executor runs the steps it is handed (executors.base.Steps), never the pipeline's stages by name
    "executors": ("core", "codec", "utils", "errors", "settings"),
    # a job's submitter plans the request first (the Hub's commit pinned), as the control plane does
    "drivers": ("core", "adapters.hub", "executors.base", "pipeline.plan", "utils", "errors", "settings"),
    "gitops": (),
    "gitops.control": ("core", "copies", "adapters", "drivers", "gitops", "pipeline", "utils", "errors", "settings"),
    "api": ("core", "copies", "pipeline", "catalog", "executors.default", "settings"),
    "catalog": ("core", "copies", "adapters", "pipeline", "executors.base", "executors.default", "utils", "errors", "settings"),
    "cli": ("",),  # the shell around everything
    "__main__": ("cli",),
    "__init__": (),
}


def _under(module: str, part: str) -> bool:
    """Whether ``hugflow_ray.<module>`` is ``part`` or inside it (``""``: the package itself)."""
    return module == part or module.startswith(part + ".") or part == ""


def _part(module: str) -> str:
    """The most specific entry of ALLOWED that ``module`` belongs to.

    Raises:
        ValueError: a module of a part the contract does not know yet (add it to ALLOWED).
    """
    parts = [p for p in ALLOWED if _under(module, p)]
    if not parts:
        raise ValueError(f"{PACKAGE}.{module} is in no part of the contract: add its folder to ALLOWED")
    return max(parts, key=len)


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, absolute module) of every import statement in ``path``, top-level or inside functions."""
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            ours = node.module.split(".")[0] == PACKAGE
            names = [f"{node.module}.{alias.name}" for alias in node.names] if ours else [node.module]
            yield from ((node.lineno, name) for name in names)


def _declared() -> set[str]:
    """Normalised distribution names in pyproject's dependencies."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {_normal(re.split(r"[\s<>=!~;\[]", spec, maxsplit=1)[0]) for spec in project["dependencies"]}


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def violations(package_dir: Path) -> list[str]:
    """Every import in ``package_dir`` (a hugflow_ray tree) that breaks the contract, as readable lines."""
    distributions = importlib.metadata.packages_distributions()
    declared = _declared()
    found: list[str] = []
    for path in sorted(package_dir.rglob("*.py")):
        relative = path.relative_to(package_dir).with_suffix("")
        module = ".".join(p for p in relative.parts if p != "__init__") or "__init__"
        part = _part(module)
        where = f"{PACKAGE}/{path.relative_to(package_dir)}"
        for line, imported in _imports(path):
            top = imported.split(".")[0]
            if top == PACKAGE:
                target = imported.removeprefix(PACKAGE).removeprefix(".")
                if target == "__version__" or _under(target, part):
                    continue
                if not any(_under(target, allowed) for allowed in ALLOWED[part]):
                    found.append(f"{where}:{line}: {PACKAGE}.{module or '__init__'} ({part}) imports "
                                 f"{PACKAGE}.{target} (allowed: {', '.join(ALLOWED[part]) or 'nothing'})")
            elif top in sys.stdlib_module_names or top == "__future__":
                continue
            else:
                owners = OWNERS.get(top)
                if owners is not None and not any(_under(module, owner) for owner in owners):
                    found.append(f"{where}:{line}: {top} may only be imported in {', '.join(owners)}")
                if any(_under(module, p) for p in PURE) and top not in PURE_THIRD_PARTY:
                    found.append(f"{where}:{line}: {top} imported in a pure module")
                dists = distributions.get(top, [])
                if not any(_normal(d) in declared for d in dists):
                    found.append(f"{where}:{line}: {top} is imported but not declared in pyproject.toml")
    return found


# Calls the package never makes, and why.
BANNED_CALLS = {
    "read_table": "reads parquet through Arrow's dataset scanner, whose threads can abort the process at exit: "
                  "use copies.batches.read_parquet",
}


def banned_calls(package_dir: Path) -> list[str]:
    """Every call in ``package_dir`` of a name in :data:`BANNED_CALLS` (``pq.read_table(...)`` or ``read_table(...)``)."""
    found = []
    for path in sorted(package_dir.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "attr", getattr(node.func, "id", None))
                if name in BANNED_CALLS:
                    found.append(f"{PACKAGE}/{path.relative_to(package_dir)}:{node.lineno}: {name}: "
                                 f"{BANNED_CALLS[name]}")
    return found


# What only copies/layout.py spells: the roots' joins, and a copy's own names.
ROOTS = ("storage_root", "state_dir", "processed_root")
COPY_NAMES = (".hugflow", "status.json", "meta.json", "part_rows.jsonl", "files.parquet", "manifest.parquet",
              "manifest.jsonl")


def spelled_paths(package_dir: Path) -> list[str]:
    """Every place outside ``copies/layout.py`` that joins a path to a root (``settings.storage_root / name``) or
    spells one of a copy's own names."""
    found = []
    for path in sorted(package_dir.rglob("*.py")):
        if path.relative_to(package_dir).as_posix() == "copies/layout.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            joined = (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div)
                      and getattr(node.left, "attr", None) in ROOTS)
            named = isinstance(node, ast.Constant) and node.value in COPY_NAMES
            if joined or named:
                found.append(f"{PACKAGE}/{path.relative_to(package_dir)}:{node.lineno}: {ast.unparse(node)}")
    return found


def circles(package_dir: Path) -> list[list[str]]:
    """The modules of ``package_dir`` that import each other round in a circle (lazy imports too), one list per
    circle (a strongly connected group of the import graph)."""
    modules = {".".join((PACKAGE, *(p for p in path.relative_to(package_dir).with_suffix("").parts
                                    if p != "__init__"))): path for path in package_dir.rglob("*.py")}
    graph = {module: set() for module in modules}
    for module, path in modules.items():
        for _, imported in _imports(path):
            target = imported if imported in modules else imported.rpartition(".")[0]
            if target in modules and target != module:
                graph[module].add(target)
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:  # Tarjan's strongly connected components
        order[module] = low[module] = len(order)
        stack.append(module)
        for target in graph[module]:
            if target not in order:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], order[target])
        if low[module] == order[module]:
            group = []
            while (member := stack.pop()) != module:
                group.append(member)
            if group:
                found.append(sorted([module, *group]))

    for module in sorted(graph):
        if module not in order:
            visit(module)
    return found


def test_no_modules_import_each_other_round_in_a_circle(tmp_path: Path) -> None:
    assert circles(ROOT / PACKAGE) == []
    tree = tmp_path / PACKAGE
    (tree / "cli").mkdir(parents=True)
    (tree / "cli" / "main.py").write_text("def f():\n    from hugflow_ray.cli.catalog import app\n")
    (tree / "cli" / "catalog.py").write_text("from hugflow_ray.cli import main\n")
    assert circles(tree) == [["hugflow_ray.cli.catalog", "hugflow_ray.cli.main"]], "a lazy import closes one too"


def test_the_package_keeps_its_layers() -> None:
    assert violations(ROOT / PACKAGE) == []


def test_only_the_layout_spells_where_a_copy_and_its_state_live(tmp_path: Path) -> None:
    assert spelled_paths(ROOT / PACKAGE) == []
    (tmp_path / "copies").mkdir()
    (tmp_path / "copies" / "layout.py").write_text("s = settings.storage_root / 'x'\n")
    (tmp_path / "copies" / "leak.py").write_text("a = settings.state_dir / 'locks'\nb = root / '.hugflow'\n")
    assert spelled_paths(tmp_path) == [f"{PACKAGE}/copies/leak.py:1: settings.state_dir / 'locks'",
                                       f"{PACKAGE}/copies/leak.py:2: '.hugflow'"]


def test_the_package_makes_no_banned_call(tmp_path: Path) -> None:
    assert banned_calls(ROOT / PACKAGE) == []
    (tmp_path / "copies").mkdir()
    (tmp_path / "copies" / "leak.py").write_text("import pyarrow.parquet as pq\nt = pq.read_table('x')\n")
    (found,) = banned_calls(tmp_path)
    assert found.startswith(f"{PACKAGE}/copies/leak.py:2: read_table:") and "read_parquet" in found


@pytest.mark.parametrize(
    ("module", "source", "complaint"),
    [
        ("core/leak.py", "import ray\n", "ray may only be imported in executors"),
        ("core/leak.py", "from hugflow_ray.pipeline import ledger\n", "(core) imports hugflow_ray.pipeline"),
        ("utils/leak.py", "def f():\n    import soundfile\n", "soundfile may only be imported in codec"),
        ("pipeline/leak.py", "from github import Github\n", "github may only be imported in adapters.github"),
        ("pipeline/leak.py", "from hugflow_ray.executors import ray_runner\n", "imports hugflow_ray.executors"),
        ("adapters/leak.py", "import hugflow_ray.gitops.control\n", "imports hugflow_ray.gitops.control"),
        ("gitops/gate.py", "from hugflow_ray.adapters.github import PullRequestClient\n", "(gitops.gate) imports"),
        ("codec/leak.py", "import tomli_w\n", "tomli_w is imported but not declared"),
    ],
)
def test_a_violation_is_reported_with_its_file_and_line(tmp_path: Path, module: str, source: str,
                                                         complaint: str) -> None:
    tree = tmp_path / PACKAGE
    (tree / module).parent.mkdir(parents=True)
    (tree / module).write_text(source)
    found = violations(tree)
    assert any(complaint in v and f"{PACKAGE}/{module}:" in v for v in found), found


def test_the_control_plane_loads_no_ray_data() -> None:
    """The PR workflow's control plane and its drivers start and follow syncs; conversion (Ray Data) is the data
    plane's alone, so importing them must not load it (seconds, and hundreds of MB, on every CI job)."""
    modules = ("hugflow_ray.cli.main", "hugflow_ray.gitops.control", "hugflow_ray.drivers.ray_job")
    code = (f"import sys\nfor m in {modules!r}: __import__(m)\n"
            "print(sorted(m for m in sys.modules if m == 'ray.data' or m.startswith('ray.data.')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert loaded.stdout.strip() == "[]", loaded.stdout[:400]
