"""``lesion-response review ANALYSIS link|unlink|merge|split|reject|reject-track|restore|add|edit|import-rois|
reference|site|reviewed|undo|redo|history``.

Each command opens the review session of ANALYSIS (taking its lock), applies one edit (a typed
:mod:`LesionResponseLib.review.edits` object), saves atomically and prints what changed: tracks and their
categories before -> after (``--json``: the edit record).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from LesionResponseLib.cli_base import json_option, new_app
from LesionResponseLib.review import edits
from LesionResponseLib.terminal import cli_console, emit_json

review_app = new_app(help="Reader review: correct matches and ROIs, with undo/redo and an audit trail.")


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the ``lesion-response`` app."""
    app.add_typer(review_app, name="review")


@review_app.callback()
def review_main(
    ctx: typer.Context,
    analysis: Path = typer.Argument(..., help="Analysis output folder (the OUT of `lesion-response analyze`)."),
    user: str = typer.Option(None, "--user", help="Reader name recorded in the audit trail (default: OS user)."),
    as_json: bool = json_option("the edit record (history: every record)"),
) -> None:
    """Edit the analysis in ANALYSIS; every edit is recorded in ANALYSIS/review/ and the outputs are rewritten."""
    ctx.obj = {"analysis": analysis, "user": user, "json": as_json}


USER_HELP = "Reader name recorded in the audit trail (default: the group's --user, else the OS user)."


def _run(ctx: typer.Context, action: Callable[[Any], Any], user: str | None = None, undone: str = "") -> None:
    """Open the session, run ``action(session)`` (an edit record, or a list of them), print it (``undone``:
    "undone"/"redone", the record's first line only)."""
    from LesionResponseLib.review.session import ReviewSession

    with cli_console(stderr=True).status("recomputing tracks and categories"), \
            ReviewSession.open(ctx.obj["analysis"], user or ctx.obj["user"]) as session:
        result = action(session)
    if ctx.obj["json"]:
        emit_json(result)
        return
    records = [result] if isinstance(result, dict) else result
    lines = [line for record in records for line in describe_record(record)] or ["no edits"]
    console = cli_console()
    for line in [f"{undone}: {lines[0]}"] if undone else lines:
        console.print(line, highlight=False, markup=False)


def _apply(ctx: typer.Context, user: str | None, edit: Callable[[Any], edits.Edit]) -> None:
    """Apply the typed edit ``edit(session)`` (a function of the session for edits that read its state)."""
    _run(ctx, lambda session: session.apply(edit(session)), user)


def _categories(entry: dict[str, Any] | None) -> str:
    if entry is None:
        return "(no track)"
    cats = ", ".join(f"t{k} {v}" for k, v in sorted(entry["categories"].items(), key=lambda kv: int(kv[0])))
    return f"{' '.join(entry['rois'])} [{cats or 'baseline only'}]"


def describe_record(record: dict[str, Any]) -> list[str]:
    """Human-readable lines of an edit record: the edit, then each changed track before -> after."""
    params = {k: v for k, v in record["edit"].items() if k not in ("type", "rois")}
    lines = [f"{record['type']} {params} by {record['user']} at {record['time']} (edit {record['id']})"]
    lines += [f"  imported {r['name']!r} at time point {r['timepoint']}" for r in record["edit"].get("rois", [])]
    lines += [f"  not imported: {s['name'] or s['file']} ({s['reason']})" for s in record.get("reference_skipped", [])]
    for track_id in record.get("tracks_before", {}):
        before, after = record["tracks_before"][track_id], record["tracks_after"][track_id]
        lines.append(f"  track {track_id}: {_categories(before)} -> {_categories(after)}")
    if record.get("heterogeneous_before") != record.get("heterogeneous_after"):
        lines.append(f"  heterogeneous: {record.get('heterogeneous_before')} -> {record.get('heterogeneous_after')}")
    for name in ("references", "sites"):
        for key, after in record.get(f"{name}_after", {}).items():
            lines.append(f"  {name[:-1]} {key}: {_short(record[f'{name}_before'].get(key))} -> {_short(after)}")
    if len(lines) == 1:
        lines.append("  no track or category changed")
    return lines


