#!/usr/bin/env bash
# The README's test command: build nogilsafe for the GIL python3 and for a free-threaded CPython
# (provisioned by scripts/ensure_ft_python.sh), then run cargo test and pytest on each.
# Extra arguments go to pytest. NOGILSAFE_SOAK=1 adds the long soak tests.
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
cd "$ROOT"
start=$(date +%s)
stage() { echo "[timing] $1: $(( $(date +%s) - $2 ))s" >&2; }

t=$(date +%s)
FT_PYTHON="$("$ROOT/scripts/ensure_ft_python.sh")"
stage "free-threaded interpreter" "$t"
ensure_maturin

status=0
for which in gil ft; do
  if [ "$which" = gil ]; then py="$GIL_PYTHON"; extra=(pytest hypothesis mypy uvloop); else py="$FT_PYTHON"; extra=(pytest); fi
  t=$(date +%s)
  vpy="$(make_venv "$which" "$py" "${extra[@]}")"
  install_wheel "$vpy"
  stage "$which: venv + wheel" "$t"

  t=$(date +%s)
  log "cargo test ($which)"
  libdir="$("$vpy" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR") or "")')"
  # The test binary embeds the interpreter; a separate target dir per interpreter keeps both cached.
  PYO3_PYTHON="$vpy" CARGO_TARGET_DIR="$ROOT/target/cargo-test-$which" \
    LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
    cargo test --quiet || status=1
  stage "$which: cargo test" "$t"

  t=$(date +%s)
  log "pytest ($which)"
  "$vpy" -m pytest -q -p no:cacheprovider "$@" tests || status=1
  stage "$which: pytest" "$t"
done
stage "total" "$start"
exit $status
