#!/usr/bin/env bash
# The main job: sets up ./.venv, then opens napari with a sample phantom study loaded and the
# napari-uamc panel docked. On a machine without a display it runs under a virtual X server,
# segments the first case and writes a screenshot (demo-screenshot.png) instead.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_setup_env.sh"
cd "$ROOT"

display_works() {
    [ -n "${DISPLAY:-}" ] || return 1
    "$VENV/bin/python" - <<'PY' 2>/dev/null
import ctypes, ctypes.util, sys
name = ctypes.util.find_library("X11") or "libX11.so.6"
xlib = ctypes.cdll.LoadLibrary(name)
xlib.XOpenDisplay.restype = ctypes.c_void_p
sys.exit(0 if xlib.XOpenDisplay(None) else 1)
PY
}

# The real LA 2018 scans beside the clone (../shared/data/la2018), when present, make the demo
# study: the packaged model was trained on real scans. Elsewhere: synthetic phantoms.
REAL="$ROOT/../shared/data/la2018"
if [ "$#" -eq 0 ] && [ -f "$REAL/train.list" ]; then
    set -- --real "$REAL"
fi
if display_works; then
    exec "$VENV/bin/python" -m napari_uamc.demo "$@"
fi
echo "[demo] no display here: running napari under a virtual display and saving a screenshot"
ensure_display_packages
unset DISPLAY
export QT_QPA_PLATFORM=xcb
exec xvfb-run -a -s "-screen 0 1600x1000x24" "$VENV/bin/python" -m napari_uamc.demo \
    --screenshot "$ROOT/demo-screenshot.png" "$@"
