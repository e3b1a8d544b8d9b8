# syntax=docker/dockerfile:1.7
#
# One image for every StreamMachine role:
#   /usr/local/bin/streammachine            standalone (default), master, slave
#   /usr/local/bin/streammachine-operator   the Kubernetes operator
#
#   docker build -t streammachine:dev .
#   docker run --rm -p 8000:8000 streammachine:dev          # standalone server

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS builder
WORKDIR /src
COPY . .
# Cache mounts keep the registry and the target directory between builds; the binaries are
# copied out of the cached target directory because it is not part of the image layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p streammachine -p streammachine-operator \
    && install -D -m 0755 target/release/streammachine /out/streammachine \
    && install -D -m 0755 target/release/streammachine-operator /out/streammachine-operator

FROM debian:${DEBIAN_RELEASE}-slim
# ca-certificates: https fallback relays. coreutils' `sleep` (in the base image) is what the
# slave pods' preStop hook runs, which is why this is not a distroless image.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 streammachine \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin streammachine \
    && install -d -o 10001 -g 10001 /data
COPY --from=builder /out/ /usr/local/bin/
# Numeric, so Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
WORKDIR /data
# 8000: sources and listeners; 8001: master admin API and rewind transport; 8080: operator probes and metrics.
EXPOSE 8000 8001 8080
LABEL org.opencontainers.image.title="StreamMachine" \
      org.opencontainers.image.description="Live radio streaming with hours of rewind; worker and Kubernetes operator" \
      org.opencontainers.image.licenses="MIT"
CMD ["streammachine"]
