#!/usr/bin/env bash
# maskwatch installer for a Jetson Xavier NX freshly flashed with JetPack 5.1 (L4T R35, Ubuntu 20.04).
#
#   sudo scripts/install.sh [--precision fp16|int8] [--calib-dir DIR] [--parity-images DIR|VIDEO]
#                           [--autologin-user USER | --no-autologin] [--nvpmodel MODE] [--jetson-clocks]
#   sudo scripts/install.sh --uninstall [--purge]
#
# Installs apt packages, a virtual environment with --system-site-packages (TensorRT and the GStreamer
# OpenCV of JetPack) under /opt/maskwatch, `pip install .[jetson]`, the `maskwatch` system user,
# /etc/maskwatch/config.yaml (from edge/config.example.yaml, never overwritten), jetson-stats and its
# jtop service, the display at boot (GDM auto-login on X :0, the service let in with xhost), builds the
# TensorRT engine once and checks its parity with ONNX Runtime, then installs, enables and starts
# maskwatch.service. Running it again brings an installation up to date (idempotent). See docs/jetson.md.
#
# --root DIR stages the files under DIR instead of / and skips everything that acts on the running system
# (apt, users, pip, systemctl, nvpmodel, engine build): the tests use it to check the files it writes.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: sudo scripts/install.sh [options]
       sudo scripts/install.sh --uninstall [--purge]

  --precision fp16|int8    TensorRT engine precision (default fp16); int8 needs --calib-dir
  --calib-dir DIR          folder of real entrance images (jpg/png) for INT8 calibration
  --parity-images PATH     images or a video for the parity check (default: 60 frames from the camera)
  --autologin-user USER    desktop user GDM logs in at boot, whose X display :0 shows the appliance
                           (default: the user who ran sudo)
  --no-autologin           leave GDM alone (you set up the display yourself, or run headless)
  --nvpmodel MODE          set the power mode (sudo nvpmodel -q lists the current one; Xavier NX on
                           JetPack 5: 8 = MODE_20W_6CORE); persistent across reboots
  --jetson-clocks          run jetson_clocks at every boot (maximum clocks for the mode; more heat)
  --skip-engine            do not build the TensorRT engine now (maskwatch-engine.service builds it at boot)
  --src DIR                the maskwatch source tree (default: the one holding this script)
  --uninstall              stop and remove the services, the venv, the display set-up; keep the config,
                           the event log and the user
  --purge                  with --uninstall: also delete /etc/maskwatch, /var/lib/maskwatch and the user
  --root DIR               stage files under DIR; skip apt, users, pip, systemctl, nvpmodel and the engine
  -h, --help               this text
EOF
}

log() { printf '\033[1mmaskwatch install:\033[0m %s\n' "$*"; }
warn() { printf '\033[1;33mmaskwatch install: WARNING:\033[0m %s\n' "$*" >&2; PROBLEMS=$((PROBLEMS + 1)); }
die() { printf '\033[1;31mmaskwatch install: ERROR:\033[0m %s\n' "$*" >&2; exit 1; }

PROBLEMS=0
PRECISION=fp16
CALIB_DIR=""
PARITY_IMAGES=""
AUTOLOGIN_USER="${SUDO_USER:-}"
AUTOLOGIN=1
NVPMODEL=""
JETSON_CLOCKS=0
SKIP_ENGINE=0
UNINSTALL=0
PURGE=0
ROOT=""
SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

while [ $# -gt 0 ]; do
    case "$1" in
        --precision) PRECISION="${2:?--precision needs fp16 or int8}"; shift 2 ;;
        --calib-dir) CALIB_DIR="${2:?--calib-dir needs a folder}"; shift 2 ;;
        --parity-images) PARITY_IMAGES="${2:?--parity-images needs a folder or video}"; shift 2 ;;
        --autologin-user) AUTOLOGIN_USER="${2:?--autologin-user needs a user name}"; shift 2 ;;
        --no-autologin) AUTOLOGIN=0; shift ;;
        --nvpmodel) NVPMODEL="${2:?--nvpmodel needs a mode number}"; shift 2 ;;
        --jetson-clocks) JETSON_CLOCKS=1; shift ;;
        --skip-engine) SKIP_ENGINE=1; shift ;;
        --src) SRC="$(cd "${2:?--src needs a folder}" && pwd)"; shift 2 ;;
        --uninstall) UNINSTALL=1; shift ;;
        --purge) PURGE=1; shift ;;
        --root) ROOT="${2:?--root needs a folder}"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown option: $1" ;;
    esac
