#!/usr/bin/env bash
# Debian's Chromium (+ chromedriver) for tests/e2e/test_dashboard_browser.py. Playwright drives it by path;
# no browser is ever downloaded. Idempotent: does nothing when /usr/bin/chromium is already there.
set -euo pipefail
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  echo "browser-deps: chromium $(/usr/bin/chromium --version 2>/dev/null | awk '{print $2}') already installed"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver
/usr/bin/chromium --version
