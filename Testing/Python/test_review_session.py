"""Reader review on a phantom analysis: every edit type against truth, undo/redo byte for byte, conflicts,
audit trail, crash safety, re-run reconciliation and the CLI.

The "automatic" analysis is built from the phantom's true lesion masks (real DICOM SUV, real
``measure_rois``/``build_tracks``/``assess_response``/``write_outputs``) with the true links, into which
matching errors are injected: a missed link (lesion 7, tp1->tp2), a false link (lesion 11 at tp0 -> lesion 10
at tp1) and a swapped link (lesion 18 at tp1 -> lesion 22 at tp2 instead of lesion 22 tp1 -> tp2).
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from LesionResponseLib.analysis.response import roi_measure
from LesionResponseLib.cli_base import EXIT_INPUT
from LesionResponseLib.config import AnalysisParameters
from LesionResponseLib.datamodel import Analysis, Link
from LesionResponseLib.review import ReviewError, ReviewSession, reapply_review

MISSED = ("tp1-L0007", "tp2-L0007")
FALSE = [("tp0-L0011", "tp1-L0010"), ("tp1-L0010", "tp2-L0011")]
SWAPPED_OUT = ("tp1-L0022", "tp2-L0022")
SWAPPED_IN = ("tp1-L0018", "tp2-L0022")


def _build(phantom: Path, out: Path, relabel: dict[int, int] | None = None, drop: tuple[int, int] | None = None) -> None:
    """Write an analysis folder from truth masks; ``relabel`` adds an offset per time point (a re-run that
    numbers ROIs differently), ``drop`` = (time point, label) removed (a re-run that misses a lesion)."""
    from LesionResponseLib.analysis import assess_response, measure_rois, write_outputs
    from LesionResponseLib.dicomio import find_timepoints, load_timepoint
    from LesionResponseLib.phantom import load_truth
    from LesionResponseLib.tracking import build_tracks
    from LesionResponseLib.tracking.evaluate import truth_links

    truth = load_truth(phantom)
    infos = find_timepoints(phantom / "dicom").timepoints
    offsets = relabel or {}
    labels, rois = {}, []
    for info in infos:
        image = sitk.ReadImage(str(phantom / "truth" / f"tp{info.index}_lesions.nii.gz"))
        array = sitk.GetArrayFromImage(image).astype(np.uint16)
        if drop and drop[0] == info.index:
            array[array == drop[1]] = 0
        array[array > 0] += offsets.get(info.index, 0)
        labels[info.index] = sitk.GetImageFromArray(array)
        labels[info.index].CopyInformation(image)
        suv_path = out / "suv" / f"tp{info.index}.nii.gz"
        suv_path.parent.mkdir(parents=True, exist_ok=True)
        suv = load_timepoint(info, with_ct=False).pet_suv
        sitk.WriteImage(suv, str(suv_path), True)
        rois += measure_rois(labels[info.index], suv, info.index)
    pairs = (truth_links(truth) - {MISSED, SWAPPED_OUT}) | set(FALSE) | {SWAPPED_IN}

    def moved(roi_id: str) -> str:
        tp, label = int(roi_id[2:roi_id.index("-")]), int(roi_id[-4:]) if len(roi_id) == 9 else int(roi_id[5:])
        return f"tp{tp}-L{label + offsets.get(tp, 0):04d}"

    known = {r.roi_id for r in rois}
    links = [Link(moved(a), moved(b)) for a, b in sorted(pairs) if moved(a) in known and moved(b) in known]
    params = AnalysisParameters().updated({"segmentation.method": "truth"})
    tracks = build_tracks(rois, links)
    responses, heterogeneous = assess_response(tracks, rois, len(infos), params)
    analysis = Analysis(truth["patient_id"], infos, rois, links=links, tracks=tracks, responses=responses,
                        heterogeneous=heterogeneous, parameters=params)
    write_outputs(analysis, out, labels)


@pytest.fixture(scope="module")
def phantom(make_phantom) -> Path:
    return make_phantom(seed=1, timepoints=3)


@pytest.fixture(scope="module")
def auto_dir(phantom, build_once) -> Path:
    """The automatic analysis, built once per session; tests edit copies of it (``out``)."""
    return build_once("review_session_auto", lambda folder: _build(phantom, folder / "out")) / "out"


@pytest.fixture()
def out(auto_dir, tmp_path) -> Path:
    target = tmp_path / "out"
    shutil.copytree(auto_dir, target)
    return target


@pytest.fixture(scope="module")
def truth(phantom) -> dict:
    from LesionResponseLib.phantom import load_truth

    return load_truth(phantom)


def _truth_categories(truth: dict, lesion_id: int) -> dict[int, str]:
    lesion = next(x for x in truth["lesions"] if x["lesion_id"] == lesion_id)
    return {int(k): v for k, v in lesion["categories"].items()}


def _track(session: ReviewSession, roi_id: str):
    analysis = session.state.analysis
    track = analysis.track(session.state.track_id_of(roi_id))
    response = next(r for r in analysis.responses if r.track_id == track.track_id)
    return track, response


def _members(track) -> set[str]:
    return {r for ids in track.rois.values() for r in ids}


def _snapshot(out: Path) -> dict[str, bytes]:
    names = ["analysis.json", "rois.csv", "tracks.csv", "timepoints.csv"]
    names += [f"labels/{p.name}" for p in sorted((out / "labels").glob("*.nii.gz"))]
    return {name: (out / name).read_bytes() for name in names}


def test_merge_joins_a_missed_link_and_matches_truth(out, truth):
    with ReviewSession.open(out, "alice") as session:
        first, _ = _track(session, "tp1-L0007")
        second, _ = _track(session, "tp2-L0007")
        assert first.track_id != second.track_id
        untouched = {t.track_id: _members(t) for t in session.state.analysis.tracks
                     if t.track_id not in (first.track_id, second.track_id)}
        record = session.merge(first.track_id, second.track_id)
        merged, response = _track(session, "tp0-L0007")
        assert _members(merged) == {"tp0-L0007", "tp1-L0007", "tp2-L0007"}
        assert response.categories == _truth_categories(truth, 7)
        after = {t.track_id: _members(t) for t in session.state.analysis.tracks if t.track_id in untouched}
        assert after == untouched  # exactly the two tracks changed
        assert set(record["tracks_before"]) == {str(first.track_id), str(second.track_id)}
        assert record["user"] == "alice" and record["type"] == "merge"


def test_link_is_equivalent_to_merge_and_reader_link_is_marked(out, truth):
    with ReviewSession.open(out, "alice") as session:
        session.link(*MISSED)
        _, response = _track(session, "tp2-L0007")
        assert response.categories == _truth_categories(truth, 7)
        assert any(x.source == "reader" and (x.roi_a, x.roi_b) == MISSED for x in session.state.analysis.links)


def test_unlink_removes_a_false_link_and_both_tracks_match_truth(out, truth):
    with ReviewSession.open(out, "bob") as session:
        before, _ = _track(session, "tp1-L0010")
        assert "tp0-L0011" in _members(before)
        session.unlink("tp1-L0010")
        lone, lone_response = _track(session, "tp1-L0010")
        back, back_response = _track(session, "tp0-L0011")
        assert _members(lone) == {"tp1-L0010"}
        assert _members(back) == {"tp0-L0011", "tp2-L0011"}  # neighbours stay one track
        assert lone_response.categories == _truth_categories(truth, 10)
        assert back_response.categories == _truth_categories(truth, 11)


def test_split_then_merge_repairs_a_swapped_link(out, truth):
    with ReviewSession.open(out, "carol") as session:
        wrong, _ = _track(session, "tp0-L0018")
        assert "tp2-L0022" in _members(wrong)
        session.split(wrong.track_id, 2)
        t18, r18 = _track(session, "tp0-L0018")
        t22b, _ = _track(session, "tp2-L0022")
        assert t18.track_id == wrong.track_id and _members(t18) == {"tp0-L0018", "tp1-L0018"}
        assert r18.categories == _truth_categories(truth, 18)
        t22a, _ = _track(session, "tp1-L0022")
        session.merge(t22a.track_id, t22b.track_id)
        t22, r22 = _track(session, "tp1-L0022")
        assert _members(t22) == {"tp1-L0022", "tp2-L0022"}
        assert r22.categories == _truth_categories(truth, 22)


def test_corrections_give_the_analysis_of_the_true_links(out, truth):
    """After the four corrections, tracks, categories and heterogeneity equal those of the true links
    (measured SUVtotal; the edited lesions also equal the truth categories, checked above)."""
    from LesionResponseLib.analysis import assess_response
    from LesionResponseLib.tracking import build_tracks
    from LesionResponseLib.tracking.evaluate import truth_links

    with ReviewSession.open(out, "dana") as session:
        session.link(*MISSED)
        session.unlink("tp1-L0010")
        session.split(session.state.track_id_of("tp2-L0022"), 2)
        session.link("tp1-L0022", "tp2-L0022")
        analysis = session.state.analysis
        true_links = [Link(a, b) for a, b in sorted(truth_links(truth))]
        tracks = build_tracks(analysis.rois, true_links)
        responses, heterogeneous = assess_response(tracks, analysis.rois, 3, analysis.parameters)

        def by_members(tracks_, responses_):
            cats = {r.track_id: r.categories for r in responses_}
            return {frozenset(_members(t)): cats[t.track_id] for t in tracks_}

        assert by_members(analysis.tracks, analysis.responses) == by_members(tracks, responses)
        assert analysis.heterogeneous == heterogeneous
        assert len(analysis.tracks) == len({x["track_id"] for x in truth["lesions"]})


def test_reject_and_restore_change_only_that_track(out):
    with ReviewSession.open(out, "erin") as session:
        track, _ = _track(session, "tp1-L0012")
        others = {t.track_id: _members(t) for t in session.state.analysis.tracks if t.track_id != track.track_id}
        session.reject("tp1-L0012", reason="pancreatic uncinate process")
        track_after, _ = _track(session, "tp2-L0012")
        assert _members(track_after) == {"tp2-L0012"}
        assert {t.track_id: _members(t) for t in session.state.analysis.tracks if t.track_id in others} == others
        rows = list(csv.DictReader((out / "rois.csv").open()))
        assert any(r["roi_id"] == "tp1-L0012" and r["status"] == "rejected" for r in rows)
        with pytest.raises(ReviewError, match="rejected"):
            session.link("tp1-L0012", "tp0-L0008")
        session.restore("tp1-L0012")
        restored, _ = _track(session, "tp1-L0012")
        assert _members(restored) == {"tp1-L0012", "tp2-L0012"}
        assert "pancreatic uncinate process" in json.dumps(session.history())


def test_rejecting_a_middle_roi_leaves_a_gap_in_the_same_track(out):
    """A ROI rejected between two of its lesion's ROIs: one track with a gap (not a disappearing lesion and a new
    one): nothing measured at the gap, the next follow-up still compared with the baseline; restore undoes it."""
    with ReviewSession.open(out, "erin") as session:
        analysis = session.state.analysis
        full = next(t for t in analysis.tracks if sorted(t.rois) == [0, 1, 2]
                    and all(len(ids) == 1 for ids in t.rois.values()))
        first, middle, last = (full.rois[tp][0] for tp in (0, 1, 2))
        session.reject(middle, reason="bowel activity")
        track, response = _track(session, last)
        assert track.track_id == full.track_id and _members(track) == {first, last}
        assert response.categories[1] == "disappearing" and response.categories[2] != "new"
        session.restore(middle)
        track, _ = _track(session, middle)
        assert _members(track) == {first, middle, last}


def test_reject_track_rejects_all_its_rois_in_one_undoable_edit(out):
    """A whole track of physiological uptake rejected at once: every ROI rejected, the track and its categories
    gone, the other tracks untouched, the reason in the audit trail; one undo brings all of it back byte for
    byte; rejecting it again is refused (no such track any more)."""
    with ReviewSession.open(out, "gus") as session:
        analysis = session.state.analysis
        victim = next(t for t in analysis.tracks if len(_members(t)) == 3)
        members = _members(victim)
        others = {t.track_id: _members(t) for t in analysis.tracks if t.track_id != victim.track_id}
        before = _snapshot(out)
        record = session.reject_track(victim.track_id, reason="adrenal")
        assert record["type"] == "reject_rois" and set(record["edit"]["roi_ids"]) == members
        analysis = session.state.analysis
        assert {analysis.roi(r).status for r in members} == {"rejected"}
        assert {t.track_id: _members(t) for t in analysis.tracks} == others
        assert not any(members & _members(t) for t in analysis.tracks)
        rows = {r["roi_id"]: r["status"] for r in csv.DictReader((out / "rois.csv").open())}
        assert {rows[r] for r in members} == {"rejected"}
        assert "adrenal" in json.dumps(session.history())
        with pytest.raises(ReviewError, match="no track"):
            session.reject_track(victim.track_id)
        session.undo()
        assert _snapshot(out) == before
        session.reject("tp0-L0011")
        alone = session.state.analysis.track(session.state.track_id_of("tp1-L0010"))
        session.reject_track(alone.track_id)
        assert session.state.roi("tp1-L0010").status == "rejected"


def test_rejected_track_stays_rejected_after_a_rerun(out, phantom):
    """The edit keeps the ROI ids, so a re-run (new numbering) rejects the same lesion-ROIs again."""
    with ReviewSession.open(out, "gus") as session:
        victim = session.state.analysis.track(session.state.track_id_of("tp0-L0008"))
        members = sorted(_members(victim))
        session.reject_track(victim.track_id, reason="adrenal")
    _build(phantom, out, relabel={1: 100, 2: 200})
    assert reapply_review(out).applied == 1
    moved = {f"tp{tp}-L{int(r[-4:]) + {0: 0, 1: 100, 2: 200}[tp]:04d}"
             for r in members for tp in [int(r[2:r.index("-")])]}
    with ReviewSession.open(out, "gus") as session:
        assert {session.state.roi(r).status for r in moved} == {"rejected"}
        assert session.applied[0]["edit"]["roi_ids"] == sorted(moved, key=lambda r: int(r[2:r.index("-")]))


def _cube(reference: sitk.Image, centre_mm, half: int = 1) -> sitk.Image:
    array = np.zeros(sitk.GetArrayViewFromImage(reference).shape, dtype=np.uint8)
    i, j, k = reference.TransformPhysicalPointToIndex(tuple(centre_mm))
    array[k - half:k + half + 1, j - half:j + half + 1, i - half:i + half + 1] = 1
    mask = sitk.GetImageFromArray(array)
    mask.CopyInformation(reference)
    return mask


def test_add_roi_is_measured_and_can_be_linked(out):
    suv = sitk.ReadImage(str(out / "suv" / "tp2.nii.gz"), sitk.sitkFloat32)
    with ReviewSession.open(out, "fay") as session:
        session.unlink("tp1-L0010")  # the false automatic link (see the module docstring)
        centre = session.state.roi("tp1-L0010").centroid_mm
        mask = _cube(session.state.labels[2], centre)
        mask_path = out.parent / "drawn.nii.gz"
        sitk.WriteImage(mask, str(mask_path))
        record = session.add_roi(2, mask_path)
        new_id = record["created_roi"]
        roi = session.state.roi(new_id)
        inside = sitk.GetArrayViewFromImage(mask) > 0
        voxel_ml = float(np.prod(suv.GetSpacing())) / 1000
        assert roi.source == "reader" and roi.n_voxels == 27
        assert roi.suv_total == pytest.approx(float(sitk.GetArrayViewFromImage(suv)[inside].sum()) * voxel_ml,
                                              rel=1e-5)
        assert _members(_track(session, new_id)[0]) == {new_id}  # not linked automatically
        session.link("tp1-L0010", new_id)
        _, response = _track(session, new_id)
        assert response.categories[2] != "absent"
        saved = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "labels" / "tp2.nii.gz")))
        assert (saved[inside] == roi.label).all()
        with pytest.raises(ReviewError, match="overlaps"):
            session.add_roi(2, mask)


def test_a_painted_roi_is_one_audited_undoable_edit(out):
    from LesionResponseReview import masks

    original = _snapshot(out)
    with ReviewSession.open(out, "ivy") as session:
        centre = session.state.roi("tp1-L0010").centroid_mm  # where tp2 has no ROI (see test_add_roi_...)
        painted = masks.paint(session.suv(2), session.state.labels[2], centre, radius_mm=6.0)
        created = session.add_roi(2, painted.mask)["created_roi"]  # before reading session.state: the edit replaces it
        roi = session.state.roi(created)
        assert roi.source == "reader" and roi.n_voxels == painted.n_voxels > 0
        session.undo()
        assert _snapshot(out) == original
    actions = [json.loads(x)["action"] for x in (out / "review" / "audit.jsonl").read_text().splitlines()]
    assert actions == ["apply", "undo"]


def test_edit_roi_remeasures_and_recategorises(out):
    suv = sitk.ReadImage(str(out / "suv" / "tp0.nii.gz"), sitk.sitkFloat32)
    with ReviewSession.open(out, "gus") as session:
        roi = session.state.roi("tp0-L0008")
        labels = sitk.GetArrayFromImage(session.state.labels[0])
        keep = labels == roi.label
        zs = np.nonzero(keep)[0]
        keep[zs.min():(zs.min() + zs.max()) // 2 + 1] = False  # cut the ROI in about half
        mask = sitk.GetImageFromArray(keep.astype(np.uint8))
        mask.CopyInformation(session.state.labels[0])
        session.edit_roi("tp0-L0008", mask)
        edited = session.state.roi("tp0-L0008")
        voxel_ml = float(np.prod(suv.GetSpacing())) / 1000
        expected = float(sitk.GetArrayViewFromImage(suv)[keep].sum()) * voxel_ml
        assert edited.suv_total == pytest.approx(expected, rel=1e-5) and edited.suv_total < roi.suv_total
        assert edited.suv_total_pvc is not None and edited.suv_total_pvc != roi.suv_total_pvc  # re-measured too
        _, response = _track(session, "tp0-L0008")
        measure = session.state.analysis.parameters.response.measure  # the default: the PV-corrected SUVtotal
        reference, later = (roi_measure(session.state.roi(r), measure) for r in ("tp0-L0008", "tp1-L0008"))
        assert response.delta_suv_total_pct[1] == pytest.approx(100 * (later - reference) / reference, rel=1e-4)


def test_undo_restores_outputs_byte_for_byte_and_redo_reapplies(out):
    original = _snapshot(out)
    with ReviewSession.open(out, "hal") as session:
        session.link(*MISSED)
        after_link = _snapshot(out)
        mask = _cube(session.state.labels[2], session.state.roi("tp1-L0010").centroid_mm)
        session.add_roi(2, mask)
        after_add = _snapshot(out)
        assert after_add["labels/tp2.nii.gz"] != after_link["labels/tp2.nii.gz"]
        session.undo()
        assert _snapshot(out) == after_link
        session.redo()
        assert _snapshot(out) == after_add
        session.undo()
        session.undo()
        assert _snapshot(out) == original
        with pytest.raises(ReviewError, match="nothing to undo"):
            session.undo()
    actions = [json.loads(x)["action"] for x in (out / "review" / "audit.jsonl").read_text().splitlines()]
    assert actions == ["apply", "apply", "undo", "redo", "undo", "undo"]


def test_session_persists_and_audit_is_in_analysis_json(out):
    with ReviewSession.open(out, "ivy") as session:
        session.link(*MISSED)
        session.reject("tp1-L0012", reason="artefact")
        state = session.state.analysis.to_dict()
    with ReviewSession.open(out, "ivy") as again:
        assert again.state.analysis.to_dict() == state
        again.undo()
    audit = json.loads((out / "analysis.json").read_text())["audit"]
    assert [a["type"] for a in audit] == ["link"] and audit[0]["user"] == "ivy" and audit[0]["time"]


def test_marking_a_track_reviewed_takes_it_off_what_is_left_of_the_queue_and_undo_brings_it_back(out):
    from LesionResponseLib.analysis.queue import review_queue

    with ReviewSession.open(out, "ana") as session:
        before = review_queue(session.state.analysis)
        first = before[0].track_id
        record = session.mark_reviewed(first)
        assert record["type"] == "reviewed" and record["user"] == "ana" and record["edit"]["track_id"] == first
        after = review_queue(session.state.analysis)
        assert [i.track_id for i in after if not i.reviewed] == [i.track_id for i in before[1:]]  # the rest in order
        assert after[-1].track_id == first and after[-1].reviewed  # reviewed ones last
        assert json.loads((out / "analysis.json").read_text())["reviewed_tracks"] == [first]  # saved as made
        with pytest.raises(ReviewError, match="already marked reviewed"):
            session.mark_reviewed(first)
    with ReviewSession.open(out, "ana") as again:  # saved as made: a new session (a restarted app) has it
        assert again.state.analysis.reviewed_tracks == [first]
        again.undo()
        assert again.state.analysis.reviewed_tracks == []
    assert json.loads((out / "analysis.json").read_text())["reviewed_tracks"] == []
    actions = [json.loads(x)["action"] for x in (out / "review" / "audit.jsonl").read_text().splitlines()]
    assert actions == ["apply", "undo"]


@pytest.mark.parametrize(("call", "message"), [
    (lambda s: s.link("tp1-L0007", "tp1-L0008"), "both at time point 1"),
    (lambda s: s.link("tp0-L0008", "tp1-L0014"), "split/merge"),
    (lambda s: s.link("tp0-L0007", "tp9-L0001"), "no lesion-ROI"),
    (lambda s: s.merge(3, 3), "with itself"),
    (lambda s: s.merge(999, 3), "no track 999"),
    (lambda s: s.split(s.state.track_id_of("tp0-L0008"), 0), "cannot split"),
    (lambda s: s.restore("tp0-L0008"), "not rejected"),
])
def test_conflicting_edits_are_refused_and_change_nothing(out, call, message):
    before = _snapshot(out)
    with ReviewSession.open(out, "jo") as session:
        with pytest.raises(ReviewError, match=message):
            call(session)
        assert session.applied == []
    assert _snapshot(out) == before


def test_second_session_is_refused_while_locked(out):
    with ReviewSession.open(out, "kim"):
        with pytest.raises(ReviewError, match="another process"):
            ReviewSession.open(out, "lee")
    ReviewSession.open(out, "lee").close()


def test_a_lock_left_by_a_dead_process_is_taken_over(out):
    import socket
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock = out / "review" / "session.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(f"user=old pid={int(dead.stdout)} host={socket.gethostname()}\n")
    with ReviewSession.open(out, "lee") as session:
        session.link(*MISSED)
    assert not lock.exists()


def test_crash_mid_save_leaves_previous_session_and_outputs(out, monkeypatch):
    with ReviewSession.open(out, "max") as session:
        session.link(*MISSED)
    before = _snapshot(out)
    session_json = (out / "review" / "session.json").read_bytes()
    with ReviewSession.open(out, "max") as session:
        real = session.engine.write_outputs

        def crash(analysis, folder):
            real(analysis, folder)
            (Path(folder) / "analysis.json").write_text("{half")
            raise OSError("disk full")

        monkeypatch.setattr(session.engine, "write_outputs", crash)
        with pytest.raises(OSError, match="disk full"):
            session.unlink("tp1-L0010")
    assert _snapshot(out) == before and (out / "review" / "session.json").read_bytes() == session_json
    with ReviewSession.open(out, "max") as session:
        assert [r["type"] for r in session.applied] == ["link"]


def test_crash_while_moving_files_is_rolled_forward(out, monkeypatch):
    import LesionResponseLib.review.session as module

    with ReviewSession.open(out, "ned") as session:
        calls = {"n": 0}
        real = module.os.replace

        def crash(src, dst):  # fail on the second move from the staging folder into OUT
            calls["n"] += ".staging" in str(src) and ".staging" not in str(dst)
            if calls["n"] == 2:
                raise OSError("power cut")
            real(src, dst)

        monkeypatch.setattr(module.os, "replace", crash)
        with pytest.raises(OSError, match="power cut"):
            session.link(*MISSED)
        monkeypatch.setattr(module.os, "replace", real)
    from LesionResponseLib.analysis.outputs import analysis_json

    with ReviewSession.open(out, "ned") as session:
        assert [r["type"] for r in session.applied] == ["link"]
        expected = analysis_json(session.state.analysis)  # what analysis.json holds: the analysis + derived figures
        expected["software_version"] = json.loads((out / "analysis.json").read_text())["software_version"]
        assert json.loads((out / "analysis.json").read_text()) == expected


def test_edits_survive_a_rerun_and_lost_ones_are_listed(out, phantom, truth):
    with ReviewSession.open(out, "olga") as session:
        session.link(*MISSED)
        session.unlink("tp1-L0010")
        session.reject("tp2-L0022", reason="bowel")
    _build(phantom, out, relabel={1: 100, 2: 200}, drop=(2, 22))  # re-run: new numbering, lesion 22 missed
    report = reapply_review(out)
    assert report.applied == 2
    assert [x["type"] for x in report.not_applicable] == ["reject"]
    assert "tp2-L0022" in report.not_applicable[0]["reason"]
    assert json.loads((out / "review" / "not_applicable.json").read_text())[0]["id"]
    with ReviewSession.open(out, "olga") as session:
        _, response = _track(session, "tp0-L0007")
        assert _members(_track(session, "tp0-L0007")[0]) == {"tp0-L0007", "tp1-L0107", "tp2-L0207"}
        assert response.categories == _truth_categories(truth, 7)
        assert _members(_track(session, "tp1-L0110")[0]) == {"tp1-L0110"}
        assert [r["edit"].get("roi_a") for r in session.applied][:1] == ["tp1-L0107"]


def test_cli_edits_print_changes_and_errors_exit_2(out):
    from typer.testing import CliRunner

    from LesionResponseLib.analysis import load_analysis
    from LesionResponseLib.cli import app

    runner = CliRunner()
    done = runner.invoke(app, ["review", str(out), "link", *MISSED, "--user", "pat"])
    assert done.exit_code == 0, done.output
    assert "->" in done.output and "t2 decreasing" in done.output
    history = runner.invoke(app, ["review", str(out), "history"])
    assert "link" in history.output and "pat" in history.output
    bad = runner.invoke(app, ["review", str(out), "unlink", "tp7-L0001"])
    assert bad.exit_code == EXIT_INPUT and "no lesion-ROI" in bad.output and "Traceback" not in bad.output
    undone = runner.invoke(app, ["review", str(out), "undo"])
    assert undone.exit_code == 0 and "undone" in undone.output
    track = str(load_analysis(out).tracks[0].track_id)
    marked = runner.invoke(app, ["review", str(out), "reviewed", track, "--user", "pat"])
    assert marked.exit_code == 0 and int(track) in load_analysis(out).reviewed_tracks, marked.output
    again = runner.invoke(app, ["review", str(out), "reviewed", track])
    assert again.exit_code == EXIT_INPUT and "already marked reviewed" in again.output
    runner.invoke(app, ["review", str(out), "undo"])
    assert int(track) not in load_analysis(out).reviewed_tracks
