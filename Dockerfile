# berth's container image: one static binary on an empty base, run as a non-root user.
#
# Stages, in the order the classic builder walks them (it builds every stage up to --target, so
# the stages that need no base image come first):
#   runtime-base  the runtime image without berth: config, non-root user, port, health check
#   prebuilt      runtime-base + a static binary built on the host; pulls no image, so CI and
#                 offline machines can build it:
#                   RUSTFLAGS='-C target-feature=+crt-static' \
#                     cargo build --release --target x86_64-unknown-linux-gnu -p berth
#                   docker build --target prebuilt \
#                     --build-arg BERTH_BINARY=target/x86_64-unknown-linux-gnu/release/berth -t berth .
#   build         compiles that static binary inside the official Rust image
#   runtime       runtime-base + the binary from `build` (the default: `docker build -t berth .`)
ARG RUST_VERSION=1.95

FROM scratch AS runtime-base
COPY deploy/berth.toml /etc/berth/berth.toml
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
ARG BERTH_BINARY=target/x86_64-unknown-linux-gnu/release/berth
COPY ${BERTH_BINARY} /usr/local/bin/berth

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
RUN target="$(uname -m)-unknown-linux-gnu" \
    && RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --locked --target "$target" -p berth \
    && cp "target/$target/release/berth" /berth

FROM runtime-base AS runtime
COPY --from=build /berth /usr/local/bin/berth
