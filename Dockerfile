# syntax=docker/dockerfile:1
# Build: the pinned Rust toolchain; the registry and target directory are
# BuildKit caches, so a rebuild after a source change recompiles chatgate
# only. --locked: exactly the dependency versions of Cargo.lock. -p
# chatgate: the product alone, not the workspace's tools/ (the load
# generator and the bare reference server).
FROM rust:1.95-slim-bookworm AS build
# jemalloc (tikv-jemalloc-sys) builds with make, which the slim image lacks.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends make \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p chatgate \
 && strip target/release/chatgate \
 && cp target/release/chatgate /chatgate

# Run: a slim Debian with CA certificates only (for tls:// buses), as a
# non-root user. Nothing is written to disk: run the root file system
# read-only (docker run --read-only, compose read_only: true). The health
# check is the binary itself (chatgate health asks /healthz on the address
# of CHATGATE_LISTEN): no curl, no shell needed.
FROM debian:bookworm-slim
# The base image is pinned by tag; its packages follow Debian's security
# updates rather than a version pin that the archive soon drops.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin chatgate
COPY --from=build /chatgate /usr/local/bin/chatgate
USER 10001:10001
ENV CHATGATE_LISTEN=0.0.0.0:8080
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/chatgate", "health"]
ENTRYPOINT ["/usr/local/bin/chatgate"]
