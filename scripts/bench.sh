#!/usr/bin/env bash
# Run benchmarks on the free-threaded interpreter with the anchors (ft_utils, cereggii) installed
# in their own venv: scripts/bench.sh [benches/bench_x.py ...]  (default: benches/run_all.py).
# cereggii builds from source with CMake, which must find the free-threaded interpreter first
# on PATH, so the venv's bin directory leads PATH during its install.
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
cd "$ROOT"
FT_PYTHON="$("$ROOT/scripts/ensure_ft_python.sh")"
ensure_maturin
vpy="$(make_venv ft-bench "$FT_PYTHON")"
vbin="$(dirname "$vpy")"
for pkg in ft_utils cereggii; do
  if ! "$vpy" -c "import $pkg" 2>/dev/null; then
    log "installing anchor $pkg (optional: benches report n/a without it)"
    PATH="$vbin:$PATH" "$vpy" -m pip install --quiet --disable-pip-version-check "${pkg/_/-}" >&2 \
      || echo "warning: $pkg did not install; its rows will read n/a" >&2
  fi
done
# --only-binary: the newest matplotlib with a wheel for this interpreter (a source build needs the
# network for freetype).
"$vpy" -c 'import matplotlib' 2>/dev/null || "$vpy" -m pip install --quiet --only-binary=:all: matplotlib >&2 || true
CARGO_TARGET_DIR="$ROOT/target/wheel-ft" install_wheel "$vpy"
if [ "$#" -eq 0 ]; then set -- benches/run_all.py; fi
for b in "$@"; do "$vpy" "$b"; done
