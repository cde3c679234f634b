"""The panel's Qt widgets: one per section, each showing a :class:`~napari_uamc._napari.session.Session`."""
