#!/usr/bin/env bash
# HLS sessions at the scale of ICY listeners, in one run on loopback: streammachine standalone
# holding a four-hour 128 kbit/s MP3 buffer (restored from a synthetic dump) plus a live source
# fed in real time (so new segments appear during the hold), loaded in turn by
#  a. N HLS players of mixed profiles (hls.js, AVPlayer, ffmpeg: bench/loadgen `hls`),
#  b. N of the worst player (ffmpeg: full playlist reloads), without and (when the server
#     compresses playlists) with Accept-Encoding: gzip,
#  c. N ICY/raw listeners (bench/loadgen `listen`), the baseline.
# For each: server CPU per session-minute (over the steady part of the hold, less the server's
# idle rate just before), the ratio to ICY, egress per session (kbit/s and as a multiple of the
# audio bitrate), stalls, TTFB p99. Prints a Markdown table for bench/RESULTS-hls.md.
#
#   bench/hls-sessions.sh                      N=10000 HOLD=60 RATE=500
#   N=200 HOLD=15 bench/hls-sessions.sh        a quick check that everything works
#
# Env: N sessions/listeners, HOLD seconds after the ramp, RATE new sessions per second, WARMUP
# seconds after the ramp before measuring (at most HOLD/2; players' start-up bursts end inside
# it), BITRATE of the live audio in kbit/s. Needs ffmpeg, curl, python3. Every process started
# here is stopped by PID on exit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
N=${N:-10000}
HOLD=${HOLD:-60}
RATE=${RATE:-500}
WARMUP=${WARMUP:-15}
BITRATE=${BITRATE:-128}
PW=bench-source-pw
TARGET=${CARGO_TARGET_DIR:-target}
for tool in ffmpeg curl python3; do
  command -v "$tool" >/dev/null || { echo "$tool is missing" >&2; exit 1; }
