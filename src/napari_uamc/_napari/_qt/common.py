"""Small pieces the section widgets share."""

from __future__ import annotations

from qtpy.QtWidgets import QLabel, QWidget

from napari_uamc._napari.session import Session

#: Colours of status lines by level ("info" keeps the theme's colour).
LEVEL_COLOURS = {"error": "#ff8a80", "ok": "#a5d6a7"}


class StatusLine(QLabel):
    """A section's status line: shows what the session says for that section, and only that."""

    def __init__(self, session: Session, section: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.section = section
        self.setWordWrap(True)
        session.status.connect(self._show)
        text, level = session.texts.get(section, ("", "info"))
        self._show(section, text, level)

    def _show(self, section: str, text: str, level: str) -> None:
        if section != self.section:
            return
        colour = LEVEL_COLOURS.get(level)
        self.setText(f"<span style='color:{colour}'>{text}</span>" if colour and text else text)
        self.setVisible(bool(text))  # an empty line takes no room
