"""Export from the app: the patient report (HTML + PDF) and DICOM SEG + SR per time point into
``OUT/report/``, and a C-STORE of the DICOM files when a PACS is configured (``--pacs``)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from trame_server import Server

from LesionResponseLib.errors import LesionResponseError
from LesionResponseReview import mrml
from LesionResponseReview.web.context import ReviewContext
from LesionResponseReview.web.logic.base import FeatureLogic

NAMESPACE = "export"  # state keys of this feature


@dataclass
class ExportState:
    busy: bool = False
    message: str = ""
    error: str = ""
    files: list[str] = field(default_factory=list)
    pacs: str = ""  # "host:port (AET)" when configured
    send_to_pacs: bool = False
    pdf: bool = True


class ExportLogic(FeatureLogic[ExportState]):
    """Writes the exports in a worker thread (the views, the table and the other tabs stay live); edits are saved
    before, as always, and held while the export reads the folder."""

    def __init__(self, server: Server, context: ReviewContext) -> None:
        super().__init__(server, context, ExportState, NAMESPACE)
        self._task: asyncio.Task | None = None  # the running export (a reference keeps it from being collected)
        if context.pacs:
            host, port, aet = context.pacs
            self.data.pacs, self.data.send_to_pacs = f"{host}:{port} ({aet})", True

    def export(self) -> None:
        """Start the export as a task of the server's event loop: the click returns at once (trame awaits an
        awaitable handler and holds back the page's next messages until it ends, ~10-30 s with the PDF)."""
        if self.data.busy:
            return
        if self.context.busy:
            self.data.error = self.context.busy
            return
        self.data.busy, self.data.error, self.data.message = True, "", "exporting…"
        self.context.busy = "The report is being exported (Time points tab); edits wait until it ends."
        self._task = asyncio.get_running_loop().create_task(self._export())

    async def _export(self) -> None:
        formats = ("html", "pdf") if self.data.pdf else ("html",)
        pacs = self.context.pacs if self.data.send_to_pacs else None
        folder = self.context.out_dir / "report"
        try:
            paths = await asyncio.to_thread(mrml.export_results, self.context.out_dir, folder, formats, pacs)
        except (LesionResponseError, OSError) as error:
            with self.state:
                self.data.busy, self.data.error, self.data.message = False, str(error), ""
            return
        except Exception as error:  # a defect: say so rather than leave the button spinning (a task's error is silent)
            logging.getLogger(__name__).exception("export failed")
            with self.state:
                self.data.busy, self.data.message = False, ""
                self.data.error = f"Export failed ({type(error).__name__}: {error}); the server log has the details."
            return
        finally:
            self.context.busy = ""
        with self.state:
            self.data.files = [str(p.relative_to(self.context.out_dir)) for p in paths]
            sent = f", sent to {self.data.pacs}" if pacs else ""
            self.data.message = f"{len(paths)} files written to {folder}{sent}"
            self.data.busy = False
        self.context.log(f"export: {self.data.message}")
