"""``lesion-response review-app ANALYSIS``: serve one analysis folder for review in the browser.

This module imports only typer and the library's command conventions; trame, trame-slicer and VTK load when the
command runs (``--help`` stays fast).
"""

from __future__ import annotations

from pathlib import Path

import typer

from LesionResponseLib.report.pacs import parse_pacs_target
from LesionResponseLib.terminal import cli_console

ENCODERS = ("png", "jpeg")


def register(app: typer.Typer) -> None:
    """Add ``review-app`` to the ``lesion-response`` app."""
    app.command("review-app")(review_app_command)


def review_app_command(
    analysis: Path = typer.Argument(..., help="Analysis output folder (the OUT of `lesion-response analyze`), "
                                    "or a cohort's (`cohort-analyze`): then a worklist of its patients opens."),
    *, host: str = typer.Option("127.0.0.1",
                                help="Address to listen on. Anything but loopback requires a token."),
    port: int = typer.Option(0, help="Port (0 = a free one)."),
    user: str = typer.Option(None, "--user", help="Reader name recorded in the audit trail (default: OS user)."),
    token: str = typer.Option(None, "--token", help="Access token (default: a random one on non-loopback "
                                                    "addresses, none on loopback)."),
    open_browser: bool = typer.Option(False, "--open", help="Open the app in the default browser."),
    pacs: str = typer.Option(None, "--pacs", metavar="HOST:PORT[:AET]", parser=parse_pacs_target,
                             help="PACS to send the DICOM SEG/SR to on export (called AE title default ORTHANC)."),
    encoder: str = typer.Option("png", help="View image encoding: png (lossless) or jpeg (less bandwidth)."),
    idle_exit: int = typer.Option(0, "--idle-exit", min=0, help="Stop this many seconds after the last browser "
                                  "page closed (0: run until stopped); a cohort worklist starts each patient's "
                                  "review with it, so a reader's lock is released when they leave."),
) -> None:
    """Review an analysis in the browser: one linked view per time point, the track table in review-queue order,
    every correction (saved as made, with the audit trail), export. On a cohort output folder: a worklist of its
    patients (reviewed or not, queue items left, who reviewed, when, who has it open) that opens the one chosen.
    Prints the URL; Ctrl+C stops it."""
    import os

    from LesionResponseLib.review.session import default_user

    console = cli_console()
    os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")  # no display needed (Mesa EGL)
    if encoder not in ENCODERS:
        raise typer.BadParameter(f"unknown encoder {encoder!r}: {' or '.join(ENCODERS)}",
                                 param_hint="--encoder")
    from LesionResponseReview.web.security import protect, resolve_token

    required = resolve_token(host, token)
    from LesionResponseLib.workflow.cohort import is_cohort_folder

    if is_cohort_folder(analysis):
        _serve_worklist(analysis, host=host, port=port, user=user or default_user(), token=required,
                        open_browser=open_browser, console=console, idle_exit=idle_exit)
        return
    with console.status(f"loading {analysis}"):
        from LesionResponseReview import mrml

        images = mrml.prefetch_images(analysis)  # read while the Slicer libraries load below
        from trame.app import get_server

        from LesionResponseReview.web.app import ReviewApp

        server = get_server(None, client_type="vue3")
        if required:
            protect(server, required)
        app = ReviewApp(analysis, user or default_user(), server=server, pacs=pacs,
                        encoder="turbo-jpeg" if encoder == "jpeg" else encoder,
                        log=lambda line: console.print(line, highlight=False, markup=False), images=images)

    def announce(**_kwargs) -> None:
        shown = "localhost" if host in ("127.0.0.1", "localhost") else host
        url = f"http://{shown}:{server.port}/" + (f"?token={required}" if required else "")
        console.print(f"[bold green]LesionResponse review running[/] for {analysis} as {app.context.user}")
        console.print(f"  open {url}", highlight=False)
        console.print("  every edit is saved as it is made; Ctrl+C stops the server")

    server.controller.on_server_ready.add(announce)
    _run_until_stopped(server, app, host=host, port=port, open_browser=open_browser, console=console,
                       idle_exit=idle_exit)


def _run_until_stopped(server, app, *, host: str, port: int, open_browser: bool, console, idle_exit: int) -> None:
    """Serve until Ctrl+C or SIGTERM (or ``idle_exit`` s after the last page closed, when not 0), then close
    ``app`` (its lock is released; edits are saved anyway)."""
    import signal

    def stop(*_args) -> None:  # SIGTERM stops like Ctrl+C
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        server.start(host=host, port=port, open_browser=open_browser, show_connection_info=False,
                     disable_logging=True, **({"timeout": idle_exit} if idle_exit else {}))
    except KeyboardInterrupt:
        console.print("stopped")
    finally:
        app.close()


def _serve_worklist(out: Path, *, host: str, port: int, user: str, token: str | None, open_browser: bool,
                    console, idle_exit: int) -> None:
    """Serve the cohort worklist of ``out`` (its patients' reviews run as apps of their own, each stopping
    ``idle_exit`` s after its page closed; 0: the worklist's default)."""
    from trame.app import get_server

    from LesionResponseReview.web.security import protect
    from LesionResponseReview.web.worklist_app import WorklistApp

    server = get_server(None, client_type="vue3")
    if token:
        protect(server, token)
    app = WorklistApp(out, user, host, token, server=server, idle_exit=idle_exit or None)

    def announce(**_kwargs) -> None:
        shown = "localhost" if host in ("127.0.0.1", "localhost") else host
        url = f"http://{shown}:{server.port}/" + (f"?token={token}" if token else "")
        console.print(f"[bold green]LesionResponse worklist running[/] for the cohort {out} as {user}")
        console.print(f"  open {url} (add user=NAME to the address to open patients as NAME)", highlight=False)

    server.controller.on_server_ready.add(announce)
    _run_until_stopped(server, app, host=host, port=port, open_browser=open_browser, console=console, idle_exit=0)
