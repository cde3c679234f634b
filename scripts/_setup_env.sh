# Sourced by the README's commands: creates or updates ./.venv with napari-uamc installed.
# Idempotent and quick when nothing changed (a stamp records what was installed).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="${UAMC_PYTHON:-python3}"
# The local CPU build of PyTorch on these machines; pyproject itself only asks for torch>=2.2.
TORCH_PIN="torch==2.13.0"
EXTRAS="${UAMC_EXTRAS:-testing}"

if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "napari-uamc needs Python >= 3.11 (found: $("$PY" --version 2>&1)); set UAMC_PYTHON" >&2
    exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
    echo "[setup] creating $VENV"
    "$PY" -m venv "$VENV"
fi

stamp_file="$VENV/.uamc-installed"
stamp="$(cat "$ROOT/pyproject.toml" "$ROOT/scripts/_setup_env.sh" | sha256sum | cut -d' ' -f1)-$EXTRAS"
if [ "$(cat "$stamp_file" 2>/dev/null)" != "$stamp" ] \
    || ! "$VENV/bin/python" -c 'import napari_uamc, torch' >/dev/null 2>&1; then
    echo "[setup] installing napari-uamc[$EXTRAS] into $VENV (first time: a few minutes)"
    "$VENV/bin/python" -m pip install -q --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
    "$VENV/bin/python" -m pip install -q "$TORCH_PIN" 2>&1 | grep -v '^WARNING: Location' || true
    "$VENV/bin/python" -m pip install -q -e "$ROOT[$EXTRAS]" "$TORCH_PIN" 2>&1 | grep -v '^WARNING: Location' || true
    "$VENV/bin/python" -c 'import napari_uamc, torch, napari' \
        || { echo "[setup] installation failed" >&2; exit 1; }
    echo "$stamp" > "$stamp_file"
fi

# System libraries for Qt under a virtual X display (xvfb-run); installed only when missing.
ensure_display_packages() {
    local packages="xvfb xauth libgl1 libegl1 libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4
        libxcb-keysyms1 libxcb-image0 libxcb-render-util0 libxcb-xinerama0 libxcb-shape0 libdbus-1-3
        libfontconfig1 libxcb-randr0 libxcb-xkb1 libxcb-xfixes0"
    local missing=()
    for p in $packages; do
        dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "[setup] installing system packages: ${missing[*]}"
        local sudo=""
        [ "$(id -u)" -ne 0 ] && sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}
