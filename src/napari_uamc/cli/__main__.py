"""``python -m napari_uamc.cli ...`` = ``uamc ...`` (e.g. for ``torchrun -m napari_uamc.cli train``)."""

import sys

from napari_uamc.cli import main

sys.exit(main())
