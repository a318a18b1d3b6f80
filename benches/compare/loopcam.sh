#!/usr/bin/env bash
# loopcam against gst-rtsp-server, same run, same clip, same load client (rtsp-load, in Rust:
# benches/src/rtsp_load; it reads RTP headers only and reports its own CPU beside the server's):
#   fan-out   N = 1 10 50 100 500 RTSP sessions over TCP (and/or UDP): server CPU % (100 = one
#             core) and RSS, the client's CPU % in the same window, frames per session, losses,
#             PLAY → first IDR per session, frame lateness against the RTP timeline (p99)
#   capacity  (CAPACITY=1) the largest N for which every reader gets every frame (no loss, every
#             session ok) with lateness p99 ≤ 20 ms: a bisection over N, per server
#   16 clips × 4 readers: loopcam's CPU serving 16 streams
#   pacing (PACING_SECS > 0): one session for that long: media/wall drift (Python light client),
#          loopcam's own push lateness (p50/p99/max, logged at shutdown)
# Tools: ../shared/peers (gst_loop_server.py, rtsp_light_client.py for pacing, cpu_sample.py).
# Needs Debian's gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-plugins-{good,bad}.
# Usage: benches/compare/loopcam.sh [CLIP]   (default ../shared/testdata/bigbuckbunny.mp4)
#        SECS=20 COUNTS="1 10 50 100 500" TRANSPORTS="tcp udp" PACING_SECS=600 benches/compare/loopcam.sh
#        PIN=1 CAPACITY=1 COUNTS= benches/compare/loopcam.sh   (server on core 0, client on core 1)
# Knobs: PIN=1 (taskset: server on SERVER_CPUS, default 0; client on CLIENT_CPUS, default 1),
#        CLIENT_THREADS (rtsp-load --threads, default 1), RAMP (sessions/s, default 200),
#        SERVER_THREADS (loopcam --threads, default: loopcam's, one per core; each run also
#        prints loopcam's CPU per thread, thread_cpu.py),
#        CAP_LO / CAP_HI (capacity bracket, default 50 / 4000), CAP_SECS (default 10),
#        REPEAT (each fan-out measurement, servers alternating, default 1),
#        SERVERS (default "loopcam gst-rtsp-server"; loopcam@N is loopcam --threads N), RTSP_LOAD / LOOPCAM (prebuilt binaries).
set -euo pipefail
cd "$(dirname "$0")/../.."
peers=${NVRKIT_PEERS:-$(pwd)/../shared/peers}
clip=${1:-${NVRKIT_SHARED_TESTDATA:-$(pwd)/../shared/testdata}/bigbuckbunny.mp4}
secs=${SECS:-20}
counts=${COUNTS-1 10 50 100 500}
transports=${TRANSPORTS:-tcp}
servers=${SERVERS:-loopcam gst-rtsp-server}
pacing_secs=${PACING_SECS:-0}
ramp=${RAMP:-200}
client_threads=${CLIENT_THREADS:-1}
target=${CARGO_TARGET_DIR:-target}
loopcam=${LOOPCAM:-$target/profiling/loopcam}
rtsp_load=${RTSP_LOAD:-$target/profiling/rtsp-load}
if [ -z "${LOOPCAM:-}" ] || [ -z "${RTSP_LOAD:-}" ]; then
  cargo build --profile profiling -q -p loopcam -p nvrkit-benches --bin loopcam --bin rtsp-load
fi
server_pin=() client_pin=() server_threads=()
[ -n "${SERVER_THREADS:-}" ] && server_threads=(--threads "$SERVER_THREADS")
if [ "${PIN:-0}" = 1 ]; then
  server_pin=(taskset -c "${SERVER_CPUS:-0}")
  client_pin=(taskset -c "${CLIENT_CPUS:-1}")
fi
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

name=$(basename "$clip" .mp4)
declare -A url=([loopcam]="rtsp://127.0.0.1:18554/$name" [gst-rtsp-server]="rtsp://127.0.0.1:18555/cam")

