#!/usr/bin/env bash
# One entry point for the README's two commands:
#   ./setup.sh run   -> create .venv, install dondoc, run the main job on embedded defaults
#   ./setup.sh test  -> create .venv, install dondoc with test extras, run the whole test suite
set -euo pipefail
cd "$(dirname "$0")"
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  for cand in python3.12 python3.11 python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(0 if (3,11) <= sys.version_info[:2] <= (3,12) else 1)'; then
      PY="$cand"; break
    fi
  done
fi
if [ -z "$PY" ]; then echo "dondoc cần Python 3.11 hoặc 3.12 (durable-rules chưa chạy trên 3.13)." >&2; exit 1; fi
if [ ! -x .venv/bin/python ]; then "$PY" -m venv .venv; fi
case "${1:-run}" in
  run)
    .venv/bin/pip install -q -e . 
    shift || true
    exec .venv/bin/dondoc run "$@"
    ;;
  test)
    .venv/bin/pip install -q -e '.[test]'
    shift || true
    exec .venv/bin/python -m pytest -q "$@"
    ;;
  *) echo "usage: ./setup.sh run|test" >&2; exit 2 ;;
esac
