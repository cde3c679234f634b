"""The Model versions list's rows, in words a person reads (no Qt)."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from napari_uamc._napari.versions import ACCEPT_DICE_PREFIX, DEFAULT_VERSION_KEY, version_rows  # noqa: E402
from napari_uamc.data.study import Study  # noqa: E402


def test_honest_scores_count_cases_in_plain_words(tiny_study):
    """Before: 'honest Dice 0.918 on 1 accepts' (the offered-version screenshot)."""
    study = Study.open(tiny_study)
    first, second, third = study.cases()[:3]
    study.record_score(first, ACCEPT_DICE_PREFIX + "v001", 0.9)
    study.record_score(second, ACCEPT_DICE_PREFIX + "v001", 0.8)
    study.record_score(third, ACCEPT_DICE_PREFIX + DEFAULT_VERSION_KEY, 0.918)
    rows = dict((version, text) for text, version in version_rows(study))
    assert "its segmentations scored Dice 0.850 against the labels you then accepted (2 cases)" in rows["v001"]
    assert rows[None].endswith("scored Dice 0.918 against the labels you then accepted (1 case)")
    assert not any("accepts" in text for text in rows.values())
