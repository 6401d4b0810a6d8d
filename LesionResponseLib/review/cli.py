"""``lesion-response review OUT link|unlink|merge|split|reject|reject-track|restore|add|edit|reference|site|undo|redo|history``.

Each command opens the review session of OUT (taking its lock), applies one edit, saves atomically and
prints what changed: tracks and their categories before -> after. Errors print without a traceback, exit 2.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from LesionResponseLib.errors import LesionResponseError

review_app = typer.Typer(help="Reader review: correct matches and ROIs, with undo/redo and an audit trail.",
                         no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the ``lesion-response`` app."""
    app.add_typer(review_app, name="review")


@review_app.callback()
def review_main(
    ctx: typer.Context,
    out: Path = typer.Argument(..., help="Analysis output folder (the OUT of `lesion-response analyze`)."),
    user: str = typer.Option(None, "--user", help="Reader name recorded in the audit trail (default: OS user)."),
) -> None:
    """Edit the analysis in OUT; every edit is recorded in OUT/review/ and the outputs are rewritten."""
    ctx.obj = {"out": out, "user": user}


USER_HELP = "Reader name recorded in the audit trail (default: the group's --user, else the OS user)."


def _run(ctx: typer.Context, action: Callable[[Any], Any], user: str | None = None) -> None:
    from rich.console import Console

    from LesionResponseLib.review.session import ReviewSession

    console = Console()
    try:
        with console.status("recomputing tracks and categories"), \
                ReviewSession.open(ctx.obj["out"], user or ctx.obj["user"]) as session:
            result = action(session)
    except LesionResponseError as error:
        Console(stderr=True).print(f"error: {error}", highlight=False, markup=False, style="red")
        raise typer.Exit(2) from None
    for line in describe_record(result) if isinstance(result, dict) else result:
        console.print(line, highlight=False, markup=False)


def _categories(entry: dict[str, Any] | None) -> str:
    if entry is None:
        return "(no track)"
    cats = ", ".join(f"t{k} {v}" for k, v in sorted(entry["categories"].items(), key=lambda kv: int(kv[0])))
    return f"{' '.join(entry['rois'])} [{cats or 'baseline only'}]"


def describe_record(record: dict[str, Any]) -> list[str]:
    """Human-readable lines of an edit record: the edit, then each changed track before -> after."""
    params = {k: v for k, v in record["edit"].items() if k != "type"}
    lines = [f"{record['type']} {params} by {record['user']} at {record['time']} (edit {record['id']})"]
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
    _run(ctx, lambda s: s.link(roi_a, roi_b, allow_split_merge), user)


@review_app.command("unlink")
def unlink_command(ctx: typer.Context, user: str = typer.Option(None, "--user", help=USER_HELP), roi: str = typer.Argument(..., help="ROI id to take out of its track.")) -> None:
    """Take a ROI out of its track (the automatic link will not come back on a re-run)."""
    _run(ctx, lambda s: s.unlink(roi), user)


@review_app.command("merge")
def merge_command(ctx: typer.Context, user: str = typer.Option(None, "--user", help=USER_HELP), track_a: int = typer.Argument(..., help="Track id."),
                  track_b: int = typer.Argument(..., help="Other track id.")) -> None:
    """Merge two tracks into one."""
    _run(ctx, lambda s: s.merge(track_a, track_b), user)


@review_app.command("split")
def split_command(ctx: typer.Context, user: str = typer.Option(None, "--user", help=USER_HELP), track: int = typer.Argument(..., help="Track id."),
                  timepoint: int = typer.Argument(..., help="First time point of the new track.")) -> None:
    """Split a track: its ROIs from TIMEPOINT on form a new track."""
    _run(ctx, lambda s: s.split(track, timepoint), user)


@review_app.command("reject")
def reject_command(ctx: typer.Context, user: str = typer.Option(None, "--user", help=USER_HELP), roi: str = typer.Argument(..., help="ROI id."),
                   reason: str = typer.Option("", "--reason", help="Why (physiological uptake, artefact...).")) -> None:
    """Reject a ROI: not a lesion."""
    _run(ctx, lambda s: s.reject(roi, reason), user)


@review_app.command("reject-track")
def reject_track_command(ctx: typer.Context, user: str = typer.Option(None, "--user", help=USER_HELP),
                         track: int = typer.Argument(..., help="Track id."),
                         reason: str = typer.Option("", "--reason", help="Why (physiological uptake, artefact...).")) -> None:
    """Reject every ROI of a track in one edit (e.g. an adrenal found on every scan): not a lesion."""
    _run(ctx, lambda s: s.reject_track(track, reason), user)


@review_app.command("restore")
def restore_command(ctx: typer.Context, user: str = typer.Option(None, "--user", help=USER_HELP), roi: str = typer.Argument(..., help="Rejected ROI id.")) -> None:
    """Accept a rejected ROI again."""
    _run(ctx, lambda s: s.restore(roi), user)


@review_app.command("add")
def add_command(ctx: typer.Context, user: str = typer.Option(None, "--user", help=USER_HELP), timepoint: int = typer.Argument(..., help="Time point index (0 = baseline)."),
                mask: Path = typer.Argument(..., help="Label mask (NIfTI/NRRD; non-zero = ROI).")) -> None:
    """Add a ROI drawn by the reader (not linked: link it explicitly)."""
    _run(ctx, lambda s: s.add_roi(timepoint, mask), user)


@review_app.command("edit")
def edit_command(ctx: typer.Context, user: str = typer.Option(None, "--user", help=USER_HELP), roi: str = typer.Argument(..., help="ROI id."),
                 mask: Path = typer.Argument(..., help="New mask of that ROI (non-zero = ROI).")) -> None:
    """Replace a ROI's mask and re-measure it."""
    _run(ctx, lambda s: s.edit_roi(roi, mask), user)


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
    _run(ctx, lambda s: s.move_reference(timepoint, organ, point, diameter), user)


@review_app.command("site")
def site_command(ctx: typer.Context, user: str = typer.Option(None, "--user", help=USER_HELP),
                 roi: str = typer.Argument(..., help="ROI id."),
                 site: str = typer.Argument(..., help="liver, bone, 'lymph node', pancreas, lung or "
                                                      "'peritoneum/other'.")) -> None:
    """Set a lesion-ROI's site (the burden by site follows)."""
    _run(ctx, lambda s: s.set_site(roi, site), user)


@review_app.command("undo")
def undo_command(ctx: typer.Context, user: str = typer.Option(None, "--user", help=USER_HELP)) -> None:
    """Undo the last edit."""
    _run(ctx, lambda s: [f"undone: {line}" for line in describe_record(s.undo())[:1]], user)


@review_app.command("redo")
def redo_command(ctx: typer.Context, user: str = typer.Option(None, "--user", help=USER_HELP)) -> None:
    """Redo the last undone edit."""
    _run(ctx, lambda s: [f"redone: {line}" for line in describe_record(s.redo())[:1]], user)


@review_app.command("history")
def history_command(ctx: typer.Context, user: str = typer.Option(None, "--user", help=USER_HELP)) -> None:
    """List the applied edits, oldest first."""
    _run(ctx, lambda s: [line for r in s.history() for line in describe_record(r)] or ["no edits"], user)
