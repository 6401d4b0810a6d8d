"""The audit trail shown in the app: every action of ``review/audit.jsonl`` (apply, undo, redo, repair), newest
first, with who, when, what and the tracks and categories before -> after."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from trame_server import Server

from LesionResponseReview.web.context import ReviewContext
from LesionResponseReview.web.logic.base import FeatureLogic

MAX_SHOWN = 200  # entries listed (the file keeps everything)


NAMESPACE = "audit"  # state keys of this feature


@dataclass
class AuditState:
    entries: list[dict] = field(default_factory=list)
    count: int = 0


def audit_entries(review_dir: Path, limit: int = MAX_SHOWN) -> tuple[list[dict], int]:
    """``(entries newest first, total)`` of ``review_dir/audit.jsonl`` in display form."""
    from LesionResponseLib.review.cli import describe_record

    path = review_dir / "audit.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    records = [json.loads(line) for line in lines if line.strip()]
    entries = []
    for i, record in enumerate(reversed(records[-limit:])):
        action = record.get("action", "")
        if action == "apply" and "edit" in record:
            details = describe_record(record)[1:]
            what = f"{record.get('type')} " + " ".join(f"{k}={v}" for k, v in record["edit"].items()
                                                         if k not in ("type", "mask") and v not in ("", None, False))
        else:
            details = [record.get("note", "")] if record.get("note") else []
            what = f"{record.get('type', '')} (edit {record.get('id', '-')})" if record.get("id") else ""
        entries.append({"n": len(records) - i, "time": record.get("time", ""), "user": record.get("user", ""),
                        "action": action, "what": what.strip(), "details": [d.strip() for d in details if d]})
    return entries, len(records)


class AuditLogic(FeatureLogic[AuditState]):
    """Re-reads the audit trail after load and every edit."""

    def __init__(self, server: Server, context: ReviewContext) -> None:
        super().__init__(server, context, AuditState, NAMESPACE)
        context.listeners.append(self._on_change)

    def _on_change(self, what: str) -> None:
        if what in ("loaded", "edited"):
            self.data.entries, self.data.count = audit_entries(self.context.out_dir / "review")
