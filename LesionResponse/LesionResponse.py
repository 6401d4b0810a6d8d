"""LesionResponse: lesion-by-lesion response assessment of longitudinal [68Ga]Ga-DOTATATE PET/CT in 3D Slicer.

The widget is thin: MRML work lives in ``LesionResponseReview.mrml`` (shared with the browser review app and
tested headless with ``slicer-core``), the
computation in ``LesionResponseLib`` (pure Python). The analysis runs in a separate Python process
(``QProcess``) so the GUI stays responsive and Cancel can stop it at once.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import os
import re
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import qt
import slicer
import vtk
from slicer.parameterNodeWrapper import Choice, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

MODULE_DIR = Path(__file__).resolve().parent
for _path in (MODULE_DIR, MODULE_DIR.parent):  # installed: LesionResponseLib beside this file; source tree: above
    if (_path / "LesionResponseLib").is_dir() and str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

# Requirements of the library (pyproject.toml) that Slicer provides itself: numpy and SimpleITK ship with it, torch
# comes from the PyTorch extension, and registration runs SlicerElastix's programs instead of itk-elastix
# (LesionResponseLib.tracking.elastix).
PROVIDED_BY_SLICER = ("numpy", "simpleitk", "torch", "itk-elastix")
REQUIREMENT_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def pipRequirements() -> list[str]:
    """The library's pip requirements (pyproject.toml's ``dependencies``: beside the library in the installed
    extension, or at the top of the source tree; else the installed package's metadata) that Slicer lacks a
    provider for."""
    for folder in (MODULE_DIR, MODULE_DIR.parent):
        if (folder / "pyproject.toml").is_file():
            import tomllib

            requirements = tomllib.loads((folder / "pyproject.toml").read_text())["project"]["dependencies"]
            break
    else:
        requirements = [r for r in importlib.metadata.requires("lesion-response") or [] if "extra ==" not in r]
    return [r for r in requirements if REQUIREMENT_NAME.match(r).group(1).lower() not in PROVIDED_BY_SLICER]


def _edits() -> Any:
    """The library's typed review edits (imported when a button is pressed: after the dependencies are installed)."""
    from LesionResponseLib.review import edits

    return edits


def _roiId(text: str, field: str) -> str:
    from LesionResponseReview import mrml

    return mrml.roi_id_from_text(text, f"a ROI id in field {field}")


def _number(text: str, what: str) -> int:
    from LesionResponseReview import mrml

    return mrml.number_from_text(text, what)


# The panel's review buttons (``<name>Button`` in the .ui): each builds its typed edit from the fields A and B (ROI
# ids; or a track id like T012 and a track id or time point) and the open review session.
REVIEW_BUTTONS: dict[str, Callable[[str, str, Any], Any]] = {
    "link": lambda a, b, session: _edits().LinkRois(_roiId(a, "A"), _roiId(b, "B")),
    "unlink": lambda a, b, session: _edits().UnlinkRoi(_roiId(a, "A")),
    "merge": lambda a, b, session: _edits().MergeTracks(_number(a, "a track id in A"), _number(b, "a track id in B")),
    "split": lambda a, b, session: _edits().SplitTrack(_number(a, "a track id in A"), _number(b, "a time point in B")),
    "reject": lambda a, b, session: _edits().RejectRoi(_roiId(a, "A")),
    "rejectTrack": lambda a, b, session: _edits().RejectRois(
        _edits().track_roi_ids(session.state, _number(a, "a track id in A"))),
    "restore": lambda a, b, session: _edits().RestoreRoi(_roiId(a, "A")),
}
PROGRESS_PATTERN = re.compile(r"(\d{1,3})%")  # percentages printed by the analysis process


class LesionResponse(ScriptedLoadableModule):
    """Module description shown in Slicer's module panel and Help."""

    def __init__(self, parent: Any) -> None:
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "Lesion Response"
        self.parent.categories = ["Quantification"]
        self.parent.dependencies = ["Segmentations", "SegmentEditor", "DICOM"]
        self.parent.contributors = ["LesionResponse team"]
        self.parent.helpText = (
            "Lesion-by-lesion response assessment of longitudinal [68Ga]Ga-DOTATATE PET/CT: segment lesion-ROIs, "
            "quantify SUV, register time points, track lesions, categorise response (SUVtotal change), review "
            "and export reports and DICOM SEG/SR. Keys: N / P = next / previous track, U = next unreviewed track of "
            "the review queue, R = mark the selected track reviewed."
        )
        self.parent.acknowledgementText = "Built on 3D Slicer, SimpleITK, MONAI, pydicom and highdicom."


