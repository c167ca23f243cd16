# berth's container images: one static binary, run as a non-root user (65532).
#
# Targets (`docker build --target NAME`; without --target, the last one, `runtime`):
#
#   runtime          FROM scratch + berth compiled in the official Rust image      berth:<version>
#   node             Node 22 (node, npm, npx) + berth, for `npx` process backends    berth:<version>-node
#   python           Python 3 + uv (uv, uvx) + berth, for `uvx` process backends     berth:<version>-python
#   prebuilt, prebuilt-node, prebuilt-python
#                    the same three around a static binary built on the host and put in dist/:
#                    no Rust image is pulled, so offline machines and CI can build them:
#                      RUSTFLAGS='-C target-feature=+crt-static' \
#                        cargo build --release --locked --target x86_64-unknown-linux-gnu -p berth
#                      cp target/x86_64-unknown-linux-gnu/release/berth dist/
#                      docker build --target prebuilt -t berth .
#
# Base images are build arguments (RUST_VERSION, NODE_IMAGE, PYTHON_IMAGE, UV_IMAGE), so that an
# offline machine can name images it has (scripts/build-test-images.sh assembles such bases).
#
# The order of the stages is for the classic builder (DOCKER_BUILDKIT=0, docker-compose 1.x),
# which builds every stage before its target, in file order, where BuildKit builds only those
# the target needs:
#   - the prebuilt targets come before the Rust stage, so that building them pulls no Rust image;
#   - they copy the directory dist/, which is always there (git keeps dist/.gitignore, the build
#     context leaves it out) and empty until a binary is put in it, so that they also build
#     without one: the classic builder walks through them on its way to `runtime`. A prebuilt
#     image built without a binary in dist/ has no berth (its container exits at once);
#   - with the classic builder, `docker build -t berth .` therefore also pulls NODE_IMAGE,
#     PYTHON_IMAGE and UV_IMAGE, and `--target prebuilt-python` needs NODE_IMAGE too (any
#     image does, `scratch` included: the stage only copies files).
ARG RUST_VERSION=1.95
ARG NODE_IMAGE=node:22-bookworm-slim
ARG PYTHON_IMAGE=python:3.13-slim-bookworm
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.9
# The configuration baked into the images, relative to the build context (deploy/coolify builds
# with its own).
ARG BERTH_CONFIG_FILE=deploy/berth.toml

# runtime-base: the scratch image without berth: configuration, non-root user, port, health check.
FROM scratch AS runtime-base
ARG BERTH_CONFIG_FILE
COPY ${BERTH_CONFIG_FILE} /etc/berth/berth.toml
ENV BERTH_CONFIG=/etc/berth/berth.toml
# No /etc/passwd on scratch: a numeric user. To reach a mounted /var/run/docker.sock, add the
# socket's group at run time (`--group-add $(stat -c %g /var/run/docker.sock)`).
USER 65532:65532
EXPOSE 8080
# The image has no shell and no curl: berth checks itself (GET / on its configured port).
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/berth", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/berth"]
CMD ["serve"]

FROM runtime-base AS prebuilt
COPY dist/ /usr/local/bin/

# node-base: Node's image without berth. HOME=/tmp: the user 65532 has no home directory, and
# npx keeps its cache under $HOME (berth passes HOME on to process backends).
FROM ${NODE_IMAGE} AS node-base
ARG BERTH_CONFIG_FILE
COPY ${BERTH_CONFIG_FILE} /etc/berth/berth.toml
ENV BERTH_CONFIG=/etc/berth/berth.toml HOME=/tmp
USER 65532:65532
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/berth", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/berth"]
CMD ["serve"]

FROM node-base AS prebuilt-node
COPY dist/ /usr/local/bin/

# uv's own image holds the static uv and uvx binaries at /.
FROM ${UV_IMAGE} AS uv

# python-base: Python's image with uv, without berth. uvx keeps its cache and tools under $HOME.
FROM ${PYTHON_IMAGE} AS python-base
COPY --from=uv /uv /uvx /usr/local/bin/
ARG BERTH_CONFIG_FILE
COPY ${BERTH_CONFIG_FILE} /etc/berth/berth.toml
ENV BERTH_CONFIG=/etc/berth/berth.toml HOME=/tmp
USER 65532:65532
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/berth", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/berth"]
CMD ["serve"]

FROM python-base AS prebuilt-python
COPY dist/ /usr/local/bin/

# build: the static binary, compiled in the official Rust image (stripped: see the release
# profile in Cargo.toml).
FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
RUN target="$(uname -m)-unknown-linux-gnu" \
    && RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --locked --target "$target" -p berth \
    && cp "target/$target/release/berth" /berth

FROM node-base AS node
COPY --from=build /berth /usr/local/bin/berth

FROM python-base AS python
COPY --from=build /berth /usr/local/bin/berth

FROM runtime-base AS runtime
COPY --from=build /berth /usr/local/bin/berth
