"""A headless Slicer for tests: MRML scene + module logics from the ``slicer-core`` package (no Qt).

``bootstrap()`` builds the scene once per process and exposes it the way the desktop application does
(``slicer.mrmlScene``, ``slicer.modules.<name>.logic()``, ``slicer.app.applicationLogic()``), so that
``LesionResponseReview.mrml`` and ``slicer.util`` helpers run unchanged. ``new_scene()`` clears it between tests.
"""

from __future__ import annotations

import types
from dataclasses import dataclass
from typing import Any


@dataclass
class HeadlessSlicer:
    """The scene and the logics the LesionResponse MRML code needs."""

    scene: Any
    app_logic: Any
    logics: dict[str, Any]


_INSTANCE: HeadlessSlicer | None = None

# module name as in ``slicer.modules.<name>`` -> logic class name in slicer-core
_LOGICS = {
    "colors": "vtkSlicerColorLogic",
    "segmentations": "vtkSlicerSegmentationsModuleLogic",
    "volumes": "vtkSlicerVolumesLogic",
    "subjecthierarchy": "vtkSlicerSubjectHierarchyModuleLogic",
    "transforms": "vtkSlicerTransformLogic",
    "tables": "vtkSlicerTablesLogic",
}


def bootstrap() -> HeadlessSlicer:
    """Create (once) the scene, the application logic, the module logics and the ``slicer`` globals."""
    global _INSTANCE
    if _INSTANCE is not None:
        return _INSTANCE
    import slicer

    scene = slicer.vtkMRMLScene()
    app_logic = slicer.vtkSlicerApplicationLogic()
    app_logic.SetMRMLScene(scene)
    logics: dict[str, Any] = {}
    for name, class_name in _LOGICS.items():
        logic = getattr(slicer, class_name)()
        if hasattr(logic, "SetMRMLApplicationLogic"):
            logic.SetMRMLApplicationLogic(app_logic)
        logic.SetMRMLScene(scene)
        logics[name] = logic
        app_logic.SetModuleLogic("SubjectHierarchy" if name == "subjecthierarchy" else name.capitalize(), logic)
    logics["colors"].AddDefaultColorNodes()
    layout_logic = slicer.vtkMRMLLayoutLogic()
    layout_logic.SetMRMLScene(scene)
    logics["layout"] = layout_logic
    slicer.mrmlScene = scene
    slicer.modules = types.SimpleNamespace(
        **{name: types.SimpleNamespace(logic=(lambda lg=lg: lg)) for name, lg in logics.items()}
    )
    slicer.app = types.SimpleNamespace(applicationLogic=lambda: app_logic)
    _INSTANCE = HeadlessSlicer(scene=scene, app_logic=app_logic, logics=logics)
    return _INSTANCE


def new_scene() -> HeadlessSlicer:
    """The bootstrapped Slicer with its scene cleared (default colour and layout nodes kept)."""
    headless = bootstrap()
    headless.scene.Clear(0)
    return headless


def import_desktop_module(monkeypatch: Any) -> types.ModuleType:
    """``LesionResponse.py`` (the desktop module) imported with stand-ins for the Qt-only parts slicer-core lacks:
    ``qt`` (a mock), the ScriptedLoadableModule base classes, ``parameterNodeWrapper`` (the class itself;
    ``Choice`` gives its values) and a layout manager on the headless scene."""
    import importlib
    import sys
    from unittest import mock

    import slicer

    headless = new_scene()
    scripted = types.ModuleType("slicer.ScriptedLoadableModule")

    class Base:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            pass

    for name in ("ScriptedLoadableModule", "ScriptedLoadableModuleLogic", "ScriptedLoadableModuleTest",
                 "ScriptedLoadableModuleWidget"):
        setattr(scripted, name, type(name, (Base,), {}))
    wrapper = types.ModuleType("slicer.parameterNodeWrapper")
    wrapper.parameterNodeWrapper, wrapper.Choice = (lambda cls: cls), (lambda values: values)
    monkeypatch.setitem(sys.modules, "qt", mock.MagicMock())
    monkeypatch.setitem(sys.modules, "slicer.ScriptedLoadableModule", scripted)
    monkeypatch.setitem(sys.modules, "slicer.parameterNodeWrapper", wrapper)
    layout_manager = types.SimpleNamespace(layoutLogic=lambda: headless.logics["layout"])
    monkeypatch.setattr(slicer.app, "layoutManager", lambda: layout_manager, raising=False)
    monkeypatch.delitem(sys.modules, "LesionResponse", raising=False)
    return importlib.import_module("LesionResponse")
