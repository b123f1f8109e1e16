#!/usr/bin/env bash
# Install doorkeep as a hardened systemd service on Raspberry Pi OS (64-bit, bookworm or later).
#
#   sudo ./install-pi.sh                 # from PyPI: pip install doorkeep[pi]
#   sudo ./install-pi.sh --from /path    # from a checkout or a wheel (pip install /path[pi])
#
# What it does, in order (safe to run again; it upgrades in place and never touches /var/lib/doorkeep's keys):
#   1. refuses anything but 64-bit Linux on aarch64 (32-bit armv7l has no LiteRT/tflite-runtime wheels);
#   2. apt: python3-picamera2 (libcamera bindings exist only as an apt package), python3-venv, libcap-dev;
#   3. a system user `doorkeep` (no login, no home) in the video and gpio groups;
#   4. a venv at /opt/doorkeep/.venv with --system-site-packages (so picamera2 from apt is importable) and
#      `pip install doorkeep[pi]`;
#   5. /etc/doorkeep/doorkeep.toml (only if missing), the systemd unit, `doorkeep models fetch`;
#   6. enables and starts doorkeep.service.
set -euo pipefail

PREFIX=/opt/doorkeep
VENV=$PREFIX/.venv
ETC=/etc/doorkeep
STATE=/var/lib/doorkeep
UNIT_DST=/etc/systemd/system/doorkeep.service
SOURCE="doorkeep[pi]"
START=1

die() { echo "install-pi.sh: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
    --from) [ $# -ge 2 ] || die "--from needs a path"; SOURCE="$2[pi]"; shift 2 ;;
    --no-start) START=0; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
    esac
done

# ---- 1. platform
arch=$(uname -m)
case "$arch" in
aarch64) ;;
armv7l|armv6l)
    die "this is a 32-bit OS ($arch). doorkeep needs Raspberry Pi OS (64-bit): neither ai-edge-litert nor
tflite-runtime publish 32-bit ARM wheels. Flash 'Raspberry Pi OS (64-bit)' with Raspberry Pi Imager and run this again." ;;
*) die "unsupported machine '$arch': this script installs on a Raspberry Pi running 64-bit Raspberry Pi OS (aarch64).
On other Linux machines use: python3 -m venv .venv && .venv/bin/pip install doorkeep" ;;
esac
[ "$(getconf LONG_BIT)" = 64 ] || die "64-bit kernel with a 32-bit userland: install Raspberry Pi OS (64-bit)"
[ "$(id -u)" = 0 ] || die "run as root: sudo $0"
command -v systemctl >/dev/null || die "systemd is required"

# ---- 2. system packages
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq python3 python3-venv python3-pip python3-picamera2 libcap-dev >/dev/null

# ---- 3. service user
if ! id -u doorkeep >/dev/null 2>&1; then
    useradd --system --no-create-home --home-dir "$STATE" --shell /usr/sbin/nologin doorkeep
fi
for g in video gpio; do
    getent group "$g" >/dev/null && usermod -a -G "$g" doorkeep
done

# ---- 4. venv + package
install -d -m 0755 "$PREFIX"
[ -x "$VENV/bin/python" ] || python3 -m venv --system-site-packages "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q --upgrade "$SOURCE"
"$VENV/bin/python" -c 'import picamera2' 2>/dev/null \
    || echo "install-pi.sh: warning: picamera2 does not import (is the camera enabled? see docs/hobbyist.md)" >&2

# ---- 5. config, state, unit, model
install -d -m 0755 "$ETC"
if [ ! -f "$ETC/doorkeep.toml" ]; then
    cat >"$ETC/doorkeep.toml" <<TOML
# Local settings. Zones, masks, thresholds, retention and the broker change only through owner-signed
# configuration documents (doorkeep config sign / apply), see docs/hobbyist.md.
[device]
state_dir = "$STATE"

[capture]
source = "picamera2"
TOML
fi
install -d -m 0700 -o doorkeep -g doorkeep "$STATE"
unit_src=$("$VENV/bin/python" -c 'import importlib.resources as r; print(r.files("doorkeep.provisioning") / "systemd" / "doorkeep.service")')
install -m 0644 "$unit_src" "$UNIT_DST"
# The model is pinned by sha256 in doorkeep's manifest; it is fetched once into the state directory's cache.
runuser -u doorkeep -- env HOME="$STATE" "$VENV/bin/doorkeep" models fetch
systemctl daemon-reload
systemd-analyze verify "$UNIT_DST"

# ---- 6. start
if [ "$START" = 1 ]; then
    systemctl enable --now doorkeep.service
    echo "doorkeep is running. Device id and pairing code: journalctl -u doorkeep -n 50"
else
    systemctl enable doorkeep.service
fi
