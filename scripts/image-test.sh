#!/usr/bin/env bash
# The container image test, offline and with the classic builder (DOCKER_BUILDKIT=0, as Debian's
# docker.io and docker-compose 1.x build), nothing pulled:
#
#   1. runs the README's offline recipe verbatim (the lines between its `offline-image` markers):
#      the static release build (the suite's one release build of berth), dist/, the `prebuilt`
#      target;
#   2. checks the image's user and its size (at most BERTH_IMAGE_MAX_MB, 20 MB: the binary is
#      stripped; with debug information the image was 72 MB);
#   3. runs it on loopback, waits for its own HEALTHCHECK to report healthy, and runs a full MCP
#      session through it with the official Python SDK;
#   4. walks the default build (`docker build .`, the online path) from the files of a fresh
#      clone (an empty dist/) and checks that the classic builder gets through every stage up to
#      the Rust image, which is where it stops here: that image cannot be pulled;
#   5. builds the node and python variants (`prebuilt-node`, `prebuilt-python`) on the offline
#      bases of scripts/build-test-images.sh and, in each, serves the stdio MCP servers of
#      tests/image/ as process backends (node and npx; python3 and uv), each answering tools/list
#      and tools/call through berth;
#   6. hands the image to scripts/compose-test.sh (deploy/coolify/docker-compose.yml with
#      docker-compose 1.29).
#
# Then it removes its containers and images. Needs a Docker engine and tools/.venv (scripts/test
# creates it). Exits non-zero on failure.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

export DOCKER_BUILDKIT=0
max_mb=${BERTH_IMAGE_MAX_MB:-20}
run=image-test-$$
tag=berth-image-test:$$
node_tag=berth-image-test:$$-node
python_tag=berth-image-test:$$-python
containers=()
context=$(mktemp -d)
cleanup() {
    local container
    for container in "${containers[@]}"; do
        docker rm -f "$container" >/dev/null 2>&1 || true
    done
    docker rmi -f "$tag" "$node_tag" "$python_tag" >/dev/null 2>&1 || true
    rm -rf "$context"
}
trap cleanup EXIT
step() { echo "==> image test: $*"; }
fail() { echo "image test: $*" >&2; exit 1; }

step "1. the README's offline recipe, verbatim"
recipe=$(sed -n '/<!-- offline-image:begin -->/,/<!-- offline-image:end -->/p' README.md | sed -e '1,2d' -e '$d' | sed '$d')
[[ $recipe == *"docker build"* ]] || fail "no offline recipe between the README's offline-image markers"
printf '%s\n' "$recipe" | sed 's/^/    $ /'
# The engine is shared with other builds: the README's tag `berth` becomes this run's tag. That
# is the only change; everything else runs as written.
docker() {
    if [[ $1 == build ]]; then
        local args=() arg
        for arg in "$@"; do
            [[ $arg == berth ]] && arg=$tag
            args+=("$arg")
        done
        command docker "${args[@]}"
    else
        command docker "$@"
    fi
}
started=$SECONDS
(eval "$recipe") >"$context/recipe.log" 2>&1 || { cat "$context/recipe.log" >&2; fail "the README's offline recipe failed"; }
unset -f docker
echo "    recipe done in $((SECONDS - started)) s"

step "2. user and size"
user=$(docker image inspect -f '{{.Config.User}}' "$tag")
[[ $user == 65532:65532 ]] || fail "the image runs as '$user', not 65532:65532"
size=$(docker image inspect -f '{{.Size}}' "$tag")
echo "    $tag: $((size / 1000)) kB (bound: $max_mb MB)"
((size <= max_mb * 1000 * 1000)) || fail "the image is $size bytes, more than $max_mb MB: is the binary stripped?"

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
password=image-test-$$-$RANDOM
auth=$(printf '%s' "alice:$password" | base64 -w0)

# Runs image $1 as container $2 on loopback port $3 (host network), with the remaining arguments
# given to docker run, and waits for the image's own health check (interval shortened) to say
# healthy.
run_healthy() {
    local image=$1 name=$2 port=$3
    shift 3
    containers+=("$name")
    docker run -d --name "$name" --network host --health-interval 1s \
        -e BERTH_LISTEN="127.0.0.1:$port" -e BERTH_AUTH_USERNAME=alice -e BERTH_AUTH_PASSWORD="$password" \
        "$@" "$image" >/dev/null
    local status=starting
    for _ in $(seq 1 120); do
        status=$(docker inspect -f '{{.State.Health.Status}}' "$name")
        [[ $status == starting ]] || break
        sleep 0.5
    done
    if [[ $status != healthy ]]; then
        docker inspect -f '{{json .State.Health}}' "$name" >&2
        docker logs "$name" >&2
        fail "$name: health status is '$status'"
    fi
}

