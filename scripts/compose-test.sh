#!/usr/bin/env bash
# The compose test, with Debian's docker-compose 1.29 (the classic builder, nothing pulled):
#
#   1. `docker-compose config` accepts every compose file of the repository: docker-compose.yml,
#      docker-compose.wildcard.yml and deploy/coolify/docker-compose.yml;
#   2. builds deploy/coolify/docker-compose.yml's berth service as the file says (context, the
#      baked-in deploy/coolify/berth.toml), with BERTH_TARGET=prebuilt so that the binary comes
#      from dist/ instead of the Rust image, which cannot be pulled here;
#   3. brings it up (host network, loopback port: the engine here has no bridge), waits for the
#      compose file's health check to report healthy, and makes MCP calls through it: a session
#      with the official Python SDK on /conformance/mcp, and an initialize on /mcp with the Host
#      header Coolify's Traefik forwards (conformance.mcp.example.com, host routing);
#   4. takes it down and removes its image.
#
# Traefik (the root compose file's, or Coolify's) cannot be pulled here, so no request goes
# through it: the labels are checked by `config` only.
#
# Needs dist/berth (scripts/image-test.sh's first step puts it there), a Docker engine,
# docker-compose and tools/.venv.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

[[ -x dist/berth ]] || { echo "compose test: dist/berth is missing (scripts/image-test.sh builds it)" >&2; exit 1; }
command -v docker-compose >/dev/null || { echo "compose test: docker-compose is not installed" >&2; exit 1; }
echo "==> compose test: $(docker-compose version --short 2>/dev/null || docker-compose version | head -n1)"

project=berth-compose-test-$$
image=berth-compose-test:$$
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
password=compose-test-$$-$RANDOM
work=$(mktemp -d)
coolify=deploy/coolify/docker-compose.yml
export BERTH_AUTH_USERNAME=alice BERTH_AUTH_PASSWORD=$password BERTH_IMAGE=$image BERTH_TARGET=prebuilt
# The root compose files need these; their values do not matter to `config`.
export CF_DNS_API_TOKEN=unused
# The engine here has no bridge network: host networking on a loopback port, and a shorter
# health-check interval. Everything else is the Coolify file's.
cat >"$work/override.yml" <<YAML
services:
  berth:
    network_mode: host
    environment:
      BERTH_LISTEN: "127.0.0.1:$port"
    healthcheck:
      interval: 1s
YAML
compose=(docker-compose --project-name "$project" -f "$coolify" -f "$work/override.yml")
cleanup() {
    "${compose[@]}" down --volumes >/dev/null 2>&1 || true
    docker rmi -f "$image" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

echo "==> compose test: docker-compose config"
for file in docker-compose.yml docker-compose.wildcard.yml "$coolify"; do
    docker-compose -f "$file" config --quiet || { echo "compose test: docker-compose config rejects $file" >&2; exit 1; }
    echo "    $file: ok"
done
# Every backend of the Coolify configuration has its router, on the host its base_domain routes.
python3 - deploy/coolify/berth.toml "$coolify" <<'PYTHON'
import re, sys, tomllib
config = tomllib.load(open(sys.argv[1], "rb"))
compose = open(sys.argv[2]).read()
domain = config["server"]["base_domain"]
for name in config.get("backends", {}):
    rule = f"traefik.http.routers.berth-{name}.rule=Host(`{name}.{domain}`)"
    assert rule in compose, f"{sys.argv[2]} has no router for backend {name}: {rule}"
    for key in ("entrypoints=https", "tls=true", "tls.certresolver=letsencrypt", "service=berth"):
        assert f"traefik.http.routers.berth-{name}.{key}" in compose, f"{sys.argv[2]}: berth-{name}.{key}"
print(f"    {sys.argv[2]}: a router for each backend of {sys.argv[1]} ({', '.join(config['backends'])})")
PYTHON

echo "==> compose test: build and up ($coolify, BERTH_TARGET=prebuilt)"
"${compose[@]}" build --quiet berth >"$work/build.log" 2>&1 || { cat "$work/build.log" >&2; exit 1; }
"${compose[@]}" up -d --no-build berth >"$work/up.log" 2>&1 || { cat "$work/up.log" >&2; exit 1; }
container=$("${compose[@]}" ps -q berth)
status=starting
for _ in $(seq 1 120); do
    status=$(docker inspect -f '{{.State.Health.Status}}' "$container")
    [[ $status == starting ]] || break
    sleep 0.5
done
if [[ $status != healthy ]]; then
    docker inspect -f '{{json .State.Health}}' "$container" >&2
    "${compose[@]}" logs berth >&2
    echo "compose test: health status is '$status'" >&2
    exit 1
fi
config=$(docker exec "$container" /usr/local/bin/berth check 2>&1 || true)
echo "    healthy; berth check in the container: $config"

echo "==> compose test: MCP calls through the service"
auth=$(printf '%s' "alice:$password" | base64 -w0)
report=$(tools/.venv/bin/python tools/mcp_client.py "http://127.0.0.1:$port/conformance/mcp" \
    "{\"Authorization\": \"Basic $auth\"}" test_simple_text) || { "${compose[@]}" logs berth >&2; exit 1; }
python3 -c '
import json, sys
report = json.loads(sys.argv[1])
assert "test_simple_text" in report["tools"] and not report["is_error"] and report["result"], report
' "$report"
echo "    /conformance/mcp (Python SDK): $(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["result"][0])' "$report")"
# What Coolify's Traefik forwards for https://conformance.mcp.example.com/mcp: the client's Host,
# path /mcp. The baked-in berth.toml's base_domain routes it to the conformance backend.
answer=$(curl -s -i --max-time 10 -u "alice:$password" -H 'Host: conformance.mcp.example.com' \
    -H 'Accept: application/json, text/event-stream' -H 'Content-Type: application/json' \
    -d '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"compose-test","version":"1"}}}' \
    "http://127.0.0.1:$port/mcp")
grep -qi '^mcp-session-id:' <<<"$answer" && grep -q '"serverInfo":{"name":"berth-conformance"' <<<"$answer" || {
    echo "$answer" >&2
    echo "compose test: Host conformance.mcp.example.com, /mcp did not reach the conformance backend" >&2
    exit 1
}
echo "    Host conformance.mcp.example.com, /mcp: initialize answered by berth-conformance"
echo "==> compose test passed"
