# syntax=docker/dockerfile:1
#
# podid: one image for every part: /podid (server, webhook, CLI, agent) and
# /podid-agent (the agent alone, what the DaemonSet runs: fewer pages per node).
#   docker build -t ghcr.io/podid/podid:0.1.0 .
#
# Build stage: the official Rust image (Debian bookworm, the runtime's glibc).
# Cargo.lock is honoured (--locked); the caches only speed up rebuilds. The
# agent is built on its own: built with the others, it would get their crate
# features too (cargo unifies them per build), and be larger.
FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --profile dist --locked -p podid-agent-cli \
    && cargo build --profile dist --locked -p podid \
    && install -D -m 0755 target/dist/podid /out/podid \
    && install -D -m 0755 target/dist/podid-agent /out/podid-agent

# Runtime stage: distroless (glibc, libgcc, CA certificates; no shell, no
# package manager), non-root by default (uid 65532). Only the agent's pods
# run it as root, with a single capability each (deploy/README.md).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/podid /podid
COPY --from=build /out/podid-agent /podid-agent
USER 65532:65532
ENTRYPOINT ["/podid"]
