#!/usr/bin/env bash
# The README's test command (and CI's: .ci/run runs exactly this). Stages, each timed:
#   lint        cargo fmt --check, cargo clippy --all-targets -D warnings, ruff check and format
#   gil, ft     for the GIL python3 and a free-threaded CPython (scripts/ensure_ft_python.sh):
#               a venv with the wheel and the pinned test extras, cargo test, pytest
#   gil         mypy --strict on python/nogilsafe, mypy.stubtest on nogilsafe._core
#   ft          the contract tests again under pytest-run-parallel
#   3.10 wheel  scripts/wheels.sh's manylinux wheel for the oldest supported CPython, installed
#               into a clean venv and smoke-tested (a missing runtime dependency fails here)
# A failing stage fails the run; the others still run, and a summary closes the output.
# Extra arguments go to the two main pytest runs. NOGILSAFE_SOAK=1 adds the long soak tests.
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
cd "$ROOT"

# The contract tests (each exercises one object's API), run a second time on the free-threaded
# build with every test in PARALLEL_THREADS threads at once: the free-threading ecosystem's
# pytest-run-parallel. Tests that start threads of their own, or cannot share their objects,
# are marked thread_unsafe with the reason. Files not in the tree yet are reported and left out.
PARALLEL_TESTS=(
  tests/test_dict.py tests/test_list.py tests/test_state.py tests/test_once.py tests/test_atomic.py
  tests/test_atomic_ref.py tests/test_lock.py tests/test_lock_async.py tests/test_rwlock.py
  tests/test_event.py tests/test_semaphore.py tests/test_channel.py
)
PARALLEL_THREADS=4
# The oldest CPython the package supports: its release wheel is smoke-tested in a clean venv.
OLDEST_PYTHON=3.10

start=$(date +%s)
status=0
SUMMARY=()
LOGS="$ROOT/target/test-logs"
mkdir -p "$LOGS"

# stage NAME CMD...: run CMD in this shell, time it, record the outcome. A failed stage fails the
# run; the next stages still run, except after a failed setup stage (setup NAME CMD...).
stage() {
  local name="$1" t rc=0 dt; shift
  t=$(date +%s)
  log "$name"
  "$@" || rc=$?
  dt=$(( $(date +%s) - t ))
  echo "[timing] $name: ${dt}s" >&2
  if [ "$rc" = 0 ]; then
    SUMMARY+=("$(printf '%-40s %5ss  ok%s' "$name" "$dt" "${NOTE:+  ($NOTE)}")")
  else
    SUMMARY+=("$(printf '%-40s %5ss  FAILED (exit %s)' "$name" "$dt" "$rc")")
    status=1
  fi
  NOTE=""
  return "$rc"
}
setup() { stage "$@" || { summary; exit 1; }; }
summary() {
  echo >&2
  echo "[timing] total: $(( $(date +%s) - start ))s" >&2
  echo "== summary" >&2
  printf '  %s\n' "${SUMMARY[@]}" >&2
}
NOTE=""

# --- setup ------------------------------------------------------------------------------------
find_ft_python() { FT_PYTHON="$("$ROOT/scripts/ensure_ft_python.sh")"; }
setup "free-threaded interpreter" find_ft_python
setup "build and lint tools" ensure_tools

# --- lint (once) ------------------------------------------------------------------------------
stage "lint: cargo fmt --check" cargo fmt --all --check || true
ruff_all() { "$TOOLS_VENV/bin/ruff" check . && "$TOOLS_VENV/bin/ruff" format --check .; }
stage "lint: ruff check, ruff format --check" ruff_all || true

# --- per interpreter --------------------------------------------------------------------------
# venv_with_wheel WHICH PYTHON: the venv, the wheel, the test extra, and uvloop where it has a
# wheel (only the free-threaded build may go without, and says why).
venv_with_wheel() {
  local which="$1" py="$2" whl err
  VPY="$(make_venv "$which" "$py")" || return
  CARGO_TARGET_DIR="$ROOT/target/wheel-$which" install_wheel "$VPY" release test || return
  whl="$(ls "$ROOT/dist/$which"/*.whl)" || return
  err="$(mktemp)"
  if ! "$VPY" -m pip install --quiet --disable-pip-version-check --only-binary=:all: \
       "$whl[test-uvloop]" 2>"$err" >&2; then
    if [ "$which" = ft ]; then
      NOTE="uvloop not installed, its tests skip: $(grep -m1 -o 'Could not find a version that satisfies the requirement [^ ;]*' "$err" || tail -1 "$err")"
      echo "$NOTE" >&2
    else
      cat "$err" >&2; rm -f "$err"; return 1
    fi
  fi
  rm -f "$err"
}