def _parameterNodeClass() -> type:
    """The module's parameter node (saved with the scene): the folders, the view state and every analysis setting
    (one field each, ``LesionResponseReview.settings_form``: a setting added to the library appears here)."""
    from LesionResponseReview import settings_form

    annotations: dict[str, Any] = {
        "inputFolder": Path,  # DICOM folder of the patient (used when no database patient is chosen)
        "outputFolder": Path,  # analysis output folder
        "colorBy": Annotated[str, Choice(["category", "track"])],  # segment colours by response or by track
        "currentTrack": int,  # track shown in the views (-1 = none)
    }
    defaults: dict[str, Any] = {"colorBy": "category", "currentTrack": -1}
    for field in settings_form.fields():
        kinds = {"bool": bool, "choice": Annotated[str, Choice(list(field.setting.choices or ()))], "text": str}
        annotations[field.name] = kinds[field.kind]
        defaults[field.name] = field.default
    return parameterNodeWrapper(type("LesionResponseParameterNode", (), {"__annotations__": annotations,
                                                                         "__doc__": _parameterNodeClass.__doc__,
                                                                         **defaults}))


LesionResponseParameterNode = _parameterNodeClass()


class LesionResponseWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The module panel: input, background run, track table, review edits, export."""

    def __init__(self, parent: Any = None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic: LesionResponseLogic | None = None
        self._parameterNode: LesionResponseParameterNode | None = None
        self._parameterNodeGuiTag = None
        self._shortcuts: list[Any] = []
        self._crosshairTag = None
        self._following = False

    # ------------------------------------------------------------------------------------ setup
    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/LesionResponse.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = LesionResponseLogic()
        self.logic.progressCallback = self._onProgress
        self.logic.finishedCallback = self._onRunFinished

        self.ui.colorByComboBox.addItems(["category", "track"])
        self._settingWidgets = self._buildSettings()
        self.ui.cancelButton.enabled = False
        self.ui.progressBar.setValue(0)

        self.ui.refreshPatientsButton.connect("clicked(bool)", self.onRefreshPatients)
        self.ui.runButton.connect("clicked(bool)", self.onRun)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancel)
        self.ui.loadButton.connect("clicked(bool)", self.onLoad)
        self.ui.nextTrackButton.connect("clicked(bool)", lambda: self.onStepTrack(1))
        self.ui.previousTrackButton.connect("clicked(bool)", lambda: self.onStepTrack(-1))
        self.ui.nextUnreviewedButton.connect("clicked(bool)", self.onNextUnreviewed)
        self.ui.markReviewedButton.connect("clicked(bool)", self.onMarkReviewed)
        self.ui.colorByComboBox.connect("currentTextChanged(QString)", self.onColorBy)
        self.ui.trackTableView.connect("selectionChanged()", self.onTrackSelected)
        self.ui.followCrosshairCheckBox.connect("toggled(bool)", self.onFollowCrosshair)
        for name in ("link", "unlink", "merge", "split", "reject", "rejectTrack", "restore"):
            getattr(self.ui, f"{name}Button").connect("clicked(bool)", lambda _=False, n=name: self.onEdit(n))
        self.ui.undoButton.connect("clicked(bool)", lambda: self.onHistory(self.logic.undo))
        self.ui.redoButton.connect("clicked(bool)", lambda: self.onHistory(self.logic.redo))
        self.ui.editInSegmentEditorButton.connect("clicked(bool)", self.onOpenSegmentEditor)
        self.ui.applySegmentButton.connect("clicked(bool)", self.onApplySegment)
        self.ui.exportButton.connect("clicked(bool)", self.onExport)
        self._addReferenceImport()

        for key, step in (("N", 1), ("P", -1)):
            shortcut = qt.QShortcut(qt.QKeySequence(key), slicer.util.mainWindow())
            shortcut.connect("activated()", lambda s=step: self.onStepTrack(s))
            self._shortcuts.append(shortcut)
        for key, action in (("U", self.onNextUnreviewed), ("R", self.onMarkReviewed)):
            shortcut = qt.QShortcut(qt.QKeySequence(key), slicer.util.mainWindow())
            shortcut.connect("activated()", action)
            self._shortcuts.append(shortcut)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.initializeParameterNode()
        self.onRefreshPatients()

    def _buildSettings(self) -> dict[str, Any]:
        """The "Settings" section of the Analysis panel: one widget per analysis setting (check box, choice or
        text, with the setting's help as tooltip), bound to the parameter node field of the same name."""
        import ctk
        from LesionResponseReview import settings_form

        section = ctk.ctkCollapsibleButton()
        section.text = "Settings (every analysis setting; see lesion-response settings)"
        section.collapsed = True
        form = qt.QFormLayout(section)
        widgets = {}
        for field in settings_form.fields():
            widget = qt.QCheckBox() if field.kind == "bool" else qt.QComboBox() if field.kind == "choice" \
                else qt.QLineEdit()
            widget.toolTip = f"{field.setting.path}: {field.description}"
            form.addRow(f"{field.setting.section}: {field.label}", widget)
            widgets[field.name] = widget
        self.ui.runCollapsibleButton.layout().addWidget(section, 0, 0, 1, 2)
        return widgets

    def cleanup(self) -> None:
        self.removeObservers()
        for shortcut in self._shortcuts:
            shortcut.setParent(None)
        self._shortcuts = []
        if self.logic:
            self.logic.cancel()
            self.logic.closeSession()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        self._disconnectParameterNode()

    def _disconnectParameterNode(self) -> None:
        if self._parameterNode and self._parameterNodeGuiTag:
            for tag in self._parameterNodeGuiTag:
                self._parameterNode.disconnectGui(tag)
        self._parameterNodeGuiTag = None

    def onSceneStartClose(self, caller: Any, event: Any) -> None:
        self.setParameterNode(None)
        if self.logic:
            self.logic.closeSession()
            self.logic.nodes = None

    def onSceneEndClose(self, caller: Any, event: Any) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())

    def setParameterNode(self, inputParameterNode: LesionResponseParameterNode | None) -> None:
        self._disconnectParameterNode()
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = (self._parameterNode.connectGui(self.ui),
                                         self._parameterNode.connectParametersToGui(self._settingWidgets))
            self.ui.inputFolderPathLineEdit.currentPath = str(self._parameterNode.inputFolder or "")
            self.ui.outputFolderPathLineEdit.currentPath = str(self._parameterNode.outputFolder or "")

    # ------------------------------------------------------------------------------------ input
    def onRefreshPatients(self) -> None:
        self.ui.dicomPatientComboBox.clear()
        self.ui.dicomPatientComboBox.addItem("(use the DICOM folder)", "")
        for label, uid in self.logic.databasePatients():
            self.ui.dicomPatientComboBox.addItem(label, uid)

    def _rememberFolders(self) -> None:
        """Store the chosen folders in the parameter node (saved with the scene)."""
        if self._parameterNode:
            if self.ui.inputFolderPathLineEdit.currentPath:
                self._parameterNode.inputFolder = Path(self.ui.inputFolderPathLineEdit.currentPath)
            self._parameterNode.outputFolder = self._outputFolder()

    def _outputFolder(self) -> Path:
        text = self.ui.outputFolderPathLineEdit.currentPath
        if not text:
            raise ValueError("Choose an analysis folder first.")
        return Path(text)

    # ------------------------------------------------------------------------------------ run
    def onRun(self) -> None:
        with slicer.util.tryWithErrorDisplay("Could not start the analysis.", waitCursor=True):
            if not self.logic.ensureDependencies():
                return
            patientUid = self.ui.dicomPatientComboBox.currentData
            inputFolder = (self.logic.exportDatabasePatient(patientUid) if patientUid
                           else Path(self.ui.inputFolderPathLineEdit.currentPath))
            from LesionResponseReview import settings_form

            values = {field.name: getattr(self._parameterNode, field.name) for field in settings_form.fields()}
            self.logic.startAnalysis(inputFolder, self._outputFolder(), values)
            self._rememberFolders()
            self.ui.runButton.enabled, self.ui.cancelButton.enabled = False, True
            self.ui.progressBar.setRange(0, 0)  # busy until the process prints a percentage

    def onCancel(self) -> None:
        self.logic.cancel()
        self.ui.statusLabel.text = "Cancelled."
        self._resetRunButtons()

    def _onProgress(self, message: str, percent: int | None) -> None:
        self.ui.statusLabel.text = message[-120:]
        if percent is not None:
            self.ui.progressBar.setRange(0, 100)
            self.ui.progressBar.setValue(percent)

    def _onRunFinished(self, ok: bool, message: str) -> None:
        self._resetRunButtons()
        self.ui.statusLabel.text = message
        if ok:
            self.onLoad()
        else:
            slicer.util.errorDisplay(message)

    def _resetRunButtons(self) -> None:
        self.ui.runButton.enabled, self.ui.cancelButton.enabled = True, False
        self.ui.progressBar.setRange(0, 100)

    def onLoad(self) -> None:
        with slicer.util.tryWithErrorDisplay("Could not load the analysis.", waitCursor=True):
            nodes = self.logic.loadResults(self._outputFolder())
            inputNote = self._showRecordedInput(nodes.analysis)
            self._rememberFolders()
            self.ui.trackTableView.setMRMLTableNode(nodes.table)
            self.ui.statusLabel.text = (f"{len(nodes.analysis.timepoints)} time points, "
                                        f"{len(nodes.analysis.tracks)} tracks loaded.{inputNote}")
            self.onNextUnreviewed()  # the table lists the review queue: start at its top

    def _showRecordedInput(self, analysis: Any) -> str:
        """Put the DICOM input the analysis records into the input folder field (Run then re-runs the analysis on
        it, reusing the folder's stage cache); when it is gone, the reason as a status note."""
        from LesionResponseReview import settings_form

        if self.ui.dicomPatientComboBox.currentData:
            return ""  # a Slicer database patient is chosen: Run exports it again
        try:
            self.ui.inputFolderPathLineEdit.currentPath = str(settings_form.recorded_input(analysis,
                                                                                           self._outputFolder()))
        except settings_form.RerunInputError as error:
            return f" {error}"
        return ""

    # ------------------------------------------------------------------------------------ tracks
    def onTrackSelected(self) -> None:
        row = self.ui.trackTableView.currentIndex().row()
        if self.logic.nodes is None or row < 0:
            return
        trackId = int(self.logic.nodes.table.GetTable().GetColumnByName("track_id").GetValue(row))
        with slicer.util.tryWithErrorDisplay("Could not show the track."):
            self.logic.jumpToTrack(trackId)
            self.ui.roiAEdit.text = str(trackId)
            self._showQueue()

    def onStepTrack(self, step: int) -> None:
        if self.logic.nodes is None:
            return
        with slicer.util.tryWithErrorDisplay("Could not step to the next track."):
            trackId = self.logic.stepTrack(step)
            self.ui.roiAEdit.text = str(trackId)
            table = self.logic.nodes.table.GetTable()
            ids = [table.GetColumnByName("track_id").GetValue(i) for i in range(table.GetNumberOfRows())]
            if trackId in ids:
                self.ui.trackTableView.selectRow(ids.index(trackId))

    def onNextUnreviewed(self) -> None:
        """Centre every view on the next unreviewed track of the review queue and select its row."""
        if self.logic.nodes is None:
            return
        with slicer.util.tryWithErrorDisplay("Could not step to the next unreviewed track."):
            trackId = self.logic.nextUnreviewed()
            if trackId is not None:
                self._selectRow(trackId)
            self._showQueue()

    def onMarkReviewed(self) -> None:
        """Mark the selected track reviewed (a review edit: saved, audited, undoable)."""
        if self.logic.nodes is None or self.logic.currentTrack is None:
            return
        with slicer.util.tryWithErrorDisplay("Could not mark the track reviewed.", waitCursor=True):
            self.logic.edit(_edits().MarkReviewed(self.logic.currentTrack))
            self._selectRow(self.logic.currentTrack)
            self._showQueue()

    def _selectRow(self, trackId: int) -> None:
        table = self.logic.nodes.table.GetTable()
        ids = [table.GetColumnByName("track_id").GetValue(i) for i in range(table.GetNumberOfRows())]
        if trackId in ids:
            self.ui.trackTableView.selectRow(ids.index(trackId))

    def _showQueue(self) -> None:
        """What is left of the review queue, and why the selected track is in it."""
        self.ui.queueSummaryLabel.text = self.logic.queueSummary()
        self.ui.queueReasonsLabel.text = self.logic.queueReasons()

    def onColorBy(self, text: str) -> None:
        if self.logic.nodes is not None:
            self.logic.setColorBy(text)

    def onFollowCrosshair(self, enabled: bool) -> None:
        """Shift + mouse move sets the crosshair in one view; the other views follow through the registration."""
        crosshair = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLCrosshairNode")
        if self._crosshairTag is not None and crosshair is not None:
            crosshair.RemoveObserver(self._crosshairTag)
        self._crosshairTag = None
        if enabled and crosshair is not None:
            self._crosshairTag = crosshair.AddObserver(vtk.vtkCommand.ModifiedEvent, self._onCrosshairMoved)

    def _onCrosshairMoved(self, crosshair: Any, event: Any) -> None:
        if self.logic.nodes is None or self._following:
            return
        sliceNode = crosshair.GetCursorPositionXYZ([0.0, 0.0, 0.0])  # the view the mouse is in
        if sliceNode is None:
            return
        self._following = True
        try:
            self.logic.followCrosshair(sliceNode, list(crosshair.GetCrosshairRAS()))
        finally:
            self._following = False

    # ------------------------------------------------------------------------------------ review
    def onEdit(self, button: str) -> None:
        """A review button: its typed edit (``REVIEW_BUTTONS``) from the fields A and B."""
        with slicer.util.tryWithErrorDisplay(f"Could not apply {button}.", waitCursor=True):
            edit = REVIEW_BUTTONS[button](self.ui.roiAEdit.text, self.ui.roiBEdit.text,
                                          self.logic.reviewSession())
            self.logic.edit(edit)

    def onHistory(self, step: Any) -> None:
        with slicer.util.tryWithErrorDisplay("Could not undo/redo.", waitCursor=True):
            step()

    def onOpenSegmentEditor(self) -> None:
        with slicer.util.tryWithErrorDisplay("Could not open the Segment Editor."):
            segmentation = self.logic.segmentationForRoi(self.ui.roiAEdit.text.strip())
            slicer.util.selectModule("SegmentEditor")
            editor = slicer.modules.segmenteditor.widgetRepresentation().self().editor
            editor.setSegmentationNode(segmentation)

    def onApplySegment(self) -> None:
        with slicer.util.tryWithErrorDisplay("Could not apply the edited segment.", waitCursor=True):
            editor = slicer.modules.segmenteditor.widgetRepresentation().self().editor
            self.logic.applyEditedSegment(editor.segmentationNode(), editor.currentSegmentID())

    # ------------------------------------------------------------------------------------ reference contours
    def _addReferenceImport(self) -> None:
        """A section for a site's reference contours (RTSTRUCT, DICOM SEG, label maps) as reader ROIs."""
        import ctk

        section = ctk.ctkCollapsibleButton()
        section.text = "Reference contours"
        section.collapsed = True
        layout = qt.QFormLayout(section)
        self.referencePathLineEdit = ctk.ctkPathLineEdit()
        self.referencePathLineEdit.filters = ctk.ctkPathLineEdit.Files | ctk.ctkPathLineEdit.Dirs
        self.referencePathLineEdit.toolTip = "RTSTRUCT or DICOM SEG file, NIfTI/NRRD label map, or a folder of them"
        layout.addRow("File or folder:", self.referencePathLineEdit)
        button = qt.QPushButton("Import as reader ROIs")
        button.toolTip = ("Each structure replaces the ROI it overlaps most or becomes a new ROI; structures of one "
                          "name are linked across time points. One edit: Undo takes it back.")
        button.connect("clicked(bool)", self.onImportReference)
        layout.addRow(button)
        self.layout.addWidget(section)

    def onImportReference(self) -> None:
        with slicer.util.tryWithErrorDisplay("Could not import the reference contours.", waitCursor=True):
            record = self.logic.importReference([self.referencePathLineEdit.currentPath])
            skipped = record.get("reference_skipped", [])
            self.ui.statusLabel.text = (f"Imported {len(record['edit']['rois'])} reference structures"
                                        + (f", {len(skipped)} not imported (see the audit)" if skipped else ""))

    # ------------------------------------------------------------------------------------ export
    def onExport(self) -> None:
        with slicer.util.tryWithErrorDisplay("Export failed.", waitCursor=True):
            folder = self.ui.exportFolderPathLineEdit.currentPath or str(self._outputFolder() / "report")
            paths = self.logic.export(Path(folder), addToDatabase=self.ui.addToDatabaseCheckBox.checked)
            self.ui.statusLabel.text = f"Exported {len(paths)} files to {folder}"


