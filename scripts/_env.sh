# Shared by scripts/test.sh and scripts/demo.sh: build the wheel for one interpreter and install it
# into that interpreter's own venv under .venvs/. Sourced, not run.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
GIL_PYTHON="${NOGILSAFE_GIL_PYTHON:-python3}"

log() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }

# ensure_maturin: the maturin that builds every wheel (it runs on the GIL Python; `-i` picks the
# target interpreter).
ensure_maturin() {
  if ! command -v maturin >/dev/null 2>&1; then
    log "installing maturin"
    "$GIL_PYTHON" -m pip install --quiet "maturin>=1.8,<2"
  fi
}

# make_venv NAME PYTHON EXTRA_PACKAGES... -> prints the venv's python
make_venv() {
  local name="$1" py="$2"; shift 2
  local venv="$ROOT/.venvs/$name"
  # A venv whose interpreter was rebuilt or removed is made anew.
  if ! "$venv/bin/python" -c 'import sys; sys.exit(0 if sys.prefix != sys.base_prefix else 1)' 2>/dev/null \
     || [ "$("$venv/bin/python" -c 'import sys; print(sys._base_executable)' 2>/dev/null)" != "$("$py" -c 'import sys; print(sys.executable)')" ]; then
    log "creating venv $venv from $py"
    "$py" -m venv --clear "$venv" >&2
  fi
  if [ "$#" -gt 0 ]; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$@" >&2
  fi
  echo "$venv/bin/python"
}

# install_wheel VENV_PYTHON [PROFILE]: build nogilsafe for that interpreter and install it.
install_wheel() {
  local vpy="$1" profile="${2:-release}" out
  out="$ROOT/dist/$(basename "$(dirname "$(dirname "$vpy")")")"
  rm -rf "$out"
  local flag=--release
  [ "$profile" = "dev" ] && flag=""
  log "building the wheel for $("$vpy" -c 'import sys; print(sys.version.split()[0], "free-threaded" if not getattr(sys, "_is_gil_enabled", lambda: True)() else "GIL")')"
  (cd "$ROOT" && maturin build $flag --quiet -i "$vpy" -o "$out" >&2)
  "$vpy" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps "$out"/*.whl >&2
}
