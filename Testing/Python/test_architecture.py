"""The repository's shape: it stands alone, and imports follow the layers of docs/ARCHITECTURE.md.

Layers, bottom to top: foundation modules (``datamodel``, ``errors``, ``imaging``, ``terminal``) → stage
packages → orchestration (``workflow``) → faces (``LesionResponseLib.cli``, the Slicer module and the web
review under ``LesionResponse/``). A stage may import the foundation and earlier stages, never
``workflow`` or a face, and no two stages import each other (directly or through a loop).
"""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LIBRARY = REPO / "LesionResponseLib"
STAGES = ("phantom", "dicomio", "segmentation", "tracking", "analysis", "review", "report")
ORCHESTRATION = "workflow"
FACES = ("cli",)  # LesionResponseLib.cli; the Slicer module and the web app live outside the library
# The word is split so that this file does not trip its own check.
FORBIDDEN_REFERENCE = "../" + "shared"


def _imported_modules(path: Path) -> set[str]:
    """Every ``LesionResponseLib...`` module a file imports, at module level or inside functions."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in names if name.startswith("LesionResponseLib")}


def _package_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def _package_graph() -> dict[str, set[str]]:
    """Package → the other ``LesionResponseLib`` packages/modules it imports."""
    graph: dict[str, set[str]] = {}
    for path in LIBRARY.rglob("*.py"):
        relative = path.relative_to(LIBRARY).parts
        owner = relative[0] if len(relative) > 1 else Path(relative[0]).stem
        targets = {_package_of(m) for m in _imported_modules(path)} - {None, owner}
        graph.setdefault(owner, set()).update(t for t in targets if t)
    return graph


def test_no_stage_imports_orchestration_or_faces() -> None:
    graph = _package_graph()
    offenders = {stage: sorted(graph.get(stage, set()) & {ORCHESTRATION, *FACES}) for stage in STAGES}
    assert not {s: o for s, o in offenders.items() if o}, offenders


def test_orchestration_does_not_import_faces() -> None:
    assert not _package_graph().get(ORCHESTRATION, set()) & set(FACES)


def test_stage_imports_have_no_loop() -> None:
    graph = {stage: _package_graph().get(stage, set()) & set(STAGES) for stage in STAGES}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in graph[start]:
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    loops = [stage for stage in STAGES if reaches(stage, stage, {stage})]
    assert not loops, {stage: sorted(graph[stage]) for stage in loops}


def test_the_check_sees_lazy_imports(tmp_path) -> None:
    """The scanner finds an import inside a function body (where the library puts its heavy imports)."""
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from LesionResponseLib.workflow import analyze\n")
    assert "LesionResponseLib.workflow" in _imported_modules(sample)


def test_no_file_points_outside_the_repository() -> None:
    try:
        files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, check=True, capture_output=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    hits = []
    for name in filter(None, files.decode().split("\0")):
        path = REPO / name
        if not path.is_file() or path.suffix in {".pt", ".png", ".gz", ".pdf"}:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        hits += [f"{name}:{n}" for n, line in enumerate(text.splitlines(), 1) if FORBIDDEN_REFERENCE in line]
    assert not hits, hits
