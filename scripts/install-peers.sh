#!/usr/bin/env bash
# Installs the peer gateways berth-bench compares berth with (scenario `peers`), pinned, under
# tools/peers only (never globally): supergateway from tools/peers/package-lock.json, mcp-proxy
# from tools/peers/requirements.txt into tools/peers/venv. Idempotent.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../tools/peers"

echo "==> installing the peer gateways for berth-bench (tools/peers)"
npm ci --no-audit --no-fund --loglevel=error
[[ -x venv/bin/python ]] || python3 -m venv venv
venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
