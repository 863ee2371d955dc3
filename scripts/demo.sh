#!/usr/bin/env bash
# The README's run command: build nogilsafe for a free-threaded CPython (provisioned on first use)
# and run the demo there. Arguments go to `python -m nogilsafe.demo`.
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
cd "$ROOT"
FT_PYTHON="$("$ROOT/scripts/ensure_ft_python.sh")"
ensure_maturin
vpy="$(make_venv ft "$FT_PYTHON" pytest)"
if [ "${NOGILSAFE_SKIP_BUILD:-0}" != 1 ]; then install_wheel "$vpy"; fi
exec "$vpy" -m nogilsafe.demo "$@"
