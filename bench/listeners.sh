#!/usr/bin/env bash
# Listener load: streammachine standalone against Icecast 2 (Debian), fed the same file at real
# time, in one run. For each listener count it reports server CPU per listener-minute, RSS per
# listener, p99 time to first byte, stalls and refusals, and writes bench/RESULTS-listeners.md.
#
#   bench/listeners.sh [LISTENER_COUNTS...]        default: 1000 10000
#   HOLD=60 RATE=2000 bench/listeners.sh 1000
#
# Needs: ffmpeg, icecast2 (apt-get install icecast2), a release build (done here).
# Everything runs on 127.0.0.1; every process started here is stopped by PID on exit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
COUNTS=("${@:-1000 10000}")
read -r -a COUNTS <<< "${COUNTS[*]}"
HOLD=${HOLD:-60}
RATE=${RATE:-2000}
BURST=${BURST:-4s}   # Icecast's default burst is 64 KB, about 4 s of 128 kbps
PW=bench-source-pw
WORK=$(mktemp -d /tmp/sm-bench.XXXXXX)
chmod 755 "$WORK"   # Icecast drops root privileges and must still reach its log dir
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

command -v icecast2 >/dev/null || { echo "icecast2 missing: apt-get install icecast2" >&2; exit 1; }
cargo build --release -q --workspace --bins  # one feature set for every binary: no rebuild between scripts
SM=target/release/streammachine
LOADGEN=target/release/loadgen
FIXTURE=$WORK/noise.mp3
ffmpeg -hide_banner -loglevel error -f lavfi -i "anoisesrc=d=600:c=pink:r=44100:a=0.3" -ac 2 \
  -c:a libmp3lame -b:a 128k -write_xing 0 -id3v2_version 0 "$FIXTURE"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
rss_kb() { awk '/VmRSS/{print $2}' "/proc/$1/status"; }
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }

start_streammachine() {
  local port=$1
  STREAMMACHINE_SOURCE_PASSWORD=$PW "$SM" standalone --listen "127.0.0.1:$port" \
    --admin-listen "127.0.0.1:$(free_port)" --burst "$BURST" --stream live >"$WORK/sm.log" 2>&1 &
  SERVER=$!; PIDS+=("$SERVER")
}

start_icecast() {
  local port=$1 dir=$WORK/icecast
  mkdir -p "$dir/log"; chmod 777 "$dir/log"
  cat >"$dir/icecast.xml" <<XML
<icecast>
  <limits><clients>20000</clients><sources>2</sources><queue-size>524288</queue-size>
    <client-timeout>30</client-timeout><header-timeout>15</header-timeout>
    <source-timeout>10</source-timeout><burst-on-connect>1</burst-on-connect>
    <burst-size>65535</burst-size></limits>
  <authentication><source-password>$PW</source-password><admin-user>admin</admin-user>
    <admin-password>$PW</admin-password></authentication>
  <hostname>127.0.0.1</hostname>
  <listen-socket><port>$port</port><bind-address>127.0.0.1</bind-address></listen-socket>
  <fileserve>1</fileserve>
  <paths><basedir>/usr/share/icecast2</basedir><logdir>$dir/log</logdir>
    <webroot>/usr/share/icecast2/web</webroot><adminroot>/usr/share/icecast2/admin</adminroot></paths>
  <logging><accesslog>access.log</accesslog><errorlog>error.log</errorlog><loglevel>2</loglevel></logging>
  <security><chroot>0</chroot>
    $( [ "$(id -u)" -eq 0 ] && echo '<changeowner><user>nobody</user><group>nogroup</group></changeowner>' )
  </security>
</icecast>
XML
  icecast2 -c "$dir/icecast.xml" >"$WORK/icecast.out" 2>&1 &
  SERVER=$!; PIDS+=("$SERVER")
}

start_source() {
  ffmpeg -hide_banner -loglevel error -nostdin -re -stream_loop -1 -i "$FIXTURE" -c copy \
    -content_type audio/mpeg -f mp3 "icecast://source:$PW@127.0.0.1:$1/live" >/dev/null 2>&1 &
  SOURCE=$!; PIDS+=("$SOURCE")
}

