"""Case-list files: one case name per line, ``#`` comments and blank lines skipped.

One reader serves both users: ``uamc train --labeled-list`` (names as :func:`~napari_uamc.data.io.case_name`
gives them: file suffixes and ``_0000`` stripped) and the research layouts' ``train.list``
(``case_folders``: each line names a case folder, ``CASE`` or ``CASE/mri_norm2.h5``, and a case
may not be listed twice).
"""

from __future__ import annotations

import os
from pathlib import Path

from napari_uamc.data.io import case_name
from napari_uamc.errors import InputError

__all__ = ["COMMENT", "read_case_list"]

#: Lines of a case-list file starting with this are comments.
COMMENT = "#"
#: How many repeated names an error message shows.
DUPLICATES_SHOWN = 5


def read_case_list(path: str | os.PathLike[str], *, case_folders: bool = False) -> list[str]:
    """Case names from a text file, one per line (``#`` comments, blank lines skipped).

    By default file suffixes are stripped (:func:`~napari_uamc.data.io.case_name`). With
    ``case_folders`` a line's first path part is the case (``CASE/mri_norm2.h5`` -> ``CASE``)
    and a name listed twice is refused.

    Raises:
        InputError: the file cannot be read, names no case, or (``case_folders``) names a case
            twice.
    """
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as error:
        raise InputError(f"{path}: cannot read the case list ({error.strerror or error})") from None
    if case_folders:
        names = [line.strip().strip("/") for line in lines]
        names = [Path(n).parts[0] if n else n for n in names]
        names = [n for n in names if n and not n.startswith(COMMENT)]
    else:
        names = [line.strip() for line in lines]
        names = [case_name(name) for name in names if name and not name.startswith(COMMENT)]
    if not names:
        raise InputError(f"{path}: the case list names no case")
    if case_folders:
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            shown = ", ".join(duplicates[:DUPLICATES_SHOWN])
            raise InputError(f"{path}: the case list names {shown} more than once")
    return names
