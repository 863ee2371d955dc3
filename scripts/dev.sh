#!/usr/bin/env bash
# Fast edit-test loop for one interpreter: scripts/dev.sh gil|ft [pytest args...]
# Builds an unoptimised wheel into .venvs/<which> and runs pytest there.
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
cd "$ROOT"
which="${1:?usage: scripts/dev.sh gil|ft [pytest args]}"; shift
if [ "$which" = ft ]; then py="$("$ROOT/scripts/ensure_ft_python.sh")"; extra=(pytest); else py="$GIL_PYTHON"; extra=(pytest hypothesis); fi
ensure_maturin
vpy="$(make_venv "$which" "$py")"
"$vpy" -c 'import pytest' 2>/dev/null || "$vpy" -m pip install --quiet "${extra[@]}"
install_wheel "$vpy" "${NOGILSAFE_PROFILE:-dev}"
exec "$vpy" -m pytest -q -p no:cacheprovider "${@:-tests}"
