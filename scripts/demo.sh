#!/usr/bin/env bash
# The main job: sets up ./.venv, makes a small phantom study and shows what it made.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_setup_env.sh"
cd "$ROOT"
STUDY="${1:-$ROOT/demo-study}"
if [ ! -f "$STUDY/dataset.json" ]; then
    "$VENV/bin/uamc" phantoms "$STUDY" --cases 6 --labeled 2 --seed 1 --shape 96 96 48
fi
"$VENV/bin/python" -m napari_uamc.data.describe "$STUDY"
