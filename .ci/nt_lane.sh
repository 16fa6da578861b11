#!/usr/bin/env bash
# CI lane "nt": rbk.kernels against live neural-tangents (docs/oracle.md).
#
# 1. build or reuse the nt environment (scripts/nt_env.sh; cached in
#    ${RBK_NT_VENV:-$HOME/.cache/rbk/nt-venv}; at most ${RBK_NT_INSTALL_TIMEOUT:-900} s).
#    If it cannot be installed: print "SKIPPED: <reason>" and exit 0.
# 2. in it, with PYTHONPATH=<repo root>:
#    scripts/nt_oracle.py --check                    (table; exit 1 on disagreement)
#    pytest -m nt tests/test_nt_live.py              (fresh inputs, live)
#    pytest tests/test_nt_golden.py [test_kernels.py] (the default-lane kernel tests under jax 0.5.3)
# Exit non-zero if any of step 2 fails.
set -uo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1 TF_CPP_MIN_LOG_LEVEL=3 JAX_PLATFORMS=cpu
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

budget=${RBK_NT_INSTALL_TIMEOUT:-900}
t0=$SECONDS
envlog=$(mktemp)
trap 'rm -f "$envlog"' EXIT
timeout "$budget" bash scripts/nt_env.sh 2>&1 | tee "$envlog"
rc=${PIPESTATUS[0]}
if [ "$rc" -ne 0 ]; then
  if [ "$rc" -eq 124 ]; then
    reason="installing the nt environment took longer than ${budget} s"
  else
    reason=$(grep -E '^nt_env: FAILED: ' "$envlog" | tail -n 1 | sed 's/^nt_env: FAILED: //')
    reason=${reason:-"scripts/nt_env.sh exited with $rc"}
  fi
  echo "SKIPPED: nt lane: $reason"
  exit 0
fi
PY=$(tail -n 1 "$envlog")
[ -x "$PY" ] || { echo "SKIPPED: nt lane: scripts/nt_env.sh did not name a python (got '$PY')"; exit 0; }
echo "nt lane: environment ready in $((SECONDS - t0)) s: $PY"

status=0
step() {  # step NAME COMMAND...
  local name=$1; shift
  echo "--- nt lane: $name"
  local t=$SECONDS
  # tensorflow's C++ logger prints two lines before it reads TF_CPP_MIN_LOG_LEVEL; drop them
  "$@" 2> >(grep -v -E '^(WARNING: All log messages before absl|I0000 .*cudart_stub)' >&2)
  local rc=$?
  echo "--- nt lane: $name: exit $rc in $((SECONDS - t)) s"
  [ $rc -eq 0 ] || status=1
}

step "oracle --check" "$PY" scripts/nt_oracle.py --check
# the nt environment has no pytest-xdist: its runs override addopts (one process)
NO_XDIST=(-o "addopts=-m 'not slow and not nt'")
step "pytest -m nt (live)" "$PY" -m pytest "${NO_XDIST[@]}" -m nt -q -rs --tb=short -p no:cacheprovider tests/test_nt_live.py
golden_tests=(tests/test_nt_golden.py)
[ -f tests/test_kernels.py ] && golden_tests+=(tests/test_kernels.py)
step "pytest ${golden_tests[*]} (jax 0.5.3)" "$PY" -m pytest "${NO_XDIST[@]}" -q -rs --tb=short -p no:cacheprovider "${golden_tests[@]}"

if [ $status -ne 0 ]; then
  echo "nt lane: FAILED (rbk.kernels disagrees with neural-tangents, or a test failed; see above)"
else
  echo "nt lane: OK in $((SECONDS - t0)) s"
fi
exit $status
