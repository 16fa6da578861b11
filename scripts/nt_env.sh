#!/usr/bin/env bash
# Build, or reuse, the neural-tangents ("nt") environment of the oracle (docs/oracle.md).
#
#   bash scripts/nt_env.sh            # prints what it did; the last line is the venv's python
#
# The venv lives at ${RBK_NT_VENV:-$HOME/.cache/rbk/nt-venv}, outside the clone, so it is
# the cache between CI runs: if it already has exactly the pinned stack (and pytest), it is
# reused as is. Otherwise the pins are pip-installed into it (creating it with
# ${RBK_NT_BASE_PYTHON:-python3} first if needed). Pins: the `nt` extra of pyproject.toml.
# rbk itself is NOT installed there (its other dependencies would move jax): run rbk code
# with PYTHONPATH=<repo root>; rbk.kernels needs only jax, numpy and scipy.
#
# Exit status: 0 when the environment is ready, 1 with a line "nt_env: FAILED: <reason>"
# otherwise (the CI lane turns that into SKIPPED).
set -uo pipefail

VENV="${RBK_NT_VENV:-$HOME/.cache/rbk/nt-venv}"
BASE_PY="${RBK_NT_BASE_PYTHON:-python3}"
PINS=(jax==0.5.3 jaxlib==0.5.3 neural-tangents==0.6.5 tf2jax==0.3.7 tensorflow==2.21.0)
EXTRAS=("pytest>=8" "hypothesis>=6")   # to run rbk's kernel tests in that environment
export PIP_DISABLE_PIP_VERSION_CHECK=1 TF_CPP_MIN_LOG_LEVEL=3

say() { echo "nt_env: $*"; }
fail() { echo "nt_env: FAILED: $*"; exit 1; }

# Is the venv ready? Exact versions of the pins, importable neural_tangents and pytest.
ready() {
  [ -x "$VENV/bin/python" ] || { say "no python at $VENV/bin/python"; return 1; }
  # stderr (tensorflow's C++ start-up chatter) is shown only if the check fails
  "$VENV/bin/python" - "${PINS[@]}" 2>"$VENV.check.err" <<'EOF'
import sys
from importlib import metadata
bad = []
for pin in sys.argv[1:]:
    name, want = pin.split("==")
    try:
        have = metadata.version(name)
    except metadata.PackageNotFoundError:
        have = None
    if have != want:
        bad.append(f"{name} {have or 'missing'} (want {want})")
for mod in ("pytest", "numpy", "scipy"):
    try:
        __import__(mod)
    except Exception as e:  # noqa: BLE001
        bad.append(f"{mod}: {type(e).__name__}: {e}")
if not bad:
    try:
        import neural_tangents  # noqa: F401  (imports jax and tensorflow too)
    except Exception as e:  # noqa: BLE001
        bad.append(f"import neural_tangents: {type(e).__name__}: {e}")
if bad:
    print("nt_env: not ready: " + "; ".join(bad))
    sys.exit(1)
EOF
  local rc=$?
  if [ $rc -ne 0 ]; then grep -v -E '^(WARNING: All log messages|I0000 )' "$VENV.check.err" | tail -n 10 | sed 's/^/  | /'; fi
  return $rc
}

t0=$SECONDS
mkdir -p "$(dirname "$VENV")" || fail "cannot create $(dirname "$VENV")"

# One builder at a time per venv (concurrent CI runs share the cache).
if command -v flock >/dev/null 2>&1; then
  exec 9>"$VENV.lock"
  flock -w 900 9 || fail "timed out waiting for the lock $VENV.lock"
fi

if ready; then
  say "reusing the cached environment $VENV ($((SECONDS - t0)) s)"
  echo "$VENV/bin/python"
  exit 0
fi

if [ -x "$VENV/bin/python" ] && ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
  say "$VENV has no working pip (an interrupted build?): recreating it"
  recreate=--clear
fi
if [ ! -x "$VENV/bin/python" ] || [ -n "${recreate:-}" ]; then
  command -v "$BASE_PY" >/dev/null 2>&1 || fail "no base python '$BASE_PY' (set RBK_NT_BASE_PYTHON)"
  pyver=$("$BASE_PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])') || fail "'$BASE_PY' does not run"
  case "$pyver" in
    3.10|3.11|3.12|3.13) ;;
    *) fail "python $pyver ('$BASE_PY'): tensorflow==2.21.0 / jaxlib==0.5.3 need python 3.10-3.13 (set RBK_NT_BASE_PYTHON)";;
  esac
  say "creating $VENV with $BASE_PY (python $pyver)"
  "$BASE_PY" -m venv ${recreate:-} "$VENV" || fail "'$BASE_PY -m venv $VENV' failed"
else
  say "completing the existing environment $VENV"
fi

log="$VENV.install.log"
say "pip install ${PINS[*]} ${EXTRAS[*]} (log: $log)"
if ! "$VENV/bin/python" -m pip install --prefer-binary "${PINS[@]}" "${EXTRAS[@]}" >"$log" 2>&1; then
  tail -n 15 "$log" | sed 's/^/  pip| /'
  reason=$(grep -E '^ERROR' "$log" | tail -n 1)
  fail "pip install failed: ${reason:-see $log}"
fi
ready || fail "installed, but the environment does not import (see above)"
say "built $VENV in $((SECONDS - t0)) s"
echo "$VENV/bin/python"
