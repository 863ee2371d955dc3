#!/usr/bin/env bash
# Release wheels and an sdist, each proven by installing it into a clean venv.
#
#   bash scripts/wheels.sh [--python 3.10] [--python 3.13t] ... [--no-sdist] [--out DIR]
#
# Without --python: every CPython found among 3.10-3.14 (pyenv's versions, then PATH) and the
# free-threaded 3.13t/3.14t (scripts/ensure_ft_python.sh, which builds 3.13t on first use, and
# PATH). 3.10, 3.11, 3.12, 3.13 and 3.13t are required: a missing one fails the run; 3.14 and
# 3.14t are built when present. Wheels are linked by maturin's zig linker against glibc 2.17, so
# they carry the manylinux2014 tag (manylinux_2_28 if that ever stops linking); `auditwheel show`
# confirms the tag and that nothing outside the manylinux policy is linked.
#
# Each wheel is installed into a fresh venv of its interpreter by pip with --only-binary=:all:
# and without cargo or maturin on PATH, then scripts/smoke.py runs there. The sdist is built and
# installed by pip alone (build isolation fetches maturin; cargo must be on PATH) and smoke-tested
# the same way. Prints a table, also written to DIR/wheels.md; exits non-zero on any failure.
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
cd "$ROOT"

OUT="$ROOT/dist"
SDIST=1
WANTED=()
while [ "$#" -gt 0 ]; do
  case "$1" in
    --python) WANTED+=("$2"); shift 2 ;;
    --no-sdist) SDIST=0; shift ;;
    --out) OUT="$(mkdir -p "$2" && cd "$2" && pwd)"; shift 2 ;;
    *) echo "usage: scripts/wheels.sh [--python X.Y[t]]... [--no-sdist] [--out DIR]" >&2; exit 2 ;;
  esac
done
REQUIRED=(3.10 3.11 3.12 3.13 3.13t)
OPTIONAL=(3.14 3.14t)
if [ "${#WANTED[@]}" -eq 0 ]; then
  LABELS=("${REQUIRED[@]}" "${OPTIONAL[@]}")
else
  LABELS=("${WANTED[@]}")
  REQUIRED=("${WANTED[@]}")
fi

ensure_tools
mkdir -p "$OUT"
rm -f "$OUT"/nogilsafe-*.whl "$OUT"/nogilsafe-*.tar.gz "$OUT/wheels.md"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/nogilsafe-wheels.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
# Release builds for every interpreter share one target dir, apart from the test builds': the
# zig linker changes the C compiler mimalloc is built with.
export CARGO_TARGET_DIR="$ROOT/target/wheels"

# label_of PYTHON -> "3.13t" etc., or nothing if it does not run.
label_of() {
  "$1" -c 'import sys, sysconfig; print("%d.%d%s" % (*sys.version_info[:2], "t" if sysconfig.get_config_var("Py_GIL_DISABLED") == 1 else ""))' 2>/dev/null || true
}

# find_python LABEL -> the interpreter's path, or nothing.
find_python() {
  local label="$1" ver="${1%t}" cand cands=()
  if [ "$label" != "$ver" ]; then
    cands+=("python$label")
    # ensure_ft_python.sh prefers 3.14t on PATH; ask it only for what it can give.
    if [ "$label" = 3.13t ] || [ "$label" = 3.14t ]; then
      cands+=("$("$ROOT/scripts/ensure_ft_python.sh" || true)")
    fi
  else
    if command -v pyenv >/dev/null 2>&1; then
      # Newest patch release first.
      while IFS= read -r d; do cands+=("$d/bin/python$ver"); done \
        < <(ls -d "$(pyenv root)/versions/$ver".* 2>/dev/null | sort -V -r)
    fi
    cands+=("python$ver")
  fi
  for cand in "${cands[@]}"; do
    [ -n "$cand" ] || continue
    if [ "$(label_of "$cand")" = "$label" ]; then
      "$cand" -c 'import sys; print(sys.executable)'
      return 0
    fi
  done
  return 0  # none: prints nothing
}

is_required() { local r; for r in "${REQUIRED[@]}"; do [ "$r" = "$1" ] && return 0; done; return 1; }

ROWS=()      # "file|tag|size|install|smoke"
FAILED=0
row() { ROWS+=("$1|$2|$3|$4|$5"); }
human_size() { numfmt --to=iec --suffix=B "$(stat -c %s "$1")"; }