done

case "$PRECISION" in fp16|int8) ;; *) die "--precision must be fp16 or int8, not '$PRECISION'" ;; esac
if [ "$PRECISION" = int8 ] && [ -z "$CALIB_DIR" ]; then
    die "--precision int8 needs --calib-dir DIR (real images from the entrance camera; see docs/engine.md)"
fi
if [ -n "$NVPMODEL" ] && ! [[ "$NVPMODEL" =~ ^[0-9]+$ ]]; then
    die "--nvpmodel takes a mode number (see /etc/nvpmodel.conf), not '$NVPMODEL'"
fi
[ "$PURGE" -eq 0 ] || [ "$UNINSTALL" -eq 1 ] || die "--purge only goes with --uninstall"

# folders given on the command line become absolute (the engine is built from another working directory)
for v in CALIB_DIR PARITY_IMAGES; do
    if [ -n "${!v}" ] && [ -e "${!v}" ]; then
        printf -v "$v" '%s' "$(cd "$(dirname "${!v}")" && pwd)/$(basename "${!v}")"
    elif [ -n "${!v}" ] && [ -z "$ROOT" ]; then
        die "no such file or folder: ${!v}"
    fi
done

if [ -n "$ROOT" ]; then
    mkdir -p "$ROOT"
    ROOT="$(cd "$ROOT" && pwd)"
fi

# every path the installer writes, under $ROOT when staging
PREFIX="$ROOT/opt/maskwatch"
VENV="$PREFIX/venv"
LIBEXEC="$ROOT/usr/local/lib/maskwatch"
BIN_LINK="$ROOT/usr/local/bin/maskwatch"
CONF_DIR="$ROOT/etc/maskwatch"
CONFIG="$CONF_DIR/config.yaml"
STATE_DIR="$ROOT/var/lib/maskwatch"
ENGINE_DIR="$STATE_DIR/engines"
UNIT_DIR="$ROOT/etc/systemd/system"
DOC_DIR="$ROOT/usr/share/doc/maskwatch"
AUTOSTART="$ROOT/etc/xdg/autostart/maskwatch-display.desktop"
DISPLAY_SCRIPT="$LIBEXEC/display-session.sh"
GDM_CONF="$ROOT/etc/gdm3/custom.conf"
GDM_BACKUP="$GDM_CONF.maskwatch-orig"
SVC_USER=maskwatch
UNITS=(maskwatch.service maskwatch-engine.service maskwatch-clocks.service)

live() { [ -z "$ROOT" ]; }

# run a command that acts on the live system; with --root only say what would run
on_system() {
    if live; then
        "$@"
    else
        log "[--root] skipped: $*"
    fi
}

# ------------------------------------------------------------------------------------------ preflight

preflight() {
    live || return 0
    [ "$(id -u)" -eq 0 ] || die "run as root: sudo $0"
    if [ ! -f /etc/nv_tegra_release ]; then
        die "this is not a Jetson (no /etc/nv_tegra_release): the installer is for JetPack 5.1 on a Xavier NX; \
on a PC use: pip install -e . && maskwatch run (docs/runtime.md)"
    fi
    local release
    release="$(head -n 1 /etc/nv_tegra_release)"
    case "$release" in
        *R35*) log "L4T: $release" ;;
        *) warn "L4T release '$release' is not R35 (JetPack 5.1); continuing, but only JetPack 5.1 is tested" ;;
    esac
    if [ "$UNINSTALL" -eq 0 ]; then
        if [ ! -f "$SRC/setup.py" ] || [ ! -d "$SRC/edge" ]; then
            die "no maskwatch source tree at $SRC (use --src DIR)"
        fi
    fi
}

# ------------------------------------------------------------------------------------------ steps

