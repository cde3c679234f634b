"""How the panel's sections are laid out (issue 12's screenshot review): the pinned offer box's
margin, whole rows in *Where to correct*, the ranking's checkbox beside Next case, the study path."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.gui

pytest.importorskip("torch")

from napari_uamc._napari._qt.regions_box import ROWS_SHOWN  # noqa: E402
from napari_uamc._napari._qt.study_box import CASE_ROWS_SHOWN, shown_path  # noqa: E402
from napari_uamc._napari.panel import OFFER_MARGIN, UamcPanel  # noqa: E402
from napari_uamc.data.phantoms import write_phantom_study  # noqa: E402
from napari_uamc.data.regions import UncertainRegion  # noqa: E402


def _shown_panel(make_napari_viewer, qtbot):
    panel = UamcPanel(make_napari_viewer())
    qtbot.addWidget(panel)
    panel.resize(460, 900)
    panel.show()
    qtbot.waitExposed(panel)
    return panel


def _region(rank: int) -> UncertainRegion:
    return UncertainRegion(rank, 100, 0.5, 30.0, 0.6, (1.0, 1.0, 1.0), (0, 0, 0), (2, 2, 2), (1, 1, 1))


def test_the_offer_box_keeps_clear_of_the_docks_top_edge(make_napari_viewer, qtbot, tiny_study, write_unreviewed):
    write_unreviewed(tiny_study)
    panel = _shown_panel(make_napari_viewer, qtbot)
    panel.open_study(tiny_study, open_first_case=False)  # v002 nobody decided about: offered
    qtbot.waitUntil(lambda: panel.offer_box.isVisible(), timeout=5_000)
    assert OFFER_MARGIN > 0 and panel.layout().contentsMargins().top() == OFFER_MARGIN
    assert panel.offer_box.geometry().top() >= OFFER_MARGIN  # before: 0, its title on the edge


@pytest.mark.parametrize("count", [0, 3, ROWS_SHOWN + 4])
def test_where_to_correct_shows_whole_rows_only(make_napari_viewer, qtbot, count):
    """Before: a fixed 150 px list cut its last visible row mid-height."""
    panel = _shown_panel(make_napari_viewer, qtbot)
    box, rows = panel.regions_box, panel.regions_list
    panel.session.regions_changed.emit([_region(rank) for rank in range(1, count + 1)])
    qtbot.wait(10)
    row = box.row_height()
    assert row > 0 and (rows.viewport().height()) % row == 0
    assert rows.viewport().height() == min(max(count, 1), ROWS_SHOWN) * row
    for index in range(rows.count()):  # each row wholly in view or wholly out of it
        rect, view = rows.visualItemRect(rows.item(index)), rows.viewport().rect()
        assert view.contains(rect) if index < ROWS_SHOWN else not view.intersects(rect), index
    if count > ROWS_SHOWN:
        rows.verticalScrollBar().setValue(1)  # scrolled by one: still whole rows
        qtbot.wait(10)
        view = rows.viewport().rect()
        assert all(view.contains(rows.visualItemRect(rows.item(i))) for i in range(1, ROWS_SHOWN + 1))


def test_the_ranking_refresh_choice_sits_beside_next_case(make_napari_viewer, qtbot):
    panel = _shown_panel(make_napari_viewer, qtbot)
    check, tuning = panel.refresh_check, panel.session.finetuning
    assert panel.study_box.isAncestorOf(check) and not panel.finetune_box.isAncestorOf(check)
    assert check.text() == "Refresh the case ranking when the model changes" and check.isChecked()
    next_case = panel.next_case_button.mapTo(panel.study_box, panel.next_case_button.rect().bottomLeft())
    assert check.mapTo(panel.study_box, check.rect().topLeft()).y() >= next_case.y()  # right under it
    check.setChecked(False)
    assert tuning.refresh_after is False
    check.setChecked(True)
    assert tuning.refresh_after is True


def test_the_study_path_under_the_home_folder_is_shown_from_there(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert shown_path(tmp_path / "home" / "studies" / "la2018-demo") == str(Path("~/studies/la2018-demo"))
    assert shown_path(tmp_path / "elsewhere") == str(tmp_path / "elsewhere")
    monkeypatch.setenv("HOME", "/")
    assert shown_path("/data/study") == "/data/study"  # a home at the root abbreviates nothing


def _whole_rows_only(view, rects, shown):
    for index, rect in enumerate(rects):  # each row wholly in view or wholly out of it
        assert view.contains(rect) if index < shown else not view.intersects(rect), index


@pytest.mark.parametrize("cases", [3, CASE_ROWS_SHOWN + 2])
def test_the_case_table_shows_whole_rows_only(make_napari_viewer, qtbot, tmp_path, cases):
    """Before: 170 px showed the fifth case's row cut in half (panel.png)."""
    root = write_phantom_study(tmp_path / "study", cases=cases, seed=1, shape=(16, 16, 16), labeled=0)
    panel = _shown_panel(make_napari_viewer, qtbot)
    panel.open_study(root, open_first_case=False)
    table = panel.case_table
    qtbot.waitUntil(lambda: table.rowCount() == cases, timeout=5_000)
    qtbot.wait(10)
    row, shown = table.verticalHeader().defaultSectionSize(), min(cases, CASE_ROWS_SHOWN)
    assert table.viewport().height() == shown * row
    _whole_rows_only(table.viewport().rect(), [table.visualRect(table.model().index(i, 0)) for i in range(cases)],
                     shown)


@pytest.mark.parametrize(("cases", "said"), [(1, "1 case, 0 accepted"), (2, "2 cases, 0 accepted")])
def test_the_study_line_counts_cases_in_words(make_napari_viewer, qtbot, tmp_path, cases, said):
    """Before: a one-case study read '1 cases' (a clinician-style try-out)."""
    root = write_phantom_study(tmp_path / "study", cases=cases, seed=1, shape=(16, 16, 16), labeled=0)
    panel = _shown_panel(make_napari_viewer, qtbot)
    panel.open_study(root, open_first_case=False)
    qtbot.waitUntil(lambda: said in panel.study_box.study_label.text(), timeout=5_000)


def test_an_empty_stage_line_takes_no_room(make_napari_viewer, qtbot):
    """Before: the empty line under the status left a gap above the loss curve (offered-version.png)."""
    panel = _shown_panel(make_napari_viewer, qtbot)
    stage, tuning = panel.finetune_stage, panel.session.finetuning
    assert not stage.isVisible()
    tuning.stage.emit("recalibrating BatchNorm statistics")
    assert stage.isVisible()
    tuning.stage.emit("")
    assert not stage.isVisible()
