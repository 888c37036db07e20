#!/usr/bin/env bash
# Headless Chromium and its driver for the console's browser tests (tests/console/):
# installs Debian's chromium and chromium-driver packages when they are missing (needs
# root, as scripts/pg.sh does for PostgreSQL) and exports where they are.
set -euo pipefail

if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then
    echo "Chromium not found; install Debian's 'chromium' and 'chromium-driver' packages" >&2
    exit 1
  fi
  echo "==> installing Chromium from Debian's packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  # the font too: the screenshots in docs/console/ are rendered with DejaVu Sans
  apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-dejavu-core >&2
fi
export SYNCGATE_CHROMIUM="$(command -v chromium)"
export SYNCGATE_CHROMEDRIVER="$(command -v chromedriver)"
echo "==> $("$SYNCGATE_CHROMIUM" --version 2>/dev/null | head -n 1)" >&2
