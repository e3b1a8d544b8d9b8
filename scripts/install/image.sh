#!/usr/bin/env bash
# The tools scripts/image.sh and tests/tests/image.rs use to build and unpack the container image
# without a Docker engine: buildah (assembles the OCI image), skopeo (digest, copies) and umoci
# (unpacks the archive into a root filesystem). Installed from Debian when missing.
set -euo pipefail

missing=()
command -v buildah >/dev/null || missing+=(buildah)
command -v skopeo >/dev/null || missing+=(skopeo)
command -v umoci >/dev/null || missing+=(umoci)
if [ ${#missing[@]} -gt 0 ]; then
  echo "install/image: installing ${missing[*]} with apt-get" >&2
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi
