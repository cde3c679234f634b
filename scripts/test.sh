#!/usr/bin/env bash
# Installs everything the tests need (system packages, ./.venv with the package and its test
# extras), lints with ruff, and runs the whole test suite under a virtual display. Extra
# arguments go to pytest.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_setup_env.sh"
ensure_display_packages
cd "$ROOT"
# Qt needs a real (virtual) X server for napari's canvas: pytest-xvfb starts one; DISPLAY on
# these machines may point at nothing, so never trust it.
unset DISPLAY
export QT_QPA_PLATFORM=xcb
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
# Lint first (settings: pyproject.toml [tool.ruff]); UAMC_SKIP_LINT=1 skips it while iterating.
if [ "${UAMC_SKIP_LINT:-0}" != "1" ]; then
    "$VENV/bin/ruff" check --quiet src tests benchmarks scripts
fi
exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@"
