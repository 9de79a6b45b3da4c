#!/usr/bin/env bash
# One entry point for the README's two commands:
#   ./setup.sh run   -> create .venv, install dondoc, run the main job on embedded defaults
#   ./setup.sh test  -> create .venv, install dondoc with test extras, run the whole test suite
# PYTHON=python3.12 picks the interpreter (default: the newest of 3.13, 3.12, 3.11 found, pyenv
# versions included); VENV=.venv-3.12 picks the virtualenv directory (default .venv). A venv made
# with another Python than the chosen one is recreated.
set -euo pipefail
cd "$(dirname "$0")"
case "${1:-run}" in run|test) ;; *) echo "usage: ./setup.sh run|test" >&2; exit 2 ;; esac

MIN_MINOR=11 MAX_MINOR=13          # keep in line with requires-python in pyproject.toml
VENV="${VENV:-.venv}"

# "3 12 3.12.1" for a working interpreter, nothing (and no noise) otherwise: a pyenv shim for a
# version that is not active exits 127 with a long message on stderr.
probe() {
  "$1" -c 'import sys; print(*sys.version_info[:2], "%d.%d.%d" % sys.version_info[:3])' 2>/dev/null </dev/null || true
}

# Path of a working interpreter for NAME ("python3.12", a path, ...), or nothing. A bare
# python3.N whose shim does not run falls back to pyenv's installed 3.N.* (newest patch first).
resolve() {
  local name="$1" path minor
  if path="$(command -v -- "$name" 2>/dev/null)" && [ -n "$(probe "$path")" ]; then
    echo "$path"; return
  fi
  if [[ "$name" =~ ^python3\.([0-9]+)$ ]]; then
    minor="${BASH_REMATCH[1]}"
    while IFS= read -r path; do
      if [ -x "$path" ] && [ -n "$(probe "$path")" ]; then echo "$path"; return; fi
    done < <(printf '%s\n' "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3."$minor".*/bin/python3."$minor" | sort -rV)
  fi
}

supported() { [ "$1" -eq 3 ] && [ "$2" -ge "$MIN_MINOR" ] && [ "$2" -le "$MAX_MINOR" ]; }
WANT="Python 3.$MIN_MINOR đến 3.$MAX_MINOR"

PY="" PYVER=""
if [ -n "${PYTHON:-}" ]; then
  PY="$(resolve "$PYTHON")"
  if [ -z "$PY" ]; then echo "Không chạy được PYTHON=$PYTHON (dondoc cần $WANT)." >&2; exit 1; fi
  read -r major minor PYVER <<<"$(probe "$PY")"
  if ! supported "$major" "$minor"; then
    echo "PYTHON=$PYTHON là Python $PYVER; dondoc cần $WANT." >&2; exit 1
  fi
else
  for minor in $(seq "$MAX_MINOR" -1 "$MIN_MINOR"); do
    PY="$(resolve "python3.$minor")"
    if [ -n "$PY" ]; then read -r _ _ PYVER <<<"$(probe "$PY")"; break; fi
  done
  if [ -z "$PY" ] && PY="$(resolve python3)" && [ -n "$PY" ]; then
    read -r major minor PYVER <<<"$(probe "$PY")"
    supported "$major" "$minor" || PY=""
  fi
  if [ -z "$PY" ]; then echo "Không tìm thấy $WANT (đặt PYTHON=… để chọn)." >&2; exit 1; fi
fi
echo "dondoc dùng Python $PYVER ($PY), môi trường ảo $VENV" >&2

# The venv is reused only if it was made by this very interpreter (same version and base prefix).
ident='import sys; print("%d.%d.%d (%s)" % (*sys.version_info[:3], sys.base_prefix))'
if [ -e "$VENV" ]; then
  have="$("$VENV/bin/python" -c "$ident" 2>/dev/null </dev/null || true)"
  if [ "$have" != "$("$PY" -c "$ident")" ]; then
    if [ ! -f "$VENV/pyvenv.cfg" ]; then
      echo "VENV=$VENV không phải là một môi trường ảo Python; chọn thư mục khác." >&2; exit 1
    fi
    echo "$VENV được tạo bằng Python ${have:-khác (không chạy được)}; tạo lại bằng Python $PYVER." >&2
    rm -rf -- "$VENV"
  fi
fi
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
  [ -e "$VENV/.gitignore" ] || echo '*' >"$VENV/.gitignore"   # as 3.13's venv does: .venv-3.12/ etc.
fi

# pip -q still prints one "Location '…' is ignored" warning per package for this machine's
# find-links/extra-index-url entries; drop only those lines (errors and other warnings stay).
pip_install() {
  { "$VENV/bin/python" -m pip install -q "$@" 2>&1 1>&3 | sed -u "/^WARNING: Location '.*' is ignored/d" >&2; } 3>&1
}

# durable-rules 2.0.28 calls PyEval_CallObject, removed from Python 3.13's C API: build it from
# source with that name mapped to PyObject_CallObject (its setup.py overwrites CFLAGS, so
# CPPFLAGS), bypassing pip's wheel cache, which may hold a wheel built without the mapping.
read -r _ minor _ <<<"$(probe "$PY")"
if [ "$minor" -ge 13 ] && ! "$VENV/bin/python" -c 'import durable_rules_engine' 2>/dev/null; then
  req="$(grep -o '"durable-rules[^"]*"' pyproject.toml | head -n 1 | tr -d '"')"
  CPPFLAGS="-DPyEval_CallObject=PyObject_CallObject ${CPPFLAGS:-}" \
    pip_install --no-cache-dir --no-binary durable-rules --force-reinstall --no-deps "${req:-durable-rules}"
fi

case "${1:-run}" in
  run)
    pip_install -e .
    shift || true
    exec "$VENV/bin/dondoc" run "$@"
    ;;
  test)
    pip_install -e '.[test]'
    shift || true
    # One pytest-xdist worker per core plus one: many tests wait on a daemon, a server or a lock
    # held for seconds, and the extra worker uses that time (2 cores: whole suite 6:38 → 5:08).
    # Pass -n 0 to run in one process.
    exec "$VENV/bin/python" -m pytest -q -n "$(( $(nproc 2>/dev/null || echo 1) + 1 ))" "$@"
    ;;
esac
