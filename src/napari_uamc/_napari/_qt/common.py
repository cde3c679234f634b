"""Small pieces the section widgets share."""

from __future__ import annotations

from collections.abc import Callable

from qtpy.QtWidgets import QHBoxLayout, QLabel, QPushButton, QWidget

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


def button(text: str, on_click: Callable[[], object], tip: str = "", *, enabled: bool = True) -> QPushButton:
    """A push button that calls ``on_click`` (with no arguments) when clicked."""
    widget = QPushButton(text)
    if tip:
        widget.setToolTip(tip)
    widget.setEnabled(enabled)
    widget.clicked.connect(lambda *_: on_click())
    return widget


def button_row(*buttons: QPushButton) -> QHBoxLayout:
    """Buttons side by side, sharing the row's width."""
    row = QHBoxLayout()
    for widget in buttons:
        row.addWidget(widget)
    return row
