# syntax=docker/dockerfile:1
#
# podid: one image for every part (server, agent, agent init, webhook, CLI).
#   docker build -t ghcr.io/podid/podid:0.1.0 .
#
# Build stage: the official Rust image (Debian bookworm, the runtime's glibc).
# Cargo.lock is honoured (--locked); the caches only speed up rebuilds.
FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p podid \
    && install -D -m 0755 target/release/podid /out/podid

# Runtime stage: distroless (glibc, libgcc, CA certificates; no shell, no
# package manager), non-root by default (uid 65532). Only the agent's pods
# run it as root, with a single capability each (deploy/README.md).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/podid /podid
USER 65532:65532
ENTRYPOINT ["/podid"]
