"""Static checks of the Slicer module: UI widgets used exist, files compile, CMake installs every library file."""

from __future__ import annotations

import ast
import fnmatch
import py_compile
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MODULE = REPO / "LesionResponse"
UI_FILE = MODULE / "Resources" / "UI" / "LesionResponse.ui"
QT_CLASSES = re.compile(r"^Q[A-Z]\w+$")


def _ui_widgets() -> dict[str, str]:
    root = ET.parse(UI_FILE).getroot()
    return {w.get("name"): w.get("class") for w in root.iter("widget")}


def _ui_uses(source: Path) -> set[str]:
    """Names ``X`` of every ``self.ui.X`` / ``widget.ui.X`` attribute access in a Python file."""
    used = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) and node.value.attr == "ui":
            used.add(node.attr)
    return used


def _ui_uses_by_getattr(source: Path) -> set[str]:
    """Widgets reached as ``getattr(self.ui, f"{name}Button")`` over a literal tuple of names."""
    text = source.read_text()
    names = set()
    for loop in re.finditer(r'for name in \(([^)]*)\):\s*\n\s*getattr\(self\.ui, f"\{name\}(\w+)"\)', text):
        names |= {f"{n.strip().strip(chr(34))}{loop.group(2)}" for n in loop.group(1).split(",") if n.strip()}
    return names


def test_every_widget_the_module_uses_exists_in_the_ui_file():
    widgets = _ui_widgets()
    used = _ui_uses(MODULE / "LesionResponse.py") | _ui_uses_by_getattr(MODULE / "LesionResponse.py")
    assert len(used) >= 20  # the parser found the panel's widgets
    missing = sorted(used - set(widgets))
    assert not missing, f"widgets used in LesionResponse.py but absent from {UI_FILE.name}: {missing}"


def test_ui_file_declares_every_custom_widget_class():
    root = ET.parse(UI_FILE).getroot()
    declared = {c.findtext("class") for c in root.iter("customwidget")}
    custom = {cls for cls in _ui_widgets().values() if not QT_CLASSES.match(cls)}
    assert custom <= declared, f"undeclared custom widgets: {sorted(custom - declared)}"
    assert root.find("widget").get("class") == "qMRMLWidget"  # so that setMRMLScene reaches MRML widgets


def test_ui_widget_names_are_unique():
    names = [w.get("name") for w in ET.parse(UI_FILE).getroot().iter("widget")]
    assert len(names) == len(set(names))


REVIEW = MODULE / "LesionResponseReview"
REVIEW_FILES = sorted(p for p in REVIEW.rglob("*.py") if "__pycache__" not in p.parts)


@pytest.mark.parametrize("path", [MODULE / "LesionResponse.py", *REVIEW_FILES], ids=lambda p: p.name)
def test_module_files_compile(path, tmp_path):
    py_compile.compile(str(path), cfile=str(tmp_path / f"{path.name}c"), doraise=True)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    modules = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    return modules | {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}


@pytest.mark.parametrize("path", REVIEW_FILES, ids=lambda p: str(p.relative_to(REVIEW)))
def test_shared_review_layer_imports_no_qt(path):
    """The MRML layer and the web app run without Qt (slicer-core, trame-slicer)."""
    modules = _imports(path)
    assert not {m.split(".")[0] for m in modules} & {"qt", "ctk", "PythonQt", "DICOMLib"}
    assert "slicer.ScriptedLoadableModule" not in modules and "slicer.util" not in modules


def test_library_never_imports_the_faces():
    """Stages do not import the review faces; only the top-level CLI registers ``review-app`` (lazily)."""
    for path in (REPO / "LesionResponseLib").rglob("*.py"):
        text = path.read_text()
        if path.name == "cli.py" and path.parent.name == "LesionResponseLib":
            assert 'import_module("LesionResponseReview.web.cli")' in text
            continue
        assert "LesionResponseReview" not in text, path


