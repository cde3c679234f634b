"""Closing napari's notification toasts that outlived what they said.

napari 0.9 starts a toast's dismiss timer only when its window is the active one (a toast shown
while another window, a dialog or nothing has the focus, as under a virtual display, stays until
clicked), and a toast over a 3D canvas makes every fade step repaint the volume. When the view
switches between 2D and 3D, the toasts on screen are about what came before: the panel closes
them (the notifications stay in napari's notification list). Plain Qt: toasts are found by
their class name, no private napari attribute.
"""

from __future__ import annotations

#: The class of napari's toasts (napari._qt.dialogs.qt_notification).
TOAST_CLASS = "NapariQtNotification"


def dismiss_toasts(*_args: object) -> int:
    """Close every visible napari toast; returns how many."""
    from qtpy.QtWidgets import QApplication

    toasts = [widget for widget in QApplication.allWidgets()
              if type(widget).__name__ == TOAST_CLASS and widget.isVisible()]
    for toast in toasts:
        toast.close()
    return len(toasts)


def close_toasts_on_view_switch(viewer: object, owner: object) -> None:
    """Close the toasts whenever ``viewer`` switches between 2D and 3D, while ``owner`` (a QObject)
    lives."""
    ndisplay = viewer.dims.events.ndisplay  # type: ignore[attr-defined]
    ndisplay.connect(dismiss_toasts)
    owner.destroyed.connect(lambda *_: ndisplay.disconnect(dismiss_toasts))  # type: ignore[attr-defined]