def _short(value: Any) -> str:
    """A reference region (centre, SUVmean) or a site, as the CLI prints it."""
    if isinstance(value, dict):
        return f"SUVmean {value['suv_mean']:.2f} at {tuple(value['centre_mm'])} mm ({value['source']})"
    return "none" if value in (None, "") else str(value)


@review_app.command("link")
def link_command(ctx: typer.Context, user: str = typer.Option(None, "--user", help=USER_HELP),
                 roi_a: str = typer.Argument(..., help="ROI id, e.g. tp0-L0003."),
                 roi_b: str = typer.Argument(..., help="ROI id of another time point."),
                 allow_split_merge: bool = typer.Option(False, help="Allow two ROIs of one time point in the "
                                                                    "resulting track.")) -> None:
    """Put two ROIs in one track."""
    _apply(ctx, user, lambda s: edits.LinkRois(roi_a, roi_b, allow_split_merge))


@review_app.command("unlink")
def unlink_command(ctx: typer.Context, user: str = typer.Option(None, "--user", help=USER_HELP),
                   roi: str = typer.Argument(..., help="ROI id to take out of its track.")) -> None:
    """Take a ROI out of its track (the automatic link will not come back on a re-run)."""
    _apply(ctx, user, lambda s: edits.UnlinkRoi(roi))


@review_app.command("merge")
def merge_command(ctx: typer.Context, user: str = typer.Option(None, "--user", help=USER_HELP),
                  track_a: int = typer.Argument(..., help="Track id."),
                  track_b: int = typer.Argument(..., help="Other track id.")) -> None:
    """Merge two tracks into one."""
    _apply(ctx, user, lambda s: edits.MergeTracks(track_a, track_b))


@review_app.command("split")
def split_command(ctx: typer.Context, user: str = typer.Option(None, "--user", help=USER_HELP),
                  track: int = typer.Argument(..., help="Track id."),
                  timepoint: int = typer.Argument(..., help="First time point of the new track.")) -> None:
    """Split a track: its ROIs from TIMEPOINT on form a new track."""
    _apply(ctx, user, lambda s: edits.SplitTrack(track, timepoint))


REASON_HELP = "Why (physiological uptake, artefact...)."


@review_app.command("reject")
def reject_command(ctx: typer.Context, user: str = typer.Option(None, "--user", help=USER_HELP),
                   roi: str = typer.Argument(..., help="ROI id."),
                   reason: str = typer.Option("", "--reason", help=REASON_HELP)) -> None:
    """Reject a ROI: not a lesion."""
    _apply(ctx, user, lambda s: edits.RejectRoi(roi, reason))


@review_app.command("reject-track")
def reject_track_command(ctx: typer.Context, user: str = typer.Option(None, "--user", help=USER_HELP),
                         track: int = typer.Argument(..., help="Track id."),
                         reason: str = typer.Option("", "--reason", help=REASON_HELP)) -> None:
    """Reject every ROI of a track in one edit (e.g. an adrenal found on every scan): not a lesion."""
    _apply(ctx, user, lambda s: edits.RejectRois(edits.track_roi_ids(s.state, track), reason))


@review_app.command("restore")
def restore_command(ctx: typer.Context, user: str = typer.Option(None, "--user", help=USER_HELP),
                    roi: str = typer.Argument(..., help="Rejected ROI id.")) -> None:
    """Accept a rejected ROI again."""
    _apply(ctx, user, lambda s: edits.RestoreRoi(roi))


@review_app.command("add")
def add_command(ctx: typer.Context, user: str = typer.Option(None, "--user", help=USER_HELP),
                timepoint: int = typer.Argument(..., help="Time point index (0 = baseline)."),
                mask: Path = typer.Argument(..., help="Label mask (NIfTI/NRRD; non-zero = ROI).")) -> None:
    """Add a ROI drawn by the reader (not linked: link it explicitly)."""
    _run(ctx, lambda s: s.add_roi(timepoint, mask), user)


