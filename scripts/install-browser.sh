#!/usr/bin/env bash
# Install what the browser tests need from Debian: chromium and a CJK font (so Chinese renders, not boxes).
# Playwright drives this system Chromium (tests/test_browser.py); it never downloads a browser of its own.
# Does nothing when both are present. Needs root for apt-get; otherwise it only says what is missing.
# Usage: bash scripts/install-browser.sh
set -uo pipefail
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
fc-list :lang=zh 2>/dev/null | grep -q . || missing+=(fonts-wqy-microhei)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "install-browser: missing ${missing[*]}; run as root: apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "install-browser: installing ${missing[*]} with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null && \
  apt-get install -y -qq --no-install-recommends "${missing[@]}" fontconfig >/dev/null || {
    echo "install-browser: apt-get could not install ${missing[*]}" >&2
    exit 1
  }
