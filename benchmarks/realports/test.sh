#!/usr/bin/env bash
# Runs the tests that need the third-party model packages (tests/thirdparty: network-aware inference on real
# third-party model code) inside the environment env.sh builds, creating or completing it first.
#
# Usage: bash benchmarks/realports/test.sh [VENV_DIR] [PYTEST ARGS...]   (default VENV_DIR: .venv-realports)
# The environment gets pytest besides what env.sh installs; automap runs from this checkout.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
VENV="${1:-$REPO/.venv-realports}"
shift || true
FOUND='import importlib.util as u, sys; sys.exit(any(u.find_spec(n) is None for n in sys.argv[1:]))'
[ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "$FOUND" torchvision timm transformers mindcv mindformers \
    || bash "$HERE/env.sh" "$VENV"
"$VENV/bin/python" -m pytest --version >/dev/null 2>&1 || "$VENV/bin/python" -m pip install -q pytest
cd "$REPO"
GLOG_v=3 PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" "$VENV/bin/python" -m pytest tests/thirdparty -p no:cacheprovider "$@"