measure() { # server-name start-fn listeners
  local name=$1 start=$2 n=$3 port
  port=$(free_port)
  "$start" "$port"; wait_port "$port"
  start_source "$port"
  sleep 10   # source connected, burst buffer filled
  local hz; hz=$(getconf CLK_TCK)
  local c0 t0 rss0; c0=$(cpu_ticks "$SERVER"); t0=$(date +%s.%N); rss0=$(rss_kb "$SERVER")
  sleep 5
  local cb tb; cb=$(cpu_ticks "$SERVER"); tb=$(date +%s.%N)
  "$LOADGEN" listen --url "http://127.0.0.1:$port/live" --listeners "$n" --rate "$RATE" \
    --hold "${HOLD}s" >"$WORK/$name-$n.json" 2>"$WORK/$name-$n.err" &
  local lg=$!; PIDS+=("$lg")
  local ramp; ramp=$(python3 -c "print($n/$RATE + 3)")
  sleep "$ramp"
  local c1 t1 rss1; c1=$(cpu_ticks "$SERVER"); t1=$(date +%s.%N); rss1=$(rss_kb "$SERVER")
  sleep $((HOLD - 6))
  local c2 t2; c2=$(cpu_ticks "$SERVER"); t2=$(date +%s.%N)
  wait "$lg" || true
  kill "$SOURCE" "$SERVER" 2>/dev/null || true; wait "$SOURCE" "$SERVER" 2>/dev/null || true
  python3 - "$name" "$n" "$hz" "$c0" "$t0" "$cb" "$tb" "$c1" "$t1" "$c2" "$t2" "$rss0" "$rss1" \
    "$WORK/$name-$n.json" >>"$WORK/rows" <<'PY'
import json, sys
name, n, hz = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
c0, t0, cb, tb, c1, t1, c2, t2, rss0, rss1 = map(float, sys.argv[4:14])
r = json.load(open(sys.argv[14]))
idle_rate = (cb - c0) / hz / (tb - t0)            # CPU s per s with the source only
busy_rate = (c2 - c1) / hz / (t2 - t1)            # CPU s per s with every listener connected
per_listener_minute_ms = max(busy_rate - idle_rate, 0) * 60 * 1000 / n
print(json.dumps({"server": name, "listeners": n, "served": r["served"], "refused": r["refused"],
  "failed": r["failed"] + r["bad_status"], "dropped": r["dropped_by_server"],
  "stalled": r["stalled_listeners"], "ttfb_p50_ms": r["ttfb_ms"]["p50"],
  "ttfb_p99_ms": r["ttfb_ms"]["p99"], "cpu_ms_per_listener_minute": per_listener_minute_ms,
  "cpu_cores_busy": busy_rate, "rss_kib_per_listener": (rss1 - rss0) / n,
  "kbps_per_listener": r["kbps_per_listener"]}))
PY
  tail -1 "$WORK/rows" >&2
}

for n in "${COUNTS[@]}"; do
  measure streammachine start_streammachine "$n"
  measure icecast start_icecast "$n"
done

python3 - "$WORK/rows" "${COUNTS[*]}" "$HOLD" "$RATE" "$BURST" >bench/RESULTS-listeners.md <<'PY'
import json, sys, datetime, platform, os
rows = [json.loads(l) for l in open(sys.argv[1])]
print("# Listener load: streammachine vs Icecast 2\n")
print(f"Run {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores ({platform.machine()}),"
      f" listener counts {sys.argv[2]}, hold {sys.argv[3]} s after a ramp of {sys.argv[4]} connections/s,"
      f" streammachine burst {sys.argv[5]} (Icecast: 64 KB). Command: `bench/listeners.sh {sys.argv[2]}`.\n")
print("| server | listeners | served | refused/failed | dropped | stalled | TTFB p50 ms | TTFB p99 ms | CPU ms / listener-minute | RSS KiB / listener | kbit/s per listener |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    print(f"| {r['server']} | {r['listeners']} | {r['served']} | {r['refused']}/{r['failed']} | {r['dropped']} | {r['stalled']} |"
          f" {r['ttfb_p50_ms']:.1f} | {r['ttfb_p99_ms']:.1f} | {r['cpu_ms_per_listener_minute']:.2f} |"
          f" {r['rss_kib_per_listener']:.2f} | {r['kbps_per_listener']:.0f} |")
by = {(r['server'], r['listeners']): r for r in rows}
print()
for n in sorted({r['listeners'] for r in rows}):
    s, i = by.get(("streammachine", n)), by.get(("icecast", n))
    if s and i and s['cpu_ms_per_listener_minute'] > 0:
        print(f"- {n} listeners: Icecast uses {i['cpu_ms_per_listener_minute'] / s['cpu_ms_per_listener_minute']:.1f}x"
              f" the CPU per listener of streammachine and {i['rss_kib_per_listener'] / max(s['rss_kib_per_listener'], 0.01):.1f}x its memory per listener.")
print("\nThe load generator (bench/loadgen) runs on the same machine and competes for the same cores.")
PY
cat bench/RESULTS-listeners.md
