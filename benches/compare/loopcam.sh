#!/usr/bin/env bash
# loopcam against gst-rtsp-server, same run, same clip, same light client:
#   fan-out   N = 1 10 50 100 500 RTSP/TCP sessions: server CPU % (100 = one core) and RSS
#   first frame: connect → first SPS/IDR packet, per session (light client's first_key_ms)
#   16 clips × 4 readers: loopcam's CPU serving 16 streams
#   pacing (PACING_SECS > 0): one session for that long: media/wall drift, loopcam's own
#          push lateness (p50/p99/max, logged at shutdown)
# Tools: ../shared/peers (gst_loop_server.py, rtsp_light_client.py, cpu_sample.py).
# Needs Debian's gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-plugins-{good,bad}.
# Usage: benches/compare/loopcam.sh [CLIP]   (default ../shared/testdata/bigbuckbunny.mp4)
#        SECS=20 COUNTS="1 10 50 100 500" PACING_SECS=600 benches/compare/loopcam.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
peers=${NVRKIT_PEERS:-$(pwd)/../shared/peers}
clip=${1:-${NVRKIT_SHARED_TESTDATA:-$(pwd)/../shared/testdata}/bigbuckbunny.mp4}
secs=${SECS:-20}
counts=${COUNTS:-1 10 50 100 500}
pacing_secs=${PACING_SECS:-0}
loopcam=${LOOPCAM:-target/profiling/loopcam}
[ -n "${LOOPCAM:-}" ] || cargo build --profile profiling -q -p loopcam
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
start_server() { # name [extra loopcam flags] → pid on stdout
  case $1 in
    loopcam) "$loopcam" --listen 127.0.0.1:18554 --no-udp --no-onvif "${@:2}" "$clip" >/dev/null 2>>"$tmp/loopcam.log" & ;;
    # --audio: the AAC track too, as loopcam serves it (the light client sets up video only).
    gst-rtsp-server) /usr/bin/python3 "$peers/gst_loop_server.py" "$clip" --port 18555 ${GST_AUDIO---audio} >>"$tmp/gst.log" 2>&1 & ;;
  esac
  echo $!
}
stop_server() { # SIGINT (loopcam logs its pacing), then SIGKILL: the next server needs the port
  kill -INT "$1" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
}

summarize() { # json → "cpu rss first_key_p50 first_key_p95 ok/n frames_min"
  python3 - "$@" <<'PY'
import json, sys
cpu = json.load(open(sys.argv[1]))
r = json.load(open(sys.argv[2]))["summary"]
server = next(iter(cpu.values()))
keys = sorted(k for k in r["first_key_ms"] if k is not None and k >= 0)
p = lambda q: keys[min(len(keys) - 1, int(q * len(keys)))] if keys else float("nan")
print(f"{server['cpu_pct']:6.1f} %  {server['rss_mb']:6.1f} MB  first key p50 {p(0.5):7.1f} ms  p95 {p(0.95):7.1f} ms  "
      f"sessions ok {r['ok']}/{r['sessions']}  frames min {r['frames_min']}  errors {r['errors']}")
PY
}

echo "clip: $clip; $secs s windows; $(nproc) cores"
for n in $counts; do
  for server in loopcam gst-rtsp-server; do
    spid=$(start_server $server)
    pids+=("$spid")
    sleep 2
    stagger=5
    ramp=$(python3 -c "print(int($n * $stagger / 1000) + 3)")
    python3 "$peers/rtsp_light_client.py" "${url[$server]}" "$n" $((ramp + secs + 2)) \
      --stagger $stagger --json "$tmp/$server-$n.json" >/dev/null &
    client=$!
    sleep "$ramp"
    python3 "$peers/cpu_sample.py" "$secs" "$server=$spid" >"$tmp/cpu-$server-$n.json"
    wait "$client"
    stop_server "$spid"
    printf "%4d clients  %-16s " "$n" "$server"
    summarize "$tmp/cpu-$server-$n.json" "$tmp/$server-$n.json"
  done
done

# 16 clips × 4 readers, loopcam only (one process serving 16 streams).
mkdir -p "$tmp/clips"
for i in $(seq -w 1 16); do ln -s "$clip" "$tmp/clips/cam$i.mp4"; done
"$loopcam" --listen 127.0.0.1:18556 --no-udp --no-onvif "$tmp/clips" >/dev/null 2>"$tmp/loopcam16.log" &
lc16=$!
pids+=("$lc16")
sleep 2
clients=()
for i in $(seq -w 1 16); do
  python3 "$peers/rtsp_light_client.py" "rtsp://127.0.0.1:18556/cam$i" 4 $((secs + 5)) --json "$tmp/16-$i.json" >/dev/null &
  clients+=($!)
done
sleep 3
python3 "$peers/cpu_sample.py" "$secs" "loopcam=$lc16" >"$tmp/cpu16.json"
for c in "${clients[@]}"; do wait "$c"; done
printf "16 clips × 4 readers loopcam: %s\n" "$(cat "$tmp/cpu16.json")"

if [ "$pacing_secs" -gt 0 ]; then
  # --strict-start: the session starts at the next keyframe, with no catch-up burst, so media
  # time and wall time are compared from the first packet on.
  spid=$(start_server loopcam --strict-start)
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
