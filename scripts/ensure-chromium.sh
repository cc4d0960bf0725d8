#!/bin/sh
# Make sure Debian's headless-capable chromium is installed at /usr/bin/chromium (used by tests/e2e).
# Exits 0 when it is present (already or after installing); non-zero when it cannot be installed.
set -eu

CHROMIUM=${CHROMIUM:-/usr/bin/chromium}

if [ -x "$CHROMIUM" ]; then
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-chromium: $CHROMIUM is missing and apt-get is not available; install chromium yourself" >&2
    exit 1
fi

SUDO=""
if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo -n"
    else
        echo "ensure-chromium: not root and no sudo; run: apt-get install -y chromium" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
echo "ensure-chromium: installing chromium with apt-get" >&2
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null

if [ -x "$CHROMIUM" ]; then
    exit 0
fi
echo "ensure-chromium: apt-get finished but $CHROMIUM is still missing" >&2
exit 1
