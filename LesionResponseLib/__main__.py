"""``python -m LesionResponseLib``: the ``lesion-response`` command (e.g. where only an interpreter is at hand,
as in 3D Slicer's ``PythonSlicer``)."""

from LesionResponseLib.cli import app

app(prog_name="lesion-response")
