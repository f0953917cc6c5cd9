#!/usr/bin/env bash
# One entry point for people and CI.
#   bash run.sh            set up .venv (first time or when requirements change) and start the dashboard
#   bash run.sh test       set up the same way and run the whole test suite (what .ci/run calls)
#   bash run.sh setup      only set up
set -euo pipefail
cd "$(dirname "$0")"

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
VENV=.venv
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}

setup() {
  if [ ! -x "$VENV/bin/python" ]; then
    echo "creating $VENV with $($PY --version)"
    "$PY" -m venv "$VENV"
  fi
  local stamp="$VENV/.requirements.sha"
  local want
  want=$(cat requirements.txt requirements-dev.txt pyproject.toml | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "installing requirements into $VENV (a few minutes the first time)"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -r requirements.txt -r requirements-dev.txt
    echo "$want" > "$stamp"
  fi
}

browser() {
  # The webcam end-to-end test drives a real Chromium; install it where we can (root + apt).
  if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing chromium for the browser test"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "chromium could not be installed; the browser test will be skipped"
  fi
}

case "${1:-dashboard}" in
  setup) setup ;;
  dashboard)
    setup
    exec "$VENV/bin/streamlit" run Home.py "${@:2}"
    ;;
  test)
    setup
    browser
    "$VENV/bin/ruff" check .
    "$VENV/bin/ruff" format --check .
    exec "$VENV/bin/python" -m pytest "${@:2}"
    ;;
  *) echo "usage: bash run.sh [dashboard|test|setup]" >&2; exit 2 ;;
esac