done
WORK=$(mktemp -d /tmp/sm-hls-sessions.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
# One socket per session on each side (both run from here, so both get this limit).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
WARMUP=$(python3 -c "print(min($WARMUP, $HOLD / 2))")

echo "== building (release)" >&2
cargo build --release -q --workspace --bins
SM_BIN=$TARGET/release/streammachine
LOADGEN=$TARGET/release/loadgen
echo "== four-hour buffer dump" >&2
mkdir -p "$WORK/dump"
HLS_BENCH_DUMP_DIR=$WORK/dump cargo test --release -q -p streammachine-e2e --test hls_bench -- \
  --ignored --nocapture write_four_hour_dump 2>&1 | grep wrote >&2
FIXTURE=$WORK/noise.mp3
ffmpeg -hide_banner -loglevel error -f lavfi -i "anoisesrc=d=600:c=pink:r=44100:a=0.3" -ac 2 \
  -c:a libmp3lame -b:a "${BITRATE}k" -write_xing 0 -id3v2_version 0 "$FIXTURE"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
now() { date +%s.%N; }
sleep_until() { python3 -c "import time; time.sleep(max(0.0, $1 - time.time()))"; }
metric() { # series: its value in /metrics, 0 when absent
  curl -sf "$SM/metrics" | awk -v s="$1" 'index($0, s" ") == 1 {v=$2} END {print v+0}'
}

PORT=$(free_port)
SM=http://127.0.0.1:$PORT
STREAMMACHINE_SOURCE_PASSWORD=$PW "$SM_BIN" standalone --listen "127.0.0.1:$PORT" \
  --admin-listen "127.0.0.1:$(free_port)" --stream live --dump-dir "$WORK/dump" \
  --log-format json >"$WORK/sm.log" 2>&1 &
SERVER=$!; PIDS+=("$SERVER")
for _ in $(seq 100); do curl -sf "$SM/live.m3u8" -o "$WORK/start.m3u8" && break; sleep 0.2; done
[ -s "$WORK/start.m3u8" ] || { echo "streammachine did not serve the playlist" >&2; tail "$WORK/sm.log" >&2; exit 1; }
ffmpeg -hide_banner -loglevel error -nostdin -re -stream_loop -1 -i "$FIXTURE" -c copy \
  -content_type audio/mpeg -write_xing 0 -id3v2_version 0 -f mp3 \
  "icecast://source:$PW@127.0.0.1:$PORT/live" >"$WORK/source.log" 2>&1 &
PIDS+=($!)
# On air when the live source's first segments are listed after the restored four hours.
last_uri() { curl -sf "$SM/live.m3u8" | grep -v '^#' | tail -n 1; }
first=$(last_uri)
for _ in $(seq 150); do [ "$(last_uri)" != "$first" ] && break; sleep 0.2; done
[ "$(last_uri)" != "$first" ] || { echo "no live segment after 30 s" >&2; tail "$WORK/source.log" >&2; exit 1; }
curl -sf "$SM/live.m3u8" -o "$WORK/live.m3u8"
echo "playlist: $(grep -c '^#EXTINF' "$WORK/live.m3u8") segments, $(wc -c <"$WORK/live.m3u8") bytes" >&2
GZIP=no
if curl -sf -o /dev/null -D - -H 'Accept-Encoding: gzip' "$SM/live.m3u8" | grep -qi '^content-encoding: *gzip'; then
  GZIP=yes
fi
echo "server compresses playlists: $GZIP" >&2
HLS_SERIES='streammachine_listeners{stream="live",protocol="hls"}'
SENT_SERIES='streammachine_sent_bytes_total{stream="live"}'
HZ=$(getconf CLK_TCK)

measure() { # name kind(hls|icy) profiles [playlist path]
  local name=$1 kind=$2 profiles=${3:-}
  # Sessions of the previous scenario end after their idle time: start from none.
  for _ in $(seq 120); do [ "$(metric "$HLS_SERIES")" = 0 ] && break; sleep 1; done
  local c0 t0 cb tb; c0=$(cpu_ticks "$SERVER"); t0=$(now)
  sleep 5
  cb=$(cpu_ticks "$SERVER"); tb=$(now)
  local launch; launch=$(now)
  if [ "$kind" = hls ]; then
    "$LOADGEN" hls --url "$SM/${4:-live.m3u8}" --sessions "$N" --rate "$RATE" --hold "${HOLD}s" \
      --warmup "${WARMUP}s" --profiles "$profiles" >"$WORK/$name.json" 2>"$WORK/$name.err" &
  else
    "$LOADGEN" listen --url "$SM/live" --listeners "$N" --rate "$RATE" --hold "${HOLD}s" \
      >"$WORK/$name.json" 2>"$WORK/$name.err" &
  fi
  local lg=$!; PIDS+=("$lg")
  local from to; from=$(python3 -c "print($launch + $N / $RATE + $WARMUP)")
  to=$(python3 -c "print($launch + $N / $RATE + $HOLD - 0.5)")
  sleep_until "$from"
  local c1 t1 s1 h1 l1; c1=$(cpu_ticks "$SERVER"); t1=$(now); s1=$(metric "$SENT_SERIES")
  h1=$(metric "$HLS_SERIES"); l1=$(cpu_ticks "$lg")
  sleep_until "$to"
  local c2 t2 s2 l2; c2=$(cpu_ticks "$SERVER"); t2=$(now); s2=$(metric "$SENT_SERIES"); l2=$(cpu_ticks "$lg")
  wait "$lg" || { echo "loadgen failed in $name:" >&2; cat "$WORK/$name.err" >&2; exit 1; }
  cat "$WORK/$name.err" >&2
  python3 - "$name" "$kind" "$N" "$HZ" "$BITRATE" "$c0" "$t0" "$cb" "$tb" "$c1" "$t1" "$c2" "$t2" \
    "$s1" "$s2" "$h1" "$l1" "$l2" "$WORK/$name.json" >>"$WORK/rows" <<'PY'
import json, sys
name, kind, n, hz, bitrate = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
c0, t0, cb, tb, c1, t1, c2, t2, s1, s2, h1, l1, l2 = map(float, sys.argv[6:19])
r = json.load(open(sys.argv[19]))
idle = (cb - c0) / hz / (tb - t0)          # CPU s per s, the source alone
busy = (c2 - c1) / hz / (t2 - t1)          # CPU s per s, every session playing
cpu = max(busy - idle, 0) * 60 / n         # CPU s per session-minute
if kind == "hls":
    row = {"ok": r["ok"], "failed": r["failed"], "stalls": r["stalls"],
           "stalled": r["stalled_sessions"], "kbps": r["window"]["kbps_per_session"],
           "playlist_kbps": r["window"]["playlist_kbps_per_session"],
           "ttfb_p99_playlist": r["playlist"]["ttfb_ms"]["p99"],
           "ttfb_p99_segment": r["segment"]["ttfb_ms"]["p99"],
           "errors": r["errors"], "reconnects": r["reconnects"], "counted": h1}
else:
    # Audio bytes the server sent during the window (loadgen's total includes the burst).
    row = {"ok": r["served"], "failed": r["refused"] + r["failed"] + r["bad_status"],
           "stalls": r["stalls"], "stalled": r["stalled_listeners"],
           "kbps": (s2 - s1) * 8 / 1000 / (t2 - t1) / n, "playlist_kbps": 0.0,
           "ttfb_p99_playlist": None, "ttfb_p99_segment": r["ttfb_ms"]["p99"],
           "errors": {}, "reconnects": 0, "counted": None}
row.update({"name": name, "kind": kind, "sessions": n, "cpu_s_per_session_minute": cpu,
            "cpu_cores_busy": busy, "cpu_cores_idle": idle,
            "loadgen_cores": (l2 - l1) / hz / (t2 - t1), "window_s": t2 - t1,
            "x_bitrate": row["kbps"] / bitrate})
print(json.dumps(row))
PY
  tail -1 "$WORK/rows" >&2
}

echo "== a. $N HLS players, mixed profiles" >&2
measure "hls-mixed" hls hlsjs,avplayer,ffmpeg
# The worst player reloads the whole four-hour playlist (the plain URL lists the live window).
echo "== b. $N HLS players, all ffmpeg reloading the whole buffer (no gzip)" >&2
measure "hls-ffmpeg-4h" hls ffmpeg "live.m3u8?window=14400"
if [ "$GZIP" = yes ]; then
  echo "== b. $N HLS players, all ffmpeg reloading the whole buffer with Accept-Encoding: gzip" >&2
  measure "hls-ffmpeg-4h-gzip" hls ffmpeg-gzip "live.m3u8?window=14400"
fi
echo "== c. $N ICY/raw listeners" >&2
measure "icy" icy

python3 - "$WORK/rows" "$N" "$HOLD" "$RATE" "$WARMUP" "$BITRATE" "$GZIP" "$(grep -c '^#EXTINF' "$WORK/live.m3u8")" "$(wc -c <"$WORK/live.m3u8")" <<'PY'
import json, sys, datetime, platform, os
rows = [json.loads(l) for l in open(sys.argv[1])]
n, hold, rate, warmup, bitrate, gzip, segs, size = sys.argv[2:10]
icy = next((r for r in rows if r["kind"] == "icy"), None)
print(f"\n## HLS sessions vs ICY listeners (`bench/hls-sessions.sh`)\n")
print(f"Run {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores"
      f" ({platform.machine()}), load generator on the same machine: N={n}, ramp {rate}/s, hold {hold} s,"
      f" measured over the last {float(hold) - float(warmup):.1f} s of it. {bitrate} kbit/s MP3, four-hour"
      f" buffer plus a live source; full playlist {segs} segments, {int(size) // 1000} KB; server"
      f" compresses playlists: {gzip}. Command: `N={n} HOLD={hold} RATE={rate} bench/hls-sessions.sh`.\n")
print("| load | sessions | ok / failed | counted by server | stalls (sessions) | TTFB p99 ms playlist / segment |"
      " CPU ms / session-minute | × ICY | server / loadgen cores | egress kbit/s per session (playlists) | × audio bitrate | reconnects | errors |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
fmt = lambda v: "–" if v is None else f"{v:.1f}"
for r in rows:
    ratio = (f"{r['cpu_s_per_session_minute'] / icy['cpu_s_per_session_minute']:.2f}"
             if icy and icy["cpu_s_per_session_minute"] > 0 else "–")
    counted = "–" if r["counted"] is None else f"{r['counted']:.0f}"
    errors = ", ".join(f"{k}: {v}" for k, v in r["errors"].items()) or "none"
    print(f"| {r['name']} | {r['sessions']} | {r['ok']} / {r['failed']} | {counted} | {r['stalls']} ({r['stalled']}) |"
          f" {fmt(r['ttfb_p99_playlist'])} / {fmt(r['ttfb_p99_segment'])} | {r['cpu_s_per_session_minute'] * 1000:.2f} |"
          f" {ratio} | {r['cpu_cores_busy']:.2f} / {r['loadgen_cores']:.2f} | {r['kbps']:.1f} ({r['playlist_kbps']:.1f}) | {r['x_bitrate']:.2f} | {r['reconnects']} | {errors} |")
print("\nCPU is the server's utime+stime over the measured part of the hold, less its idle rate with"
      " only the source just before, per session-minute. HLS egress is what the players received in"
      " that window (heads included, compressed bodies as sent); ICY egress is the server's"
      " sent_bytes counter over the same window (so the connect burst is left out of both).")
PY