cargo_test() {
  local which="$1" libdir
  libdir="$("$VPY" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR") or "")')" || return
  # The test binary embeds the interpreter; a separate target dir per interpreter keeps both cached.
  PYO3_PYTHON="$VPY" CARGO_TARGET_DIR="$ROOT/target/cargo-test-$which" \
    LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
    cargo test --quiet
}

clippy() {
  # Same interpreter and target dir as the GIL cargo test: pyo3's build script is not rerun.
  PYO3_PYTHON="$VPY" CARGO_TARGET_DIR="$ROOT/target/cargo-test-gil" \
    cargo clippy --quiet --all-targets -- -D warnings
}

# last_line LOG: pytest's closing line, for the summary.
last_line() { tail -1 "$1" | tr -d '=' | sed 's/^ *//; s/ *$//'; }

pytest_main() {
  local which="$1" rc=0; shift
  "$VPY" -m pytest -q -p no:cacheprovider "$@" tests 2>&1 | tee "$LOGS/pytest-$which.log" || rc=$?
  NOTE="$(last_line "$LOGS/pytest-$which.log")"
  return "$rc"
}

mypy_strict() {
  "$VPY" -m mypy --strict --cache-dir "$ROOT/target/mypy-$1" python/nogilsafe
}

stubtest() {
  # From outside the checkout, so nogilsafe is the installed package; the allowlist holds only
  # what stubtest cannot see, each entry with its reason.
  (cd "$ROOT/target" && "$VPY" -m mypy.stubtest nogilsafe._core \
     --allowlist "$ROOT/tests/stubtest-allowlist.txt")
}

pytest_parallel() {
  local present=() f rc=0
  for f in "${PARALLEL_TESTS[@]}"; do
    if [ -f "$f" ]; then present+=("$f"); else echo "not in the tree (yet): $f" >&2; fi
  done
  # Tests marked (or detected) thread_unsafe run in one thread; the plugin's report lists them
  # with their reasons.
  PYTEST_RUN_PARALLEL_VERBOSE=1 "$VPY" -m pytest -p no:cacheprovider \
    --parallel-threads="$PARALLEL_THREADS" "${present[@]}" 2>&1 | tee "$LOGS/pytest-parallel.log" \
    || rc=$?
  NOTE="$(last_line "$LOGS/pytest-parallel.log")"
  return "$rc"
}

for which in gil ft; do
  if [ "$which" = gil ]; then py="$GIL_PYTHON"; else py="$FT_PYTHON"; fi
  setup "$which: venv + wheel + test deps" venv_with_wheel "$which" "$py"
  if [ "$which" = gil ]; then stage "lint: cargo clippy -D warnings" clippy || true; fi
  stage "$which: cargo test" cargo_test "$which" || true
  stage "$which: pytest" pytest_main "$which" "$@" || true
  if [ "$which" = ft ]; then
    stage "ft: pytest-run-parallel x$PARALLEL_THREADS" pytest_parallel || true
  fi
  # Once, on the GIL build: the stubs and the Python sources are the same for both builds, and
  # mypy has no compiled wheel for 3.13t (pure-Python mypy takes over two minutes for these two).
  if [ "$which" = gil ]; then
    stage "$which: mypy --strict python/nogilsafe" mypy_strict "$which" || true
    stage "$which: stubtest nogilsafe._core" stubtest || true
  fi
done

# --- the oldest supported CPython's release wheel, as a user installs it -----------------------
stage "$OLDEST_PYTHON wheel: build, install, smoke" \
  bash "$ROOT/scripts/wheels.sh" --python "$OLDEST_PYTHON" --no-sdist --out "$ROOT/dist/ci" || true

summary
exit $status