# An MCP session with the official Python SDK on backend $3 of container $1 at port $2: lists
# the tools, which must include $4, calls it, and prints its text.
mcp_session() {
    local name=$1 port=$2 backend=$3 tool=$4 report
    report=$(tools/.venv/bin/python tools/mcp_client.py "http://127.0.0.1:$port/$backend/mcp" \
        "{\"Authorization\": \"Basic $auth\"}" "$tool") || { docker logs "$name" >&2; fail "$name: no MCP session on /$backend/mcp"; }
    python3 -c '
import json, sys
report, tool = json.loads(sys.argv[1]), sys.argv[2]
assert tool in report["tools"], report
assert not report["is_error"] and report["result"], report
print(" ".join(report["result"]))
' "$report" "$tool"
}

step "3. healthy, and an MCP session through the container"
port=$(free_port)
run_healthy "$tag" "$run" "$port"
text=$(mcp_session "$run" "$port" conformance test_simple_text)
echo "    /conformance/mcp: $text"

step "4. the default build (online path) from a fresh clone, as far as it goes offline"
git ls-files --cached --others --exclude-standard -z | xargs -0 cp --parents -t "$context" 2>/dev/null || true
[[ -f $context/Dockerfile && -d $context/dist && ! -e $context/dist/berth ]] || fail "the fresh-clone context is incomplete"
rust_image=rust:$(sed -n 's/^ARG RUST_VERSION=//p' Dockerfile)-bookworm
if command docker image inspect "$rust_image" >/dev/null 2>&1; then
    echo "    $rust_image is present on this engine: the online build was not walked (it would compile)"
else
    walk=0
    command docker build --build-arg NODE_IMAGE=berth-test/node-base:dev \
        --build-arg PYTHON_IMAGE=berth-test/python-base:dev --build-arg UV_IMAGE=berth-test/uv:dev \
        "$context" >"$context/walk.log" 2>&1 || walk=$?
    # The classic builder stops at the first step that fails: reaching the Rust image's FROM means
    # every stage before it (the prebuilt targets without a binary included) built.
    if ((walk == 0)) || ! grep -q "^Step [0-9]*/[0-9]* : FROM rust:" "$context/walk.log"; then
        cat "$context/walk.log" >&2
        fail "the classic builder did not reach the Rust image"
    fi
    reached=$(grep "^Step [0-9]*/[0-9]* : FROM rust:" "$context/walk.log")
    echo "    every stage before it built; stopped at '$reached': $(tail -n1 "$context/walk.log" | cut -c1-120)"
fi

step "5. the node and python variants, with process backends"
scripts/build-test-images.sh node-base python-base uv
bases=(--build-arg NODE_IMAGE=berth-test/node-base:dev --build-arg PYTHON_IMAGE=berth-test/python-base:dev
    --build-arg UV_IMAGE=berth-test/uv:dev)
# npx runs the node server from a package tarball, as `npx -y <package>` runs one from the
# registry (a folder would be linked, and npm cannot chmod a read-only mount).
mkdir -p "$context/package"
tar -C tests/image -czf "$context/package/node-server.tgz" --transform 's,^node-server,package,' node-server
for variant in node python; do
    command docker build --quiet --target "prebuilt-$variant" "${bases[@]}" -t "berth-image-test:$$-$variant" . \
        >"$context/build-$variant.log" 2>&1 || { cat "$context/build-$variant.log" >&2; fail "--target prebuilt-$variant did not build"; }
done
for variant in node python; do
    image=berth-image-test:$$-$variant
    size=$(docker image inspect -f '{{.Size}}' "$image")
    port=$(free_port)
    run_healthy "$image" "$run-$variant" "$port" -v "$root/tests/image:/srv/image-test:ro" \
        -v "$context/package:/srv/image-test-package:ro" -e BERTH_CONFIG="/srv/image-test/$variant.toml"
    case $variant in
        node) backends=(node npx) ;;
        python) backends=(python uv) ;;
    esac
    for backend in "${backends[@]}"; do
        text=$(mcp_session "$run-$variant" "$port" "$backend" runtime)
        echo "    $variant image ($((size / 1000000)) MB), /$backend/mcp: $text"
    done
done

step "6. docker-compose"
scripts/compose-test.sh "$tag"
echo "==> image test passed"
