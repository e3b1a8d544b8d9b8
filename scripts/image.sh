#!/usr/bin/env bash
# Builds the StreamMachine OCI image without a Docker engine: Debian's buildah assembles it from
# scratch out of the built binaries, the shared libraries they link (found with ldd, plus the
# dynamic loader), Debian's CA bundle (https fallback relays), and an /etc/passwd with the
# non-root user 10001. No shell, no package manager: the same image the Dockerfile describes.
#
#   scripts/image.sh [--bin-dir DIR] [--out FILE] [--tag NAME:TAG]
#
#   --bin-dir DIR   where streammachine and streammachine-operator are (default target/release;
#                   the tests pass target/debug)
#   --out FILE      OCI archive to write (default target/streammachine-image.tar)
#   --tag NAME:TAG  the archive's reference name (default streammachine:<version>)
#
# Prints the image's manifest digest (sha256:...) on stdout, everything else on stderr.
# Reproducible: file times and the image's created time come from SOURCE_DATE_EPOCH (default 0),
# so the same binaries and libraries give the same digest.
set -euo pipefail

root_dir=$(cd "$(dirname "$0")/.." && pwd)
bin_dir="$root_dir/target/release"
out="$root_dir/target/streammachine-image.tar"
tag=""
while [ $# -gt 0 ]; do
  case "$1" in
    --bin-dir) bin_dir=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --tag) tag=$2; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 0 ;;
    *) echo "image.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

for tool in buildah skopeo ldd; do
  command -v "$tool" >/dev/null || { echo "image.sh: $tool missing (scripts/install/image.sh)" >&2; exit 1; }
done
bins=(streammachine streammachine-operator)
for b in "${bins[@]}"; do
  [ -x "$bin_dir/$b" ] || { echo "image.sh: $bin_dir/$b missing (cargo build --release --workspace --bins)" >&2; exit 1; }
done

version=$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$root_dir/Cargo.toml" | head -n1)
revision=$(git -C "$root_dir" rev-parse HEAD 2>/dev/null || echo unknown)
[ -n "$tag" ] || tag="streammachine:$version"
epoch=${SOURCE_DATE_EPOCH:-0}
uid=10001

work=$(mktemp -d)
ctr=""
cleanup() {
  [ -z "$ctr" ] || buildah --storage-driver vfs rm "$ctr" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
rootfs="$work/rootfs"
mkdir -p "$rootfs/usr/local/bin" "$rootfs/etc/ssl/certs" "$rootfs/data" "$rootfs/tmp"
chmod 1777 "$rootfs/tmp"

for b in "${bins[@]}"; do
  # Stripped: the release profile keeps line tables for profiling, the image does not need them.
  install -s -m 0755 "$bin_dir/$b" "$rootfs/usr/local/bin/$b"
done
# Every library the binaries link, at the path the loader looks it up (ldd prints resolved
# paths; the loader itself appears as an absolute path without `=>`).
libs=$(for b in "${bins[@]}"; do ldd "$bin_dir/$b"; done \
  | awk '/=> \// { print $3 } /^[[:space:]]*\// { print $1 }' | sort -u)
for lib in $libs; do
  mkdir -p "$rootfs$(dirname "$lib")"
  cp -L "$lib" "$rootfs$lib"
done
cp -L /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/usr/sbin/nologin\nstreammachine:x:%s:%s:StreamMachine:/nonexistent:/usr/sbin/nologin\n' "$uid" "$uid" >"$rootfs/etc/passwd"
printf 'root:x:0:\nstreammachine:x:%s:\n' "$uid" >"$rootfs/etc/group"
# glibc's resolver reads these; without nsswitch.conf it still falls back to files then dns.
printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$rootfs/etc/nsswitch.conf"
chown "$uid:$uid" "$rootfs/data"
find "$rootfs" -exec touch -h -d "@$epoch" {} +

started=$(date +%s)
B=(buildah --storage-driver vfs)
ctr=$("${B[@]}" from --quiet scratch)
# Copied as an archive so owners (the /data directory) and modes survive as assembled.
tar -C "$rootfs" --sort=name --numeric-owner --mtime="@$epoch" -cf "$work/rootfs.tar" .
"${B[@]}" add --quiet "$ctr" "$work/rootfs.tar" / >/dev/null
"${B[@]}" config \
  --user "$uid:$uid" \
  --workingdir /data \
  --entrypoint '["/usr/local/bin/streammachine"]' \
  --cmd '[]' \
  --env PATH=/usr/local/bin \
  --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
  --port 8000/tcp --port 8001/tcp --port 8080/tcp \
  --label org.opencontainers.image.title=StreamMachine \
  --label "org.opencontainers.image.description=Live radio streaming with hours of rewind; worker and Kubernetes operator" \
  --label org.opencontainers.image.licenses=MIT \
  --label org.opencontainers.image.source=https://github.com/streammachine/streammachine \
  --label "org.opencontainers.image.version=$version" \
  --label "org.opencontainers.image.revision=$revision" \
  "$ctr"
mkdir -p "$(dirname "$out")"
rm -f "$out"
"${B[@]}" commit --quiet --timestamp "$epoch" --format oci --rm "$ctr" "oci-archive:$out:$tag" >/dev/null
ctr=""
"${B[@]}" rmi --quiet "$tag" >/dev/null 2>&1 || true

digest=$(skopeo inspect --format '{{.Digest}}' "oci-archive:$out")
echo "image.sh: $out ($tag) in $(( $(date +%s) - started ))s, $(du -h "$out" | cut -f1) archive, $(du -sh "$rootfs" | cut -f1) unpacked" >&2
echo "$digest"