# Each measurement gets a fresh server: gst_loop_server.py aborts when its shared media is
# prepared again after the last client left, so both servers are restarted alike.
start_server() { # name transport [extra loopcam flags] → pid on stdout
  local udp=(--no-udp)
  [ "$2" = udp ] && udp=()
  case $1 in
    loopcam) "${server_pin[@]}" "$loopcam" --listen 127.0.0.1:18554 "${udp[@]}" --no-onvif "${server_threads[@]}" "${@:3}" "$clip" >/dev/null 2>>"$tmp/loopcam.log" & ;;
    # loopcam@N: loopcam --threads N (SERVERS="loopcam@1 loopcam@2 gst-rtsp-server").
    loopcam@*) "${server_pin[@]}" "$loopcam" --listen 127.0.0.1:18554 "${udp[@]}" --no-onvif --threads "${1#loopcam@}" "${@:3}" "$clip" >/dev/null 2>>"$tmp/loopcam.log" & ;;
    # --audio: the AAC track too, as loopcam serves it (rtsp-load sets up video only).
    gst-rtsp-server) "${server_pin[@]}" /usr/bin/python3 "$peers/gst_loop_server.py" "$clip" --port 18555 ${GST_AUDIO---audio} >>"$tmp/gst.log" 2>&1 & ;;
  esac
  echo $!
}
stop_server() { # SIGINT (loopcam logs its pacing), then SIGKILL: the next server needs the port
  kill -INT "$1" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
}

# One measurement: a fresh server, N rtsp-load sessions; CPU of both sampled over `window`
# seconds once every session is open. Leaves $tmp/run.json (rtsp-load) and $tmp/cpu.json.
measure() { # server transport n window
  local spid cpid ramp_s
  spid=$(start_server "$1" "$2")
  pids+=("$spid")
  sleep 2
  ramp_s=$(python3 -c "print(int($3 / $ramp) + 2)")
  "${client_pin[@]}" "$rtsp_load" --url "${url[${1%@*}]}" --clients "$3" --threads "$client_threads" \
    --transport "$2" --ramp "$ramp" --duration "$(($4 + 5))s" --json >"$tmp/run.json" 2>>"$tmp/load.log" &
  cpid=$!
  pids+=("$cpid")
  sleep "$ramp_s"
  python3 benches/compare/thread_cpu.py "$4" "$spid" >"$tmp/threads.json" &
  python3 "$peers/cpu_sample.py" "$4" "server=$spid" "client=$cpid" >"$tmp/cpu.json"
  wait $!
  wait "$cpid" || echo "rtsp-load failed: $(tail -1 "$tmp/load.log")" >&2
  stop_server "$spid"
}

summarize() { # cpu.json run.json → one line
  python3 - "$@" <<'PY'
import json, sys
cpu = json.load(open(sys.argv[1]))
r = json.load(open(sys.argv[2]))
s, c = cpu["server"], cpu["client"]
fps = r["frames_per_session"] or {"min": 0, "max": 0}
key = r["first_key_ms"] or {"median": float("nan"), "p99": float("nan")}
ratio = c["cpu_pct"] / s["cpu_pct"] if s["cpu_pct"] else float("nan")
own = r["cpu"]["steady_pct"]
print(f"server {s['cpu_pct']:6.1f} % {s['rss_mb']:6.1f} MB | client {c['cpu_pct']:5.1f} % ({ratio:4.2f}× server; own {own:.1f} %, {r['cpu']['steady_pct_per_1000']:.1f} %/1000) | "
      f"ok {r['ok']}/{r['clients']} frames {fps['min']:.0f}-{fps['max']:.0f} lost {r['totals']['lost']} "
      f"late p99 {r['lateness']['p99_ms']:.1f} ms max {r['lateness']['max_ms']:.0f} | first IDR p50 {key['median']:.0f} p99 {key['p99']:.0f} ms"
      + ("" if r["every_frame"] else "  NOT every frame") + "".join(f"\n      {n} × {e}" for e, n in r["errors"].items()))
PY
}

passes() { # run.json → exit 0 when every reader got every frame with lateness p99 ≤ 20 ms
  python3 - "$1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
sys.exit(0 if r["every_frame"] and r["lateness"]["p99_ms"] <= 20.0 else 1)
PY
}

echo "clip: $clip; $secs s windows; $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg); PIN=${PIN:-0}; loopcam threads ${SERVER_THREADS:-default}; rtsp-load threads $client_threads, ramp $ramp/s"
for transport in $transports; do
  for n in $counts; do
    for _ in $(seq "${REPEAT:-1}"); do for server in $servers; do
      measure "$server" "$transport" "$n" "$secs"
      printf "%4d %s %-16s load %5s | " "$n" "$transport" "$server" "$(cut -d' ' -f1 /proc/loadavg)"
      summarize "$tmp/cpu.json" "$tmp/run.json"
      [ "${server%@*}" = loopcam ] && echo "      loopcam threads (CPU %): $(cat "$tmp/threads.json")"
    done; done
  done
done

if [ "${CAPACITY:-0}" = 1 ]; then
  cap_secs=${CAP_SECS:-10}
  for transport in $transports; do
    for server in $servers; do
      lo=${CAP_LO:-50} hi=${CAP_HI:-4000}
      measure "$server" "$transport" "$lo" "$cap_secs"
      if ! passes "$tmp/run.json"; then
        printf "capacity %s %-16s below %d: " "$transport" "$server" "$lo"
        summarize "$tmp/cpu.json" "$tmp/run.json"
        continue
      fi
      measure "$server" "$transport" "$hi" "$cap_secs"
      if passes "$tmp/run.json"; then
        printf "capacity %s %-16s at least %d (CAP_HI)\n" "$transport" "$server" "$hi"
        continue
      fi
      # lo passes, hi fails: halve the bracket until it is within 5 % (or 10 readers).
      while [ $((hi - lo)) -gt $(( lo / 20 > 10 ? lo / 20 : 10 )) ]; do
        mid=$(((lo + hi) / 2))
        measure "$server" "$transport" "$mid" "$cap_secs"
        if passes "$tmp/run.json"; then verdict=pass; lo=$mid; else verdict=fail; hi=$mid; fi
        printf "  probe %5d %s %-16s %s: " "$mid" "$transport" "$server" "$verdict"
        summarize "$tmp/cpu.json" "$tmp/run.json"
      done
      printf "capacity %s %-16s %d readers (fails at %d)\n" "$transport" "$server" "$lo" "$hi"
    done
  done
fi

# 16 clips × 4 readers, loopcam only (one process serving 16 streams).
if [ "${SKIP_16:-0}" != 1 ]; then
  mkdir -p "$tmp/clips"
  for i in $(seq -w 1 16); do ln -s "$clip" "$tmp/clips/cam$i.mp4"; done
  "${server_pin[@]}" "$loopcam" --listen 127.0.0.1:18556 --no-udp --no-onvif "$tmp/clips" >/dev/null 2>"$tmp/loopcam16.log" &
  lc16=$!
  pids+=("$lc16")
  sleep 2
  clients=()
  for i in $(seq -w 1 16); do
    "${client_pin[@]}" "$rtsp_load" --url "rtsp://127.0.0.1:18556/cam$i" --clients 4 --duration "$((secs + 3))s" --json >"$tmp/16-$i.json" &
    clients+=($!)
  done
  sleep 2
  python3 "$peers/cpu_sample.py" "$secs" "loopcam=$lc16" >"$tmp/cpu16.json"
  for c in "${clients[@]}"; do wait "$c"; done
  printf "16 clips × 4 readers loopcam: %s; %s\n" "$(cat "$tmp/cpu16.json")" \
    "$(python3 -c 'import json,sys; r=[json.load(open(f)) for f in sys.argv[1:]]; print("sessions ok %d/64, lost %d" % (sum(x["ok"] for x in r), sum(x["totals"]["lost"] for x in r)))' "$tmp"/16-*.json)"
  stop_server "$lc16"
fi

if [ "$pacing_secs" -gt 0 ]; then
  # --strict-start: the session starts at the next keyframe, with no catch-up burst, so media
  # time and wall time are compared from the first packet on.
  spid=$(start_server loopcam tcp --strict-start)
  pids+=("$spid")
  sleep 2
  python3 "$peers/rtsp_light_client.py" "${url[loopcam]}" 1 "$pacing_secs" --json "$tmp/pacing.json" >/dev/null
  python3 - "$tmp/pacing.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))["sessions"][0]
ratio = s["media_s"] / s["wall_s"]
print(f"pacing over {s['wall_s']:.0f} s: media/wall - 1 = {ratio - 1:+.2e} ({s['drift_ms_per_min']} ms/min)")
PY
  stop_server "$spid"
  grep -h "lateness" "$tmp/loopcam.log" | tail -1 | sed 's/.*INFO[^ ]* //' || true
fi
