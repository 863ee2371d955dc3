# Shared by the scripts: the pinned build tools, venvs under .venvs/, building the wheel for one
# interpreter and installing it there. Sourced, not run. Every step of a function returns on
# failure by itself: scripts/test.sh calls them where `set -e` does not apply.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The real interpreter, not a pyenv shim or whatever `python3` a venv on PATH would give.
GIL_PYTHON="$("${NOGILSAFE_GIL_PYTHON:-python3}" -c 'import sys; print(sys.executable)')"
TOOLS_VENV="$ROOT/.venvs/tools"

log() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }

# ensure_tools: .venvs/tools holds exactly scripts/requirements-tools.txt (maturin with its zig
# linker, auditwheel, ruff), made anew when that file changes.
ensure_tools() {
  local req="$ROOT/scripts/requirements-tools.txt" stamp="$TOOLS_VENV/requirements-tools.txt"
  if ! cmp -s "$req" "$stamp" || ! "$TOOLS_VENV/bin/python" -c '' 2>/dev/null; then
    log "installing build and lint tools into $TOOLS_VENV"
    "$GIL_PYTHON" -m venv --clear "$TOOLS_VENV" >&2 || return
    "$TOOLS_VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req" >&2 || return
    cp "$req" "$stamp"
  fi
}
ensure_maturin() { ensure_tools; }

# maturin finds its zig linker as `python3 -m ziglang`: the tools venv leads PATH for it alone.
maturin() { PATH="$TOOLS_VENV/bin:$PATH" "$TOOLS_VENV/bin/maturin" "$@"; }

# make_venv NAME PYTHON EXTRA_PACKAGES... -> prints the venv's python
make_venv() {
  local name="$1" py="$2"; shift 2
  local venv="$ROOT/.venvs/$name"
  # A venv whose interpreter was rebuilt or removed is made anew. Real paths on both sides: the
  # venv records python3.11 where it was made from python3, a link to it.
  local real='import os, sys; print(os.path.realpath(getattr(sys, "_base_executable", sys.executable)))'
  if ! "$venv/bin/python" -c 'import sys; sys.exit(0 if sys.prefix != sys.base_prefix else 1)' 2>/dev/null \
     || [ "$("$venv/bin/python" -c "$real" 2>/dev/null)" != "$("$py" -c "$real")" ]; then
    log "creating venv $venv from $py"
    "$py" -m venv --clear "$venv" >&2 || return
  fi
  if [ "$#" -gt 0 ]; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$@" >&2 || return
  fi
  echo "$venv/bin/python"
}

# install_wheel VENV_PYTHON [PROFILE [EXTRA]]: build nogilsafe for that interpreter and install
# it; with EXTRA (say `test`), also that extra's dependencies, from wheels only (a source build of
# the newest hypothesis or mypy fails on 3.13t, so the pins are ones with wheels everywhere).
# The wheel stays in dist/<venv name>/.
install_wheel() {
  local vpy="$1" profile="${2:-release}" extra="${3:-}" out whl
  out="$ROOT/dist/$(basename "$(dirname "$(dirname "$vpy")")")"
  rm -rf "$out"
  local flag=--release
  [ "$profile" = "dev" ] && flag=""
  log "building the wheel for $("$vpy" -c 'import sys; print(sys.version.split()[0], "free-threaded" if not getattr(sys, "_is_gil_enabled", lambda: True)() else "GIL")')"
  (cd "$ROOT" && maturin build $flag --quiet -i "$vpy" -o "$out" >&2) || return
  whl="$(ls "$out"/*.whl)" || return
  "$vpy" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps "$whl" >&2 \
    || return
  if [ -n "$extra" ]; then
    "$vpy" -m pip install --quiet --disable-pip-version-check --only-binary=:all: "$whl[$extra]" >&2
  fi
}
