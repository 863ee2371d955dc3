#!/usr/bin/env bash
# The README's run command: build nogilsafe for a free-threaded CPython (provisioned on first use)
# and run the demo there. Arguments go to `python -m nogilsafe.demo`.
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
cd "$ROOT"
FT_PYTHON="$("$ROOT/scripts/ensure_ft_python.sh")"
ensure_maturin
vpy="$(make_venv ft "$FT_PYTHON" pytest)"
# The release build shares target/wheel-ft with scripts/test.sh: the same interpreter, no rebuild.
if [ "${NOGILSAFE_SKIP_BUILD:-0}" != 1 ]; then CARGO_TARGET_DIR="$ROOT/target/wheel-ft" install_wheel "$vpy"; fi
exec "$vpy" -m nogilsafe.demo "$@"
