#!/usr/bin/env bash
# Print the path of a free-threaded CPython (PEP 703) on stdout; everything else goes to stderr.
#
# Order of preference:
#   1. $NOGILSAFE_FT_PYTHON, if set;
#   2. python3.14t / python3.13t on PATH;
#   3. an earlier build under $NOGILSAFE_FT_PREFIX (default ~/.cache/nogilsafe/python3.13t);
#   4. a fresh build from Debian's python3.13 source package (trixie), installed at that prefix.
# Every candidate is verified with sysconfig Py_GIL_DISABLED == 1 before it is used.
set -euo pipefail

PREFIX="${NOGILSAFE_FT_PREFIX:-$HOME/.cache/nogilsafe/python3.13t}"
WORK="${NOGILSAFE_FT_WORK:-$HOME/.cache/nogilsafe/build}"
LOG="$WORK/build.log"
ROOT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

log() { echo "[ensure_ft_python] $*" >&2; }

is_free_threaded() {
  [ -x "$1" ] || command -v "$1" >/dev/null 2>&1 || return 1
  "$1" -c 'import sys, sysconfig; sys.exit(0 if sysconfig.get_config_var("Py_GIL_DISABLED") == 1 else 1)' 2>/dev/null
}

if [ -n "${NOGILSAFE_FT_PYTHON:-}" ]; then
  if is_free_threaded "$NOGILSAFE_FT_PYTHON"; then
    command -v "$NOGILSAFE_FT_PYTHON"; exit 0
  fi
  log "NOGILSAFE_FT_PYTHON=$NOGILSAFE_FT_PYTHON is not a free-threaded interpreter"; exit 1
fi

for cand in python3.14t python3.13t; do
  if command -v "$cand" >/dev/null 2>&1 && is_free_threaded "$cand"; then
    log "using $(command -v "$cand") from PATH"
    command -v "$cand"; exit 0
  fi
done

# Our own build must be a shared one: `cargo test` links the embedded interpreter into a test
# binary, and a static libpython is not position-independent.
is_our_build() {
  is_free_threaded "$1" &&
    "$1" -c 'import sys, sysconfig; sys.exit(0 if sysconfig.get_config_var("Py_ENABLE_SHARED") == 1 else 1)'
}

if is_our_build "$PREFIX/bin/python3.13t"; then
  log "reusing the build at $PREFIX"
  echo "$PREFIX/bin/python3.13t"; exit 0
fi

log "no free-threaded CPython found; building one from Debian's python3.13 source into $PREFIX"
log "(about 4-6 minutes on 2 cores; log: $LOG)"
mkdir -p "$WORK"
: > "$LOG"

need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    log "this step needs root (apt-get): $*"; exit 1
  fi
}

# The trixie source list is added only for source packages, so no binary package is upgraded.
# Its URIs and keyring are those of the machine's own Debian `deb` entries (whatever mirror the
# machine is configured for); only the suite changes to trixie.
SRC_LIST=/etc/apt/sources.list.d/nogilsafe-trixie-src.sources
if [ ! -f "$SRC_LIST" ]; then
  need_root "add a deb-src entry for trixie"
  entry="$("$ROOT_DIR/scripts/_apt_debian_source.py")" \
    || { log "found no Debian 'deb' entry in the machine's apt sources to derive a deb-src entry from"; exit 1; }
  printf '%s\n' "$entry" > "$SRC_LIST"
  log "added $SRC_LIST:"; sed 's/^/  /' "$SRC_LIST" >&2
fi

build_deps="dpkg-dev build-essential zlib1g-dev libssl-dev libffi-dev libbz2-dev liblzma-dev libsqlite3-dev libreadline-dev uuid-dev libncurses-dev"
missing=""
for p in $build_deps; do
  dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
need_root "apt-get update"
log "apt-get update"
apt-get update >>"$LOG" 2>&1 || { log "apt-get update failed; see $LOG"; tail -20 "$LOG" >&2; exit 1; }
if [ -n "$missing" ]; then
  log "installing build dependencies:$missing"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing >>"$LOG" 2>&1 \
    || { log "installing build dependencies failed; see $LOG"; tail -20 "$LOG" >&2; exit 1; }
fi

cd "$WORK"
rm -rf src && mkdir src && cd src
log "apt-get source --download-only python3.13"
apt-get source --download-only python3.13 >>"$LOG" 2>&1 \
  || { log "apt-get source failed (is the trixie deb-src line reachable?); see $LOG"; tail -20 "$LOG" >&2; exit 1; }
# Only the upstream tarball is needed: Debian's patches target its own multiarch layout.
tarball=$(ls python3.13_*.orig.tar.* 2>/dev/null | head -1)
[ -n "$tarball" ] || { log "no upstream tarball in the source package"; ls >&2; exit 1; }
tar xf "$tarball"
srcdir=$(find . -maxdepth 1 -type d -name 'Python-3.13*' | head -1)
[ -n "$srcdir" ] || { log "unexpected tarball layout"; ls >&2; exit 1; }
cd "$srcdir"

log "configure --disable-gil --enable-shared --prefix=$PREFIX"
rm -rf "$PREFIX"
./configure --disable-gil --enable-shared --prefix="$PREFIX" --with-ensurepip=install \
  LDFLAGS="-Wl,-rpath,$PREFIX/lib" >>"$LOG" 2>&1 \
  || { log "configure failed; see $LOG"; tail -30 "$LOG" >&2; exit 1; }
log "make -j$(nproc)"
make -j"$(nproc)" >>"$LOG" 2>&1 || { log "make failed; see $LOG"; tail -30 "$LOG" >&2; exit 1; }
log "make install"
make install >>"$LOG" 2>&1 || { log "make install failed; see $LOG"; tail -30 "$LOG" >&2; exit 1; }
cd "$WORK" && rm -rf src

if ! is_our_build "$PREFIX/bin/python3.13t"; then
  log "the build finished but $PREFIX/bin/python3.13t is not free-threaded"; exit 1
fi
log "built $PREFIX/bin/python3.13t"
echo "$PREFIX/bin/python3.13t"