apt_install_available() {
    # install the packages apt knows; name the ones it does not (repositories differ between JetPack images)
    local p have=() missing=()
    for p in "$@"; do
        if apt-cache show "$p" >/dev/null 2>&1; then have+=("$p"); else missing+=("$p"); fi
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        warn "apt has no package(s): ${missing[*]} (JetPack's nvidia repositories configured?)"
    fi
    if [ "${#have[@]}" -gt 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${have[@]}"
    fi
}

install_apt() {
    live || { log "[--root] skipped: apt-get install"; return 0; }
    log "apt packages"
    apt-get update
    # build and runtime needs of the venv; PortAudio and ALSA for the speaker; v4l-utils for the camera;
    # xhost/xset for the display; JetPack's own OpenCV (with GStreamer), TensorRT Python bindings,
    # GStreamer hardware plugins and the CUDA headers pycuda builds against
    apt_install_available python3-venv python3-pip python3-dev build-essential pkg-config \
        libsystemd-dev libasound2-dev libportaudio2 alsa-utils v4l-utils x11-xserver-utils \
        gstreamer1.0-tools libopencv-python python3-libnvinfer nvidia-l4t-gstreamer nvidia-cuda-dev
}

create_user() {
    live || { log "[--root] skipped: user $SVC_USER"; return 0; }
    if ! id "$SVC_USER" >/dev/null 2>&1; then
        log "system user $SVC_USER"
        useradd --system --user-group --home-dir /var/lib/maskwatch --no-create-home \
            --shell /usr/sbin/nologin --comment "maskwatch appliance" "$SVC_USER"
    fi
    local g groups=()
    for g in video audio render jtop; do  # render and jtop exist only on some images / after jetson-stats
        if getent group "$g" >/dev/null; then groups+=("$g"); fi
    done
    local joined
    joined="$(IFS=,; echo "${groups[*]}")"
    usermod --append --groups "$joined" "$SVC_USER"
    log "user $SVC_USER is in: $(id -nG "$SVC_USER")"
}

install_venv() {
    live || { log "[--root] skipped: venv and pip install .[jetson]"; return 0; }
    if [ ! -x "$VENV/bin/python" ]; then
        log "virtual environment $VENV (--system-site-packages: JetPack's TensorRT and OpenCV)"
        mkdir -p "$PREFIX"
        python3 -m venv --system-site-packages "$VENV"
    fi
    "$VENV/bin/python" -m pip install --upgrade pip
    log "pip install ${SRC}[jetson] (pycuda builds against CUDA: a few minutes the first time)"
    # a copy of what the package is made of, so the build never writes into the (maybe user-owned) checkout
    # and never drags training runs along
    local build item items=()
    build="$(mktemp -d)"
    for item in setup.py README.md edge models; do
        if [ -e "$SRC/$item" ]; then items+=("$item"); fi
    done
    tar -C "$SRC" --exclude=__pycache__ --exclude='*.pt' -cf - "${items[@]}" | tar -C "$build" -xf -
    PATH="/usr/local/cuda/bin:$PATH" CUDA_ROOT=/usr/local/cuda \
        "$VENV/bin/python" -m pip install "${build}[jetson]"
    "$VENV/bin/python" -m pip install --force-reinstall --no-deps "$build"  # same version, new code
    rm -rf "$build"
    "$VENV/bin/python" - <<'EOF'
import cv2, sys
from edge.sources import gstreamer_available
print(f"maskwatch install: python {sys.version.split()[0]}, OpenCV {cv2.__version__} from {cv2.__file__}, "
      f"GStreamer {'yes' if gstreamer_available() else 'NO'}")
EOF
    if ! "$VENV/bin/python" -c 'import sys; from edge.sources import gstreamer_available as g; sys.exit(not g())'; then
        warn "the venv's OpenCV has no GStreamer: the camera falls back to CPU JPEG decoding (is libopencv-python installed and no pip opencv in the venv?)"
    fi
}

install_files() {
    log "files: $BIN_LINK, $DOC_DIR, units in $UNIT_DIR"
    mkdir -p "$(dirname "$BIN_LINK")" "$DOC_DIR" "$UNIT_DIR" "$LIBEXEC"
    ln -sfn /opt/maskwatch/venv/bin/maskwatch "$BIN_LINK"
    local d
    for d in "$SRC"/docs/*.md; do
        [ -e "$d" ] && install -m 0644 "$d" "$DOC_DIR/"
    done
    local u
    for u in "${UNITS[@]}"; do
        install -m 0644 "$SRC/systemd/$u" "$UNIT_DIR/$u"
    done
    mkdir -p "$STATE_DIR" "$ENGINE_DIR"
    if live; then
        chown "$SVC_USER:$SVC_USER" "$STATE_DIR" "$ENGINE_DIR"
        chmod 0750 "$STATE_DIR"
    fi
}

# set a key in the freshly copied config: `  <key>: <old>` -> `  <key>: <new>` (first match, keeps the comment)
set_config_value() {
    local key="$1" old="$2" new="$3" escaped
    if ! grep -Eq "^[[:space:]]+${key}:[[:space:]]+${old}([[:space:]]|\$)" "$CONFIG"; then
        die "$CONFIG has no '${key}: ${old}' line to set (edge/config.example.yaml changed?)"
    fi
    escaped="$(printf '%s' "$new" | sed -e 's/[\\/&|]/\\&/g')"
    sed -i -E "0,/^([[:space:]]+${key}:[[:space:]]+)${old}([[:space:]]|\$)/s//\\1${escaped}\\2/" "$CONFIG"
}

install_config() {
    mkdir -p "$CONF_DIR"
    if [ -e "$CONFIG" ]; then
        log "config $CONFIG exists: kept as it is (never overwritten)"
        return 0
    fi
    log "config $CONFIG (from edge/config.example.yaml: TensorRT backend, $PRECISION engine)"
    install -m 0644 "$SRC/edge/config.example.yaml" "$CONFIG"
    set_config_value backend onnxruntime tensorrt
    if grep -Eq '^[[:space:]]+precision:' "$CONFIG"; then
        set_config_value precision fp16 "$PRECISION"
    elif [ "$PRECISION" != fp16 ]; then
        die "this package's config has no model.engine.precision key: it cannot build a $PRECISION engine"
    fi
    if [ -n "$CALIB_DIR" ]; then
        set_config_value calib_dir null "\"$CALIB_DIR\""
    fi
}

config_precision() {
    # the precision the service will look for (the config wins over --precision on a re-install)
    "$VENV/bin/python" -c 'import sys; from edge.config import load; print(load(sys.argv[1]).model.engine.precision)' \
        "$CONFIG"
}

check_config() {
    live || return 0
    if ! "$BIN_LINK" check-config "$CONFIG"; then
        die "$CONFIG is invalid (see above); fix it and run the installer again"
    fi
    local have
    have="$(config_precision)"
    if [ "$have" != "$PRECISION" ]; then
        warn "$CONFIG asks for a $have engine; --precision $PRECISION is ignored (edit model.engine.precision to change it)"
        PRECISION="$have"
    fi
}

# display at boot: GDM logs the desktop user in on X :0; that session lets the maskwatch user in
install_display() {
    mkdir -p "$(dirname "$AUTOSTART")" "$LIBEXEC"
    cat >"$DISPLAY_SCRIPT" <<'EOF'
#!/bin/sh
# run in the auto-login desktop session (autostart): let the maskwatch service draw on this X display,
# and keep the monitor awake
xhost +SI:localuser:maskwatch
xset s off -dpms s noblank 2>/dev/null || true
gsettings set org.gnome.desktop.session idle-delay 0 2>/dev/null || true
gsettings set org.gnome.desktop.screensaver lock-enabled false 2>/dev/null || true
EOF
    chmod 0755 "$DISPLAY_SCRIPT"
    cat >"$AUTOSTART" <<'EOF'
[Desktop Entry]
Type=Application
Name=maskwatch display access
Comment=Let the maskwatch service show its window on this display
Exec=/usr/local/lib/maskwatch/display-session.sh
NoDisplay=true
X-GNOME-Autostart-enabled=true
EOF
    log "display: autostart $AUTOSTART (xhost +SI:localuser:maskwatch, no blanking)"
    if [ "$AUTOLOGIN" -eq 0 ]; then
        log "display: --no-autologin: GDM left as it is"
        return 0
    fi
    if [ -z "$AUTOLOGIN_USER" ] || [ "$AUTOLOGIN_USER" = root ]; then
        warn "no desktop user for GDM auto-login (run with sudo from the user's session or pass --autologin-user USER); the monitor stays at the login screen until someone logs in"
        return 0
    fi
    if live && ! id "$AUTOLOGIN_USER" >/dev/null 2>&1; then
        die "--autologin-user $AUTOLOGIN_USER: no such user"
    fi
    if [ ! -f "$GDM_CONF" ]; then
        warn "no $GDM_CONF (GDM not installed?): set up an auto-login for $AUTOLOGIN_USER yourself"
        return 0
    fi
    [ -e "$GDM_BACKUP" ] || cp -p "$GDM_CONF" "$GDM_BACKUP"
    # drop our keys wherever they are, then put them right under [daemon] (added if missing)
    local tmp
    tmp="$(mktemp)"
    awk -v user="$AUTOLOGIN_USER" '
        /^[[:space:]]*#?[[:space:]]*(AutomaticLoginEnable|AutomaticLogin|WaylandEnable)[[:space:]]*=/ { next }
        { print }
        /^\[daemon\][[:space:]]*$/ && !done {
            print "AutomaticLoginEnable=true"; print "AutomaticLogin=" user; print "WaylandEnable=false"; done = 1
        }
        END { if (!done) { print "[daemon]"; print "AutomaticLoginEnable=true"; print "AutomaticLogin=" user;
                           print "WaylandEnable=false" } }
    ' "$GDM_CONF" >"$tmp"
    cat "$tmp" >"$GDM_CONF"
    rm -f "$tmp"
    log "display: GDM logs $AUTOLOGIN_USER in automatically on X :0 (Wayland off); original kept in $GDM_BACKUP"
}

install_power() {
    if [ -n "$NVPMODEL" ]; then
        log "power: nvpmodel -m $NVPMODEL"
        on_system nvpmodel -m "$NVPMODEL"
    fi
    if live && command -v nvpmodel >/dev/null; then
        log "power: $(nvpmodel -q 2>/dev/null | head -n 1)"
    fi
    if [ "$JETSON_CLOCKS" -eq 1 ]; then
        log "power: jetson_clocks at every boot (maskwatch-clocks.service)"
        on_system systemctl enable maskwatch-clocks.service
        on_system systemctl start maskwatch-clocks.service
    else
        on_system systemctl disable maskwatch-clocks.service
    fi
}

install_jtop() {
    live || { log "[--root] skipped: jetson-stats and jtop.service"; return 0; }
    log "jetson-stats (jtop) system-wide, and its service"
    if ! python3 -m pip install --upgrade jetson-stats; then
        warn "pip install jetson-stats failed: no telemetry on the monitor (the appliance runs without it)"
        return 0
    fi
    if [ ! -e /etc/systemd/system/jtop.service ] && [ ! -e /lib/systemd/system/jtop.service ]; then
        jtop --install-service || warn "jtop --install-service failed"
    fi
    systemctl daemon-reload
    systemctl enable --now jtop.service || warn "jtop.service did not start (systemctl status jtop)"
    if getent group jtop >/dev/null; then usermod --append --groups jtop "$SVC_USER"; fi
}

as_service_user() {
    # run a maskwatch command as the service's user, with the service's state directory
    runuser -u "$SVC_USER" -- env STATE_DIRECTORY=/var/lib/maskwatch HOME=/var/lib/maskwatch \
        PATH="/usr/local/cuda/bin:/usr/bin:/bin" "$@"
}

capture_parity_frames() {
    # 60 frames from the configured camera for the parity check (real images of this entrance)
    local out="$1"
    rm -rf "$out"
    install -d -o "$SVC_USER" -g "$SVC_USER" "$out"
    as_service_user /opt/maskwatch/venv/bin/python - "$CONFIG" "$out" <<'EOF'
import sys, time
import cv2
from edge.config import load
from edge.sources import make_source
c = load(sys.argv[1]).camera
src = make_source(c.source, c.width, c.height, c.fps, c.fourcc, c.backend, c.jpeg_decoder, c.by_id)
src.open()
n, end = 0, time.monotonic() + 20
try:
    while n < 60 and time.monotonic() < end:
        img = src.read()
        if img is not None:
            cv2.imwrite(f"{sys.argv[2]}/frame{n:03d}.jpg", img)
            n += 1
finally:
    src.close()
print(f"maskwatch install: {n} camera frames for the parity check")
sys.exit(0 if n else 1)
EOF
}

build_engine() {
    if [ "$SKIP_ENGINE" -eq 1 ]; then
        log "engine: --skip-engine: maskwatch-engine.service builds it before the first start"
        return 0
    fi
    live || { log "[--root] skipped: maskwatch build-engine, maskwatch check-parity"; return 0; }
    systemctl stop maskwatch.service 2>/dev/null || true  # the GPU memory and the camera, for the build
    log "engine: maskwatch build-engine --precision $PRECISION (minutes on the first install)"
    local p
    for p in "$CALIB_DIR" "$PARITY_IMAGES"; do
        if [ -n "$p" ] && ! runuser -u "$SVC_USER" -- test -r "$p"; then
            die "$p is not readable by the $SVC_USER user (the engine is built as that user): copy it to /var/lib/maskwatch or open its permissions"
        fi
    done
    local args=(-c /etc/maskwatch/config.yaml --precision "$PRECISION" --out-dir /var/lib/maskwatch/engines)
    if [ -n "$CALIB_DIR" ]; then args+=(--calib-dir "$CALIB_DIR"); fi
    if ! as_service_user /usr/local/bin/maskwatch build-engine "${args[@]}"; then
        warn "the engine build failed (see above); maskwatch-engine.service retries at the next start"
        return 0
    fi
    local images="$PARITY_IMAGES"
    if [ -z "$images" ]; then
        images=/var/lib/maskwatch/parity-frames
        if ! capture_parity_frames "$images"; then
            warn "no camera frames for the parity check; run it later: maskwatch check-parity -c /etc/maskwatch/config.yaml --images DIR --json /var/lib/maskwatch/engines/parity.json"
            return 0
        fi
    fi
    log "engine: maskwatch check-parity on $images"
    local rc=0
    as_service_user /usr/local/bin/maskwatch check-parity -c /etc/maskwatch/config.yaml --images "$images" \
        --precision "$PRECISION" --json /var/lib/maskwatch/engines/parity.json || rc=$?
    case "$rc" in
        0) log "engine: parity within the $PRECISION tolerance" ;;
        1) warn "engine: TensorRT and ONNX Runtime disagree beyond the $PRECISION tolerance (see above, docs/engine.md)" ;;
        *) warn "engine: the parity check could not run (exit $rc, see above)" ;;
    esac
}

start_services() {
    live || { log "[--root] skipped: systemctl enable --now maskwatch"; return 0; }
    systemctl daemon-reload
    systemctl enable maskwatch-engine.service maskwatch.service
    systemctl reset-failed maskwatch.service 2>/dev/null || true
    if ! systemctl restart maskwatch.service; then
        warn "maskwatch.service did not start (journalctl -u maskwatch -b)"
        return 0
    fi
    sleep 3
    systemctl --no-pager --lines=5 status maskwatch.service || warn "maskwatch.service is not running yet (journalctl -u maskwatch)"
}

# ------------------------------------------------------------------------------------------ uninstall

uninstall() {
    log "uninstall"
    local u
    for u in maskwatch.service maskwatch-engine.service maskwatch-clocks.service; do
        on_system systemctl disable --now "$u" 2>/dev/null || true
        rm -f "$UNIT_DIR/$u"
    done
    on_system systemctl daemon-reload
    if [ -L "$BIN_LINK" ] && [ "$(readlink "$BIN_LINK")" = /opt/maskwatch/venv/bin/maskwatch ]; then
        rm -f "$BIN_LINK"
    fi
    rm -rf "$PREFIX" "$LIBEXEC" "$DOC_DIR" "$AUTOSTART"
    if [ -e "$GDM_BACKUP" ]; then
        cat "$GDM_BACKUP" >"$GDM_CONF"
        rm -f "$GDM_BACKUP"
        log "GDM auto-login undone ($GDM_CONF restored)"
    fi
    if [ "$PURGE" -eq 1 ]; then
        rm -rf "$CONF_DIR" "$STATE_DIR"
        if live && id "$SVC_USER" >/dev/null 2>&1; then userdel "$SVC_USER"; fi
        log "purged: config, event log, engines and the $SVC_USER user"
    else
        log "kept: $CONF_DIR (config), $STATE_DIR (event log, engines), user $SVC_USER (--purge removes them)"
    fi
    log "jetson-stats and jtop.service stay installed (sudo pip3 uninstall jetson-stats removes them)"
}

# ------------------------------------------------------------------------------------------ main

preflight
if [ "$UNINSTALL" -eq 1 ]; then
    uninstall
    exit 0
fi
install_apt
create_user
install_jtop
install_venv
install_files
install_config
check_config
install_display
on_system systemctl daemon-reload
install_power
build_engine
start_services
if [ "$PROBLEMS" -gt 0 ]; then
    log "installed with $PROBLEMS warning(s) (above). Check the box: sudo systemctl stop maskwatch && sudo -u maskwatch DISPLAY=:0 maskwatch doctor -c /etc/maskwatch/config.yaml; sudo systemctl start maskwatch"
    exit 1
fi
log "installed. Check the box: sudo systemctl stop maskwatch && sudo -u maskwatch DISPLAY=:0 maskwatch doctor -c /etc/maskwatch/config.yaml; sudo systemctl start maskwatch"
