#!/usr/bin/env bash
# Fast edit-test loop for one interpreter: scripts/dev.sh gil|ft [pytest args...]
# Builds an unoptimised wheel into .venvs/<which> (with the pinned test extra) and runs pytest.
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
cd "$ROOT"
which="${1:?usage: scripts/dev.sh gil|ft [pytest args]}"; shift
# uvloop has no wheel for free-threaded CPython (tests/conftest.py requires it elsewhere).
if [ "$which" = ft ]; then py="$("$ROOT/scripts/ensure_ft_python.sh")"; extras=test
else py="$GIL_PYTHON"; extras=test,test-uvloop; fi
ensure_tools
vpy="$(make_venv "$which" "$py")"
CARGO_TARGET_DIR="$ROOT/target/dev-$which" install_wheel "$vpy" "${NOGILSAFE_PROFILE:-dev}" "$extras"
exec "$vpy" -m pytest -q -p no:cacheprovider "${@:-tests}"