# the operations of the review, called by both faces from the one MRML layer
SHARED_OPERATIONS = ("load_analysis_into_scene", "select_track", "step_track", "apply_review_edit",
                     "undo_review_edit", "redo_review_edit", "refresh_colors", "export_results", "next_unreviewed",
                     "queue_summary")


@pytest.mark.parametrize("operation", SHARED_OPERATIONS)
def test_both_faces_call_the_same_mrml_operation(operation):
    widget = (MODULE / "LesionResponse.py").read_text()
    web = "".join(p.read_text() for p in (REVIEW / "web").rglob("*.py"))
    used = re.compile(rf"\bmrml\.{operation}\b")
    assert used.search(widget) and used.search(web)
    assert f"def {operation}(" in (REVIEW / "mrml.py").read_text()


def _cmake_globs(cmake: Path, variable: str) -> list[str]:
    """Patterns of ``file(GLOB_RECURSE <variable> ...)``, relative to the CMake file's folder."""
    text = cmake.read_text()
    block = re.search(rf"file\(GLOB_RECURSE {variable}(.*?)\)", text, re.S)
    assert block, f"{cmake}: no file(GLOB_RECURSE {variable} ...)"
    return [p.replace("${CMAKE_CURRENT_SOURCE_DIR}/", "") for p in re.findall(r"\$\{CMAKE_CURRENT_SOURCE_DIR\}/\S+",
                                                                              block.group(1))]


def _installed(path: Path, patterns: list[str]) -> bool:
    relative = Path("..") / path.relative_to(REPO)
    return any(fnmatch.fnmatch(str(relative), p) for p in patterns)


def test_cmake_installs_every_review_file():
    patterns = _cmake_globs(MODULE / "CMakeLists.txt", "REVIEW_PYTHON_FILES")
    assert REVIEW_FILES and all(any(fnmatch.fnmatch(str(p.relative_to(MODULE)), pat) for pat in patterns)
                                for p in REVIEW_FILES)


def test_cmake_installs_every_library_file():
    cmake = MODULE / "CMakeLists.txt"
    patterns = _cmake_globs(cmake, "LIBRARY_PYTHON_FILES") + _cmake_globs(cmake, "LIBRARY_RESOURCE_FILES")
    library = [p for p in (REPO / "LesionResponseLib").rglob("*")
               if p.is_file() and "__pycache__" not in p.parts and p.suffix not in {".pyc", ".md"}]
    assert any(p.suffix == ".py" for p in library)
    missing = [str(p.relative_to(REPO)) for p in library if not _installed(p, patterns)]
    assert not missing, f"LesionResponseLib files that the extension would not install: {missing}"
    assert "install(FILES" in cmake.read_text()


def test_cmake_lists_module_scripts_and_resources_that_exist():
    text = (MODULE / "CMakeLists.txt").read_text()
    for block in ("MODULE_PYTHON_SCRIPTS", "MODULE_PYTHON_RESOURCES"):
        entries = re.search(rf"set\({block}(.*?)\)", text, re.S).group(1).split()
        assert entries, block
        for entry in entries:
            assert (MODULE / entry.replace("${MODULE_NAME}", "LesionResponse")).is_file(), entry
    assert "slicerMacroBuildScriptedModule" in text and "slicer_add_python_unittest" in text


def test_top_level_cmake_follows_extension_conventions():
    text = (REPO / "CMakeLists.txt").read_text()
    for needed in ("project(LesionResponse)", "EXTENSION_HOMEPAGE", 'EXTENSION_CATEGORY "Quantification"',
                   "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION", "EXTENSION_ICONURL",
                   "EXTENSION_SCREENSHOTURLS", "EXTENSION_DEPENDS", "find_package(Slicer REQUIRED)",
                   "include(${Slicer_USE_FILE})", "add_subdirectory(LesionResponse)",
                   "include(${Slicer_EXTENSION_GENERATE_CONFIG})", "include(${Slicer_EXTENSION_CPACK})"):
        assert needed in text, needed
    assert (REPO / "Resources" / "Icons" / "LesionResponse.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