class LesionResponseLogic(ScriptedLoadableModuleLogic):
    """Thin layer over ``LesionResponseReview.mrml`` (scene; the same operations as the browser review app) and
    ``LesionResponseLib`` (computation)."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.nodes: Any = None
        self.session: Any = None
        self.currentTrack: int | None = None
        self.process: Any = None
        self.progressCallback = lambda message, percent: None
        self.finishedCallback = lambda ok, message: None
        self._tempDirs: list[Any] = []

    def getParameterNode(self) -> LesionResponseParameterNode:
        return LesionResponseParameterNode(super().getParameterNode())

    # ------------------------------------------------------------------------------------ dependencies
    @staticmethod
    def missingPackages() -> list[str]:
        """pip requirements of the library (:func:`pipRequirements`) that this Slicer lacks."""
        missing = []
        for requirement in pipRequirements():
            try:
                importlib.metadata.version(REQUIREMENT_NAME.match(requirement).group(1))
            except importlib.metadata.PackageNotFoundError:
                missing.append(requirement)
        return missing

    def ensureDependencies(self, askConfirmation: bool = True) -> bool:
        """Install missing packages (pip) and PyTorch (PyTorch extension) after the user agrees."""
        missing = self.missingPackages()
        if missing:
            if askConfirmation and not slicer.util.confirmOkCancelDisplay(
                    "LesionResponse needs these Python packages, which will be downloaded and installed now:\n"
                    + "\n".join(missing)):
                return False
            slicer.util.pip_install(missing)
        if importlib.util.find_spec("torch") is None:
            try:
                import PyTorchUtils
            except ImportError:
                slicer.util.errorDisplay("Install the PyTorch extension (Extensions Manager), restart Slicer, "
                                         "then run LesionResponse again.")
                return False
            if PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=askConfirmation) is None:
                return False
        return True

    # ------------------------------------------------------------------------------------ input
    @staticmethod
    def databasePatients() -> list[tuple[str, str]]:
        """(label, patient UID) of every patient in Slicer's DICOM database."""
        database = getattr(slicer, "dicomDatabase", None)
        if database is None or not database.isOpen:
            return []
        patients = []
        for uid in database.patients():
            name = database.nameForPatient(uid) if hasattr(database, "nameForPatient") else uid
            patients.append((f"{name} ({len(database.studiesForPatient(uid))} studies)", uid))
        return patients

    def exportDatabasePatient(self, patientUid: str) -> Path:
        """A folder of links to all files of a database patient (time points are then found as for a folder)."""
        database = slicer.dicomDatabase
        folder = tempfile.TemporaryDirectory(prefix="LesionResponse-")
        self._tempDirs.append(folder)
        for study in database.studiesForPatient(patientUid):
            for series in database.seriesForStudy(study):
                for i, path in enumerate(database.filesForSeries(series)):
                    target = Path(folder.name) / series / f"{i:05d}.dcm"
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.symlink(path, target)
        return Path(folder.name)

    # ------------------------------------------------------------------------------------ run
    @staticmethod
    def pythonExecutable() -> str:
        """Slicer's own Python interpreter (``PythonSlicer``), for the background process."""
        name = "PythonSlicer.exe" if os.name == "nt" else "PythonSlicer"
        candidate = Path(slicer.app.applicationDirPath()) / name
        return str(candidate) if candidate.exists() else sys.executable

    def startAnalysis(self, inputFolder: Path, outputFolder: Path, values: dict[str, Any]) -> None:
        """Run ``lesion-response analyze`` (``python -m LesionResponseLib``) in a separate process with the settings
        form's ``values`` (progress via its output; a bad value is refused here, naming the setting)."""
        from LesionResponseReview import settings_form

        self.cancel()
        # the analysis takes the folder's review lock for its whole run (it re-applies the review): release this
        # module's; an edit while it runs is refused naming the analysis, and Load opens the review again after it
        self.closeSession()
        params = settings_form.parameters_from_fields(values, source="Slicer module")
        arguments = ["-m", "LesionResponseLib", *settings_form.analyze_arguments(inputFolder, outputFolder,
                                                                                 params)]
        process = qt.QProcess()
        environment = qt.QProcessEnvironment.systemEnvironment()
        environment.insert("PYTHONPATH", os.pathsep.join(p for p in sys.path if p))
        from LesionResponseLib.tracking.elastix import slicer_handoff_environment

        for name, value in slicer_handoff_environment().items():  # SlicerElastix's programs, for registration
            environment.insert(name, value)
        process.setProcessEnvironment(environment)
        process.setProcessChannelMode(qt.QProcess.MergedChannels)
        process.connect("readyReadStandardOutput()", self._onProcessOutput)
        process.connect("finished(int,QProcess::ExitStatus)", self._onProcessFinished)
        self.process = process
        process.start(self.pythonExecutable(), arguments)

    def _onProcessOutput(self) -> None:
        text = bytes(self.process.readAllStandardOutput().data()).decode(errors="replace")
        for line in filter(None, (s.strip() for s in re.split(r"[\r\n]+", text))):
            match = PROGRESS_PATTERN.search(line)
            self.progressCallback(line, int(match.group(1)) if match else None)
            logging.info(line)

    def _onProcessFinished(self, exitCode: int, exitStatus: Any) -> None:
        ok = exitCode == 0
        self.process = None
        self.finishedCallback(ok, "Analysis finished." if ok else f"Analysis failed (exit code {exitCode}); "
                              "see the Python console for its output.")

    def cancel(self) -> None:
        """Stop a running analysis process."""
        if self.process is not None:
            process, self.process = self.process, None
            process.disconnect("finished(int,QProcess::ExitStatus)", self._onProcessFinished)
            process.kill()
            process.waitForFinished(5000)

    # ------------------------------------------------------------------------------------ results
    def loadResults(self, outputFolder: Path) -> Any:
        """Load an analysis folder into the scene and show it one view per time point."""
        from LesionResponseReview import mrml

        self.closeSession()
        self.nodes = mrml.load_analysis_into_scene(slicer.mrmlScene, outputFolder)
        layoutNode = slicer.app.layoutManager().layoutLogic().GetLayoutNode()
        mrml.setup_timepoint_layout(self.nodes, layoutNode)
        return self.nodes

    def jumpToTrack(self, trackId: int) -> dict[int, tuple[float, float, float]]:
        """Highlight the track (its ROIs opaque) and centre every view on it."""
        from LesionResponseReview import mrml

        self.currentTrack = trackId
        return mrml.select_track(self.nodes, trackId)

    def stepTrack(self, step: int) -> int:
        """Select the track ``step`` rows after the current one in the table (the review queue's order)."""
        from LesionResponseReview import mrml

        trackId = mrml.step_track(self.nodes, self.currentTrack, step, mrml.queue_order(self.nodes.analysis))
        self.jumpToTrack(trackId)
        return trackId

    def nextUnreviewed(self) -> int | None:
        """Centre every view on the next unreviewed track of the review queue (None: every track is reviewed)."""
        from LesionResponseReview import mrml

        trackId = mrml.next_unreviewed(self.nodes.analysis, self.currentTrack)
        if trackId is not None:
            self.jumpToTrack(trackId)
        return trackId

    def queueSummary(self) -> str:
        from LesionResponseReview import mrml

        return mrml.queue_summary(self.nodes.analysis) if self.nodes is not None else ""

    def queueReasons(self) -> str:
        """Why the selected track is in the review queue (its reasons, or that nothing stands out)."""
        from LesionResponseReview import mrml

        if self.nodes is None or self.currentTrack is None:
            return ""
        _columns, rows = mrml.track_rows(self.nodes.analysis)
        row = next((r for r in rows if r["track_id"] == self.currentTrack), None)
        if row is None:
            return ""
        return f"T{self.currentTrack:03d}: " + (row["review_reasons"] or "nothing stands out") + \
            (" (reviewed)" if row["reviewed"] else "")

    def setColorBy(self, colorBy: str) -> None:
        from LesionResponseReview import mrml

        self.nodes.color_by = colorBy
        mrml.refresh_colors(self.nodes)

    def followCrosshair(self, sliceNode: Any, ras: list[float]) -> None:
        from LesionResponseReview import mrml

        source = next((tp for tp, node in self.nodes.slice_nodes.items() if node is sliceNode), None)
        if source is not None:
            mrml.follow_crosshair(self.nodes, ras, source)

    # ------------------------------------------------------------------------------------ review
    def reviewSession(self) -> Any:
        if self.session is None:
            from LesionResponseLib.review import ReviewSession

            self.session = ReviewSession.open(self.nodes.out_dir, user=os.environ.get("USER", "reader"))
        return self.session

    def edit(self, edit: Any) -> dict[str, Any]:
        """Apply one typed review edit (``LesionResponseLib.review.edits``); its record."""
        from LesionResponseReview import mrml

        return mrml.apply_review_edit(self.nodes, self.reviewSession(), edit)

    def undo(self) -> dict[str, Any]:
        from LesionResponseReview import mrml

        return mrml.undo_review_edit(self.nodes, self.reviewSession())

    def redo(self) -> dict[str, Any]:
        from LesionResponseReview import mrml

        return mrml.redo_review_edit(self.nodes, self.reviewSession())

    def importReference(self, paths: list[str]) -> Any:
        """Import a site's reference contours as reader ROIs (one typed review edit, ``ReviewSession.reference_edit``)."""
        from LesionResponseReview import mrml

        edit, skipped = self.reviewSession().reference_edit(paths)
        return {**mrml.apply_review_edit(self.nodes, self.reviewSession(), edit), "reference_skipped": skipped}

    def closeSession(self) -> None:
        """Release the review session (and its lock on the analysis folder)."""
        if self.session is not None:
            self.session.close()
            self.session = None

    def segmentationForRoi(self, roiId: str) -> Any:
        """A segmentation node (for the Segment Editor) of the time point holding ``roiId`` (baseline when unknown)."""
        from LesionResponseReview import mrml

        rois = {r.roi_id: r for r in self.nodes.analysis.rois}
        timepoint = rois[roiId].timepoint if roiId in rois else 0
        return mrml.segmentation_for_editing(self.nodes, timepoint, slicer.modules.segmentations.logic())

    def applyEditedSegment(self, segmentationNode: Any, segmentId: str) -> Any:
        """Send a drawn/edited segment to the review: ``edit_roi`` for a known ROI, else ``add_roi``."""
        from LesionResponseReview import mrml

        timepoint = next(tp for tp, node in self.nodes.segmentations.items() if node is segmentationNode)
        segment = segmentationNode.GetSegmentation().GetSegment(segmentId)
        roiId = segment.GetTag(mrml.ROI_ID_TAG) if segment.HasTag(mrml.ROI_ID_TAG) else ""
        maskPath = self._exportSegmentMask(segmentationNode, segmentId, timepoint)
        from LesionResponseLib.review.edits import AddRoi, EditRoi

        return self.edit(EditRoi(roiId, str(maskPath)) if roiId else AddRoi(timepoint, str(maskPath)))

    def _exportSegmentMask(self, segmentationNode: Any, segmentId: str, timepoint: int) -> Path:
        """The segment as a binary label map on the time point's PET grid, written to a temporary NIfTI."""
        labelmap = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
        ids = vtk.vtkStringArray()
        ids.InsertNextValue(segmentId)
        slicer.modules.segmentations.logic().ExportSegmentsToLabelmapNode(
            segmentationNode, ids, labelmap, self.nodes.pet[timepoint])
        folder = tempfile.TemporaryDirectory(prefix="LesionResponse-mask-")
        self._tempDirs.append(folder)
        path = Path(folder.name) / f"tp{timepoint}_mask.nii.gz"
        slicer.util.saveNode(labelmap, str(path))
        slicer.mrmlScene.RemoveNode(labelmap)
        return path

    # ------------------------------------------------------------------------------------ export
    def export(self, folder: Path, addToDatabase: bool = True) -> list[Path]:
        """Write the patient report and the DICOM SEG/SR; optionally import the DICOM files into the database."""
        from LesionResponseReview import mrml

        if self.session is not None:
            self.session.save()
        paths = mrml.export_results(self.nodes.out_dir, folder)
        if addToDatabase and (folder / "dicom").is_dir():
            from DICOMLib import DICOMUtils

            DICOMUtils.importDicom(str(folder / "dicom"))
        return paths


