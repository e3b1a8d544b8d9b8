#!/usr/bin/env bash
# The real programs the worker's tests drive: ffmpeg/ffprobe (Icecast encoder and decoder),
# redis-server and nats-server (config store and chunk bus), promtool (checks our /metrics and
# alert rules; Debian's prometheus package, whose server is never started). Installed from Debian
# when missing; the tests start their own instances on free loopback ports, never the
# distribution's services.
set -euo pipefail

missing=()
command -v ffmpeg >/dev/null || missing+=(ffmpeg)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v nats-server >/dev/null || missing+=(nats-server)
command -v promtool >/dev/null || missing+=(prometheus)
if [ ${#missing[@]} -gt 0 ]; then
  echo "install/base: installing ${missing[*]} with apt-get" >&2
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi
