"""Where the review of one analysis folder stands: how many tracks a reader marked reviewed, how many are left in
the review queue, who reviewed and when, and who has it open now (its session lock) — what a cohort worklist
shows per patient."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from LesionResponseLib.review.store import session_lock

SESSION_FILE = "review/session.json"


@dataclass
class ReviewStatus:
    """One analysis folder's review (``analysed`` False: no ``analysis.json`` yet)."""

    analysed: bool
    tracks: int = 0
    reviewed: int = 0
    left: int = 0  # tracks of the queue not marked reviewed
    flagged_left: int = 0  # of those, the ones the queue gives a reason
    reviewers: list[str] = field(default_factory=list)  # users who edited the review, in order of their first edit
    last_review: str = ""  # UTC time of the last edit (ISO 8601)
    locked_by: str | None = None  # the user with the folder open now

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def review_status(out_dir: str | Path) -> ReviewStatus:
    """The :class:`ReviewStatus` of ``out_dir`` from its ``analysis.json`` (the reviewed analysis: a review saves
    its edits there) and ``review/`` files; an unreadable file counts as no review rather than stopping a list."""
    from LesionResponseLib.analysis.outputs import OutputFolderError, load_analysis
    from LesionResponseLib.analysis.queue import review_queue

    out = Path(out_dir)
    locked = session_lock(out, "").holder()
    try:
        analysis = load_analysis(out)
    except OutputFolderError:
        return ReviewStatus(analysed=False, locked_by=locked)
    items = review_queue(analysis)
    users, last = [], ""
    try:
        records = json.loads((out / SESSION_FILE).read_text(encoding="utf-8")).get("edits", [])
    except (OSError, ValueError):
        records = []
    for record in records:
        if record.get("user") and record["user"] not in users:
            users.append(record["user"])
        last = max(last, str(record.get("time", "")))
    return ReviewStatus(analysed=True, tracks=len(items), reviewed=sum(i.reviewed for i in items),
                        left=sum(not i.reviewed for i in items),
                        flagged_left=sum(not i.reviewed and bool(i.reasons) for i in items), reviewers=users,
                        last_review=last, locked_by=locked)
