# syntax=docker/dockerfile:1.7
#
# One image for every StreamMachine role (scripts/image.sh builds the same image without a Docker
# engine, with buildah, from already built binaries):
#   /usr/local/bin/streammachine            standalone (default), master, slave
#   /usr/local/bin/streammachine-operator   the Kubernetes operator
#
#   docker build -t streammachine:dev --build-arg REVISION=$(git rev-parse HEAD) .
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
    && install -D -s -m 0755 target/release/streammachine /out/streammachine \
    && install -D -s -m 0755 target/release/streammachine-operator /out/streammachine-operator

# The runtime root, assembled like scripts/image.sh does: the binaries, the libraries they link
# (ldd, plus the dynamic loader), the CA bundle (https fallback relays), passwd/group with the
# non-root user; the final image has no shell and no package manager.
FROM debian:${DEBIAN_RELEASE}-slim AS rootfs
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=builder /out/ /rootfs/usr/local/bin/
RUN set -eu; \
    for lib in $(for b in /rootfs/usr/local/bin/*; do ldd "$b"; done | awk '/=> \// { print $3 } /^[[:space:]]*\// { print $1 }' | sort -u); do \
        mkdir -p "/rootfs$(dirname "$lib")"; cp -L "$lib" "/rootfs$lib"; \
    done; \
    install -D -m 0644 /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/ca-certificates.crt; \
    printf 'root:x:0:0:root:/root:/usr/sbin/nologin\nstreammachine:x:10001:10001:StreamMachine:/nonexistent:/usr/sbin/nologin\n' >/rootfs/etc/passwd; \
    printf 'root:x:0:\nstreammachine:x:10001:\n' >/rootfs/etc/group; \
    printf 'passwd: files\ngroup: files\nhosts: files dns\n' >/rootfs/etc/nsswitch.conf; \
    install -d -o 10001 -g 10001 /rootfs/data; \
    install -d -m 1777 /rootfs/tmp

FROM scratch
ARG VERSION=0.1.0
ARG REVISION=unknown
COPY --from=rootfs /rootfs/ /
# The chart's `command: ["streammachine"]` is looked up on the image's PATH.
ENV PATH=/usr/local/bin SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
# Numeric, so Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
WORKDIR /data
# 8000: sources and listeners; 8001: master admin API and rewind transport; 8080: operator probes and metrics.
EXPOSE 8000/tcp 8001/tcp 8080/tcp
LABEL org.opencontainers.image.title="StreamMachine" \
      org.opencontainers.image.description="Live radio streaming with hours of rewind; worker and Kubernetes operator" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.source="https://github.com/streammachine/streammachine" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
# The chart passes the role (`master`, `slave`) as args; with none the binary serves standalone.
ENTRYPOINT ["/usr/local/bin/streammachine"]