class LesionResponseTest(ScriptedLoadableModuleTest):
    """Whole workflow on the demo (phantom) patient inside the desktop application."""

    def setUp(self) -> None:
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        self.setUp()
        self.test_Workflow()

    def test_Workflow(self) -> None:
        from LesionResponseReview import mrml

        from LesionResponseLib.config import AnalysisParameters
        from LesionResponseLib.phantom import generate_patient, load_truth

        self.delayDisplay("Generating the demo patient (phantom, 2 time points)")
        work = Path(tempfile.mkdtemp(prefix="LesionResponseTest-"))
        phantom = generate_patient(work / "phantom", seed=1, timepoints=2, vendor="siemens")
        truth = load_truth(phantom)
        logic = LesionResponseLogic()
        self.assertTrue(logic.ensureDependencies(askConfirmation=False))

        self.delayDisplay("Analysing (MONAI model segmentation, registration, tracking)")
        from LesionResponseLib.workflow import analyze

        analyze(phantom / "dicom", work / "analysis", AnalysisParameters(), progress=False)

        self.delayDisplay("Loading into the scene")
        nodes = logic.loadResults(work / "analysis")
        self.assertEqual(len(nodes.labels), truth["n_timepoints"])
        self.assertEqual(nodes.table.GetNumberOfRows(), len(nodes.analysis.tracks))

        self.delayDisplay("Jumping to the largest baseline lesion, then to every track")
        largest = max((les for les in truth["lesions"] if les["timepoints"].get("0", {}).get("present")),
                      key=lambda les: les["timepoints"]["0"]["volume_ml"])
        centre = largest["timepoints"]["0"]["centroid_mm"]
        roi = min((r for r in nodes.analysis.rois if r.timepoint == 0),
                  key=lambda r: sum((a - b) ** 2 for a, b in zip(r.centroid_mm, centre, strict=True)))
        self.assertLess(sum((a - b) ** 2 for a, b in zip(roi.centroid_mm, centre, strict=True)) ** 0.5, 5.0)
        track = next(t.track_id for t in nodes.analysis.tracks if roi.roi_id in t.rois.get(0, []))
        logic.jumpToTrack(track)
        sliceToRAS = nodes.slice_nodes[0].GetSliceToRAS()
        viewCentre = [sliceToRAS.GetElement(i, 3) for i in range(3)]
        expected = mrml.lps_to_ras(centre)
        self.assertLess(sum((a - b) ** 2 for a, b in zip(viewCentre, expected, strict=True)) ** 0.5, 5.0)
        for trackId in mrml.track_ids(nodes):
            centres = logic.jumpToTrack(trackId)
            self.assertEqual(sorted(centres), list(range(truth["n_timepoints"])))

        self.delayDisplay("The review queue: next unreviewed track, mark it reviewed, undo")
        first = logic.nextUnreviewed()
        self.assertEqual(first, mrml.queue_order(nodes.analysis)[0])
        logic.edit(_edits().MarkReviewed(first))
        self.assertIn(first, logic.nodes.analysis.reviewed_tracks)
        self.assertNotEqual(logic.nextUnreviewed(), first)
        logic.undo()
        self.assertNotIn(first, logic.nodes.analysis.reviewed_tracks)

        self.delayDisplay("Rejecting a lesion-ROI, undo")
        from LesionResponseLib.review.edits import RejectRoi

        logic.edit(RejectRoi(roi.roi_id))
        self.assertEqual(logic.nodes.analysis.roi(roi.roi_id).status, "rejected")
        name = mrml.roi_display(logic.nodes, roi.roi_id)[0]
        self.assertTrue(name.endswith("rejected"), name)
        logic.undo()
        self.assertEqual(logic.nodes.analysis.roi(roi.roi_id).status, "accepted")

        self.delayDisplay("Exporting the report and DICOM SEG/SR (and into the DICOM database when open)")
        database = getattr(slicer, "dicomDatabase", None)
        paths = logic.export(work / "export", addToDatabase=bool(database and database.isOpen))
        self.assertTrue(any(p.suffix == ".html" for p in paths))
        self.assertTrue(any(p.suffix == ".dcm" for p in paths))
        logic.closeSession()
        self.delayDisplay("LesionResponse workflow test passed")
