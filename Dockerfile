# syntax=docker/dockerfile:1
# Build: a pinned Rust toolchain, dependencies cached apart from sources.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY proto-samples ./proto-samples
COPY web ./web
COPY benches ./benches
RUN cargo build --release --locked --bin chatgate \
 && strip target/release/chatgate

# Run: a slim Debian with CA certificates only, as a non-root user.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates=20230311+deb12u1 curl=7.88.1-10+deb12u14 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin chatgate
COPY --from=build /src/target/release/chatgate /usr/local/bin/chatgate
USER 10001:10001
ENV CHATGATE_LISTEN=0.0.0.0:8080
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["curl", "-fsS", "http://127.0.0.1:8080/healthz"]
ENTRYPOINT ["/usr/local/bin/chatgate"]
