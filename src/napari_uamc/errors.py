"""Exceptions raised by napari-uamc.

Every error a user can cause (a bad file, a bad argument, a study in a bad state) is a
:class:`UamcError`, so the CLI and the plugin can show its message without a traceback.
"""

from __future__ import annotations


class UamcError(Exception):
    """Base class of every user-facing napari-uamc error."""


class InputError(UamcError, ValueError):
    """An input file or array cannot be used (wrong dimensionality, NaN, bad spacing, ...)."""


class GridMismatchError(InputError):
    """Two volumes that must share a voxel grid (image and label, prediction and truth) do not."""


class StudyError(UamcError):
    """A study folder is missing, malformed, or an operation on it is not allowed."""


class CheckpointError(UamcError):
    """A model checkpoint is missing, corrupt, foreign, or does not fit the input."""


class TrainingError(UamcError):
    """Training cannot start or had to stop (empty labeled set, NaN loss, out of memory)."""
