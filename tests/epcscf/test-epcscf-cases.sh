#!/usr/bin/env bash
# Runs the eP-CSCF protocol cases (tests/epcscf/cases/*.case, format in cases/README.md)
# against epcscf-ref: run_cases.py starts a fresh epcscf-ref per case on free loopback
# ports with a temp config and JWKS, plays the WICs over WebSocket and the IMS core over
# SIP/UDP, and checks the server stays alive and its flows in sync. One line per case
# (PASS / FAIL with the first mismatch / SKIP); exit status 1 if any case failed.
# usage: test-epcscf-cases.sh BUILD_DIR|EPCSCF_BINARY [SOURCE_DIR] [CASE...]
set -euo pipefail
target=${1:?usage: test-epcscf-cases.sh BUILD_DIR|EPCSCF_BINARY [SOURCE_DIR] [CASE...]}
src=${2:-$(cd "$(dirname "$0")/../.." && pwd)}
shift $(( $# >= 2 ? 2 : 1 ))
if [ -d "$target" ]; then bin=$target/epcscf-ref/epcscf-ref; else bin=$target; fi
[ -x "$bin" ] || { echo "epcscf-ref not built: $bin" >&2; exit 1; }
command -v node >/dev/null || { echo "node not installed" >&2; exit 1; }
[ -d "$src/tests/js/node_modules/jose" ] || { echo "jose missing: run npm ci in $src/tests/js" >&2; exit 1; }
exec python3 "$src/tests/epcscf/run_cases.py" --epcscf "$bin" "$@"
