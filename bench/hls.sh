#!/usr/bin/env bash
# HLS benchmark, in one run on loopback:
#  1. segment and playlist requests per second (wrk) against streammachine holding a four-hour
#     buffer (restored from a synthetic dump) and against nginx (Debian) serving the same
#     segment and the same four-hour playlist as static files;
#  2. what a four-hour playlist request costs the server (goal: under a millisecond), measured
#     in-process by tests/tests/hls_bench.rs.
# Results are kept in bench/RESULTS-hls.md.
#
#   bench/hls.sh                 DURATION=10s CONNECTIONS=64 THREADS=2 bench/hls.sh
#
# Needs wrk and nginx (scripts/install/hls.sh installs them). Every process started here is
# stopped by PID on exit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
TARGET=${CARGO_TARGET_DIR:-target}
for tool in wrk nginx curl; do
  command -v "$tool" >/dev/null || { echo "$tool is missing: run scripts/install/hls.sh" >&2; exit 1; }
done
WORK=$(mktemp -d /tmp/sm-hls-bench.XXXXXX)
chmod 755 "$WORK"   # nginx workers drop root privileges and must still read the files
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

echo "== building (release)"
cargo build --release -q --workspace --bins
echo "== in-process: four-hour playlist request cost"
cargo test --release -q -p streammachine-e2e --test hls_bench -- --ignored --nocapture \
  four_hour_playlist_request 2>&1 | grep -E 'playlist|rebuild|segments'
mkdir -p "$WORK/dump" "$WORK/www/live/seg"
HLS_BENCH_DUMP_DIR=$WORK/dump cargo test --release -q -p streammachine-e2e --test hls_bench -- \
  --ignored --nocapture write_four_hour_dump 2>&1 | grep wrote

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
SM_PORT=$(free_port)
STREAMMACHINE_SOURCE_PASSWORD=bench "$TARGET/release/streammachine" standalone \
  --listen "127.0.0.1:$SM_PORT" --admin-listen "127.0.0.1:$(free_port)" --stream live \
  --dump-dir "$WORK/dump" --log-format json >"$WORK/sm.log" 2>&1 &
PIDS+=($!)
SM=http://127.0.0.1:$SM_PORT
# The whole four-hour buffer: the plain URL lists only the live window (hls_live_window, 1 h).
FULL="live.m3u8?window=14400"
for _ in $(seq 100); do curl -sf "$SM/$FULL" -o "$WORK/www/live.m3u8" && break; sleep 0.2; done
[ -s "$WORK/www/live.m3u8" ] || { echo "streammachine did not serve the playlist" >&2; cat "$WORK/sm.log" >&2; exit 1; }
SEG=$(grep -v '^#' "$WORK/www/live.m3u8" | tail -n 3 | head -n 1)
curl -sf "$SM/$SEG" -o "$WORK/www/$SEG"
echo "playlist: $(grep -c '^#EXTINF' "$WORK/www/live.m3u8") segments, $(wc -c <"$WORK/www/live.m3u8") bytes; segment $SEG: $(wc -c <"$WORK/www/$SEG") bytes"

chmod -R a+rX "$WORK/www"
NGINX_PORT=$(free_port)
cat >"$WORK/nginx.conf" <<CONF
worker_processes 2;
error_log $WORK/nginx-error.log;
pid $WORK/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  types { application/vnd.apple.mpegurl m3u8; audio/mpeg mp3; }
  client_body_temp_path $WORK/tmp; proxy_temp_path $WORK/tmp; fastcgi_temp_path $WORK/tmp;
  uwsgi_temp_path $WORK/tmp; scgi_temp_path $WORK/tmp;
  server { listen 127.0.0.1:$NGINX_PORT; root $WORK/www; etag on; }
}
CONF
mkdir -p "$WORK/tmp"
nginx -p "$WORK" -c "$WORK/nginx.conf" -g 'daemon off;' &
PIDS+=($!)
NG=http://127.0.0.1:$NGINX_PORT
for _ in $(seq 50); do curl -sf "$NG/$SEG" -o /dev/null && break; sleep 0.1; done
cmp <(curl -sf "$NG/$SEG") <(curl -sf "$SM/$SEG") || { echo "nginx does not serve the segment" >&2; exit 1; }
echo "nginx and streammachine serve the same segment bytes"

run() { # name url
  local out rps lat
  out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "$2")
  if grep -q 'Non-2xx' <<<"$out"; then echo "$1: error responses" >&2; echo "$out" >&2; exit 1; fi
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  lat=$(awk '/Latency/ && !/Distribution/ {print $2; exit}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  printf '%-46s %12s req/s   avg %8s   p99 %8s\n' "$1" "$rps" "$lat" "$p99"
}
echo "== wrk: $THREADS threads, $CONNECTIONS connections, $DURATION each"
run "segment, streammachine" "$SM/$SEG"
run "segment, nginx (static file)" "$NG/$SEG"
run "4 h playlist, streammachine" "$SM/$FULL"
run "4 h playlist, nginx (static file)" "$NG/live.m3u8"
run "4 h playlist delta (_HLS_skip), streammachine" "$SM/$FULL&_HLS_skip=YES"
run "4 h playlist with session id, streammachine" "$SM/$FULL&session_id=bench"
run "1 h live window (plain URL), streammachine" "$SM/live.m3u8"
