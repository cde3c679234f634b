"""The offered version: what a fine-tune's new version does, with Adopt / Discard and
*Preview on this case* (its segmentation of the image on screen: offer_preview.py).

The panel pins it above its scrolling sections, so the decision stays in view whatever is
scrolled (at a window height of 1000 px the buttons were below the fold), and hides it when no
version is offered.
"""

from __future__ import annotations

from qtpy.QtWidgets import QGroupBox, QLabel, QProgressBar, QVBoxLayout, QWidget

from napari_uamc._napari._qt.common import StatusLine, button, button_row
from napari_uamc._napari.finetuning import Offer
from napari_uamc._napari.offer_preview import SECTION as PREVIEW_SECTION
from napari_uamc._napari.session import Session

#: Colour of the offer's warning line (amber: read it before choosing).
WARNING_COLOUR = "#ffb74d"


class OfferBox(QGroupBox):
    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__("Offered version", parent)
        tuning = session.finetuning
        layout = QVBoxLayout(self)
        self.adopt_button = button("Adopt", tuning.adopt, "Segment, Next case and the next fine-tune use this version")
        self.discard_button = button("Discard", tuning.discard,
                                     "Delete this version's weights (its record stays, marked discarded)")
        layout.addLayout(button_row(self.adopt_button, self.discard_button))  # first: never below the fold
        self.offer_text = QLabel("")
        self.offer_text.setWordWrap(True)
        layout.addWidget(self.offer_text)
        preview = session.preview
        self.preview_button = button("Preview on this case", preview.start,
                                     "Segment the image on screen with this version, as an orange outline "
                                     "layer (never saved); it goes when you adopt or discard")
        self.preview_stop = button("Stop", preview.stop, enabled=False)
        layout.addLayout(button_row(self.preview_button, self.preview_stop))
        self.preview_progress = QProgressBar()
        self.preview_progress.setVisible(False)
        layout.addWidget(self.preview_progress)
        self.preview_line = StatusLine(session, PREVIEW_SECTION)
        layout.addWidget(self.preview_line)
        preview.running.connect(self._previewing)
        preview.progress.connect(self._preview_progress)
        self._show_offer(tuning.offer)
        tuning.offered.connect(self._show_offer)

    def _previewing(self, running: bool) -> None:
        self.preview_button.setEnabled(not running)
        self.preview_stop.setEnabled(running)
        self.preview_progress.setVisible(running)

    def _preview_progress(self, done: int, total: int) -> None:
        self.preview_progress.setMaximum(max(1, total))
        self.preview_progress.setValue(done)

    def _show_offer(self, offer: Offer | None) -> None:
        self.setVisible(offer is not None)
        warning = offer.warning if offer is not None else None
        lines = offer.lines() if offer is not None else []
        self.offer_text.setText("<br>".join(
            f"<span style='color:{WARNING_COLOUR}'><b>{line}</b></span>" if line == warning else line
            for line in lines))
        if offer is not None:
            self.adopt_button.setText(f"Adopt {offer.version}")
            self.discard_button.setText(f"Discard {offer.version}")
        # a version that agrees less with the accepted labels, or barely trained: Discard is the
        # default (Enter presses it, the style marks it) and has the focus; Adopt stays available
        for widget, default in ((self.adopt_button, False), (self.discard_button, warning is not None)):
            widget.setAutoDefault(default)
            widget.setDefault(default)
            font = widget.font()
            font.setBold(default)
            widget.setFont(font)
        if warning is not None:
            self.discard_button.setFocus()