@review_app.command("edit")
def edit_command(ctx: typer.Context, user: str = typer.Option(None, "--user", help=USER_HELP),
                 roi: str = typer.Argument(..., help="ROI id."),
                 mask: Path = typer.Argument(..., help="New mask of that ROI (non-zero = ROI).")) -> None:
    """Replace a ROI's mask and re-measure it."""
    _run(ctx, lambda s: s.edit_roi(roi, mask), user)


@review_app.command("import-rois")
def import_rois_command(ctx: typer.Context, user: str = typer.Option(None, "--user", help=USER_HELP),
                        files: list[Path] = typer.Argument(..., help="Reference contours: RTSTRUCT or DICOM SEG files, "
                                                                     "NIfTI/NRRD label maps, or folders of them."),
                        timepoint: int = typer.Option(None, "--timepoint", help="Time point of label maps (else from "
                                                      "tp{k} in the file name) and of DICOM contours that reference no "
                                                      "loaded series."),
                        names: str = typer.Option(None, "--names", help="Only structures whose name matches this "
                                                  "regular expression.")) -> None:
    """Import reference contours as reader ROIs, in one edit (one undo): each structure replaces the ROI it overlaps
    most, or becomes a new ROI; structures of one name are linked across time points."""

    _run(ctx, lambda s: s.import_reference(files, timepoint, names), user)


@review_app.command("reference")
def reference_command(ctx: typer.Context, user: str = typer.Option(None, "--user", help=USER_HELP),
                      timepoint: int = typer.Argument(..., help="Time point index (0 = baseline)."),
                      organ: str = typer.Argument(..., help="liver or spleen."),
                      centre: str = typer.Option(..., "--centre", help="Sphere centre X,Y,Z (mm, DICOM LPS of that "
                                                 "time point's scan: +x patient's left, +y posterior, +z head), "
                                                 "e.g. --centre=-80,-10,-560."),
                      diameter: float = typer.Option(None, "--diameter-mm", help="Sphere diameter (mm; default: "
                                                     "the region's)."),
                      ) -> None:
    """Move a reference region (the sphere of normal liver or spleen) and recompute the ratios and grades."""
    try:
        point = tuple(float(v) for v in centre.split(","))
    except ValueError:
        point = ()
    if len(point) != 3:
        raise typer.BadParameter(f"{centre!r} is not X,Y,Z in mm", param_hint="--centre")
    _apply(ctx, user, lambda s: edits.MoveReferenceRegion(timepoint, organ, list(point), diameter))


@review_app.command("site")
def site_command(ctx: typer.Context, user: str = typer.Option(None, "--user", help=USER_HELP),
                 roi: str = typer.Argument(..., help="ROI id."),
                 site: str = typer.Argument(..., help="liver, bone, 'lymph node', pancreas, lung or "
                                                      "'peritoneum/other'.")) -> None:
    """Set a lesion-ROI's site (the burden by site follows)."""
    _apply(ctx, user, lambda s: edits.SetRoiSite(roi, site))


@review_app.command("reviewed")
def reviewed_command(ctx: typer.Context, user: str = typer.Option(None, "--user", help=USER_HELP),
                     track: int = typer.Argument(..., help="Track id.")) -> None:
    """Mark a track reviewed: it leaves the review queue's list of what is left (undo takes the mark back)."""
    _apply(ctx, user, lambda s: edits.MarkReviewed(track))


@review_app.command("undo")
def undo_command(ctx: typer.Context, user: str = typer.Option(None, "--user", help=USER_HELP)) -> None:
    """Undo the last edit."""
    _run(ctx, lambda s: s.undo(), user, undone="undone")


@review_app.command("redo")
def redo_command(ctx: typer.Context, user: str = typer.Option(None, "--user", help=USER_HELP)) -> None:
    """Redo the last undone edit."""
    _run(ctx, lambda s: s.redo(), user, undone="redone")


@review_app.command("history")
def history_command(ctx: typer.Context, user: str = typer.Option(None, "--user", help=USER_HELP)) -> None:
    """List the applied edits, oldest first."""
    _run(ctx, lambda s: s.history(), user)