# smoke_install PYTHON NAME ARTIFACT PIP_ARGS... -> 0 if installed and smoke-tested; sets
# INSTALL_OK / SMOKE_OK.
smoke_install() {
  local py="$1" name="$2" artifact="$3"; shift 3
  local venv="$WORK/venv-$name" logf="$WORK/$name.log"
  INSTALL_OK=no; SMOKE_OK=no
  "$py" -m venv "$venv" >"$logf" 2>&1
  log "installing $(basename "$artifact") into a clean venv"
  if "$venv/bin/python" -m pip install --disable-pip-version-check --no-cache-dir "$@" "$artifact" >>"$logf" 2>&1 \
     && "$venv/bin/python" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("maturin") is not None)'; then
    INSTALL_OK=yes
  else
    echo "install of $(basename "$artifact") failed:" >&2; tail -30 "$logf" >&2
    return 1
  fi
  # From an empty directory: the import must find the installed package, not the checkout.
  mkdir -p "$WORK/cwd-$name"
  if (cd "$WORK/cwd-$name" && "$venv/bin/python" "$ROOT/scripts/smoke.py") >>"$logf" 2>&1; then
    SMOKE_OK=yes
    grep -E '^(smoke|  nogilsafe)' "$logf" >&2
  else
    echo "smoke check of $(basename "$artifact") failed:" >&2; sed -n '/^smoke:/,$p' "$logf" >&2
    return 1
  fi
}

for label in "${LABELS[@]}"; do
  py="$(find_python "$label")"
  if [ -z "$py" ]; then
    if is_required "$label"; then
      echo "no CPython $label found (pyenv versions, PATH, ensure_ft_python.sh)" >&2
      row "CPython $label" "-" "-" "no interpreter" "-"; FAILED=1
    else
      log "CPython $label: not on this machine, no wheel"
    fi
    continue
  fi
  log "wheel for CPython $label ($py)"
  built=""
  for compat in manylinux2014 manylinux_2_28; do
    rm -rf "$WORK/build-$label"
    if maturin build --release --strip --zig --compatibility "$compat" -i "$py" \
         -o "$WORK/build-$label" >"$WORK/build-$label.log" 2>&1; then
      built="$(ls "$WORK/build-$label"/*.whl)"
      break
    fi
    echo "maturin build --compatibility $compat for $label failed:" >&2
    tail -20 "$WORK/build-$label.log" >&2
  done
  if [ -z "$built" ]; then
    row "CPython $label" "-" "-" "build failed" "-"; FAILED=1; continue
  fi
  mv "$built" "$OUT/"
  whl="$OUT/$(basename "$built")"

  # auditwheel: the tag the wheel's symbols allow must be the one it carries (or older), and no
  # shared library outside the policy may be needed.
  tag="?"
  if audit="$("$TOOLS_VENV/bin/auditwheel" show "$whl" 2>&1)"; then
    tag="$(printf '%s\n' "$audit" | tr '\n' ' ' | sed -n 's/.*consistent with the following platform tag: *"\([^"]*\)".*/\1/p')"
  fi
  # The glibc the wheel's name promises (manylinux2014_x86_64.manylinux_2_17_x86_64: 2.17) must
  # be no older than what auditwheel found its symbols need.
  claimed="$(basename "$whl" .whl | grep -o 'manylinux_[0-9]*_[0-9]*' | head -1 | sed 's/manylinux_//; s/_/./')"
  needed="$(printf '%s' "$tag" | grep -o 'manylinux_[0-9]*_[0-9]*' | sed 's/manylinux_//; s/_/./')"
  if [ -z "$claimed" ] || [ -z "$needed" ] \
     || [ "$(printf '%s\n%s\n' "$needed" "$claimed" | sort -V | tail -1)" != "$claimed" ] \
     || printf '%s' "$audit" | grep -q "external shared libraries"; then
    echo "auditwheel disagrees with $(basename "$whl"):" >&2; printf '%s\n' "$audit" >&2
    tag="MISMATCH ${tag:-?}"; FAILED=1
  fi

  # No cargo, no maturin, no compiler from ~/.cargo or the tools venv: nothing can be built.
  PATH=/usr/local/bin:/usr/bin:/bin smoke_install "$py" "$label" "$whl" --only-binary=:all: || FAILED=1
  row "$(basename "$whl")" "$tag" "$(human_size "$whl")" "$INSTALL_OK" "$SMOKE_OK"
done

if [ "$SDIST" = 1 ]; then
  log "sdist"
  if maturin sdist -o "$WORK/sdist" >"$WORK/sdist.log" 2>&1; then
    sdist="$(ls "$WORK/sdist"/*.tar.gz)"
    mv "$sdist" "$OUT/"
    sdist="$OUT/$(basename "$sdist")"
    # Built from source by pip: its isolated build env fetches maturin, cargo compiles.
    CARGO_TARGET_DIR="$ROOT/target/sdist" smoke_install "$GIL_PYTHON" sdist "$sdist" || FAILED=1
    row "$(basename "$sdist") (built by pip on $(label_of "$GIL_PYTHON"))" "source" "$(human_size "$sdist")" "$INSTALL_OK" "$SMOKE_OK"
  else
    tail -20 "$WORK/sdist.log" >&2
    row "sdist" "-" "-" "maturin sdist failed" "-"; FAILED=1
  fi
fi

{
  echo "| wheel | tag (auditwheel) | size | install ok | smoke ok |"
  echo "| --- | --- | --- | --- | --- |"
  for r in "${ROWS[@]}"; do echo "| ${r//|/ | } |"; done
} > "$OUT/wheels.md"
echo
cat "$OUT/wheels.md"
exit $FAILED
