#!/usr/bin/env bash
# The container image test: builds the static binary on the host, builds the runtime image from
# it offline (Dockerfile target `prebuilt`: no base image is pulled), runs it on loopback, waits
# for its own HEALTHCHECK (`berth healthcheck`) to report healthy, runs a full MCP session
# through it with the official Python SDK, then removes the container and the image.
#
# Needs a Docker engine and tools/.venv (scripts/test creates it). Exits non-zero on failure.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

triple=x86_64-unknown-linux-gnu
echo "==> image test: static berth binary ($triple, crt-static)"
RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --target "$triple" -p berth
binary=${CARGO_TARGET_DIR:-$root/target}/$triple/release/berth

context=$(mktemp -d)
tag=berth-image-test:$$
name=berth-image-test-$$
cleanup() {
    docker rm -f "$name" >/dev/null 2>&1 || true
    docker rmi -f "$tag" >/dev/null 2>&1 || true
    rm -rf "$context"
}
trap cleanup EXIT

# A small build context: the Dockerfile, the image's configuration and the binary.
mkdir -p "$context/deploy"
cp Dockerfile "$context/"
cp deploy/berth.toml "$context/deploy/"
cp "$binary" "$context/berth"
echo "==> image test: docker build --target prebuilt"
docker build --quiet --target prebuilt --build-arg BERTH_BINARY=berth -t "$tag" "$context" >/dev/null

user=$(docker image inspect -f '{{.Config.User}}' "$tag")
[[ $user == 65532:65532 ]] || { echo "image test: the image runs as '$user', not 65532:65532" >&2; exit 1; }

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
password=image-test-$$-$RANDOM
# Host networking, listening on loopback only. The health check is the image's own command;
# only its interval is shortened here.
docker run -d --name "$name" --network host --health-interval 1s \
    -e BERTH_LISTEN="127.0.0.1:$port" -e BERTH_AUTH_USERNAME=alice -e BERTH_AUTH_PASSWORD="$password" \
    "$tag" >/dev/null

echo "==> image test: waiting for the container's health check"
status=starting
for _ in $(seq 1 120); do
    status=$(docker inspect -f '{{.State.Health.Status}}' "$name")
    [[ $status == starting ]] || break
    sleep 0.5
done
if [[ $status != healthy ]]; then
    echo "image test: health status is '$status'" >&2
    docker inspect -f '{{json .State.Health}}' "$name" >&2
    docker logs "$name" >&2
    exit 1
fi

echo "==> image test: an MCP session through the container (Python SDK)"
auth=$(printf '%s' "alice:$password" | base64 -w0)
report=$(tools/.venv/bin/python tools/mcp_client.py "http://127.0.0.1:$port/conformance/mcp" \
    "{\"Authorization\": \"Basic $auth\"}" test_simple_text) || {
    docker logs "$name" >&2
    exit 1
}
echo "$report" | python3 -c '
import json, sys
report = json.load(sys.stdin)
assert "test_simple_text" in report["tools"], report
assert not report["is_error"] and report["result"], report
'
echo "==> image test passed: healthy, MCP session ok ($report)"
