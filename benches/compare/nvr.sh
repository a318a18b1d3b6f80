#!/usr/bin/env bash
# nvr's cost per camera, and ffmpeg recording the same cameras, in the same run.
#   cameras: N = 1 8 32 loopback cameras from one loopcam, each a 720p25 4 Mbit/s clip
#   nvr:     --record events with an event per camera every 15 s (pre 5 s, post 5 s), and
#            --record all (continuous, like ffmpeg below)
#   ffmpeg:  one `ffmpeg -rtsp_transport tcp -i URL -c copy -f segment` per camera (the script
#            NVR), recording continuously to a temp dir
# Figures: CPU % of one core and RSS of the whole recorder (cpu_sample.py from ../shared/peers),
# per camera; nvr's alarm → first frame handed to the store latency (from /api/cameras).
# Usage: benches/compare/nvr.sh   (COUNTS="1 8 32" SECS=30)
set -euo pipefail
cd "$(dirname "$0")/../.."
peers=${NVRKIT_PEERS:-$(pwd)/../shared/peers}
counts=${COUNTS:-1 8 32}
secs=${SECS:-30}
[ -n "${LOOPCAM:-}" ] || cargo build --profile profiling -q -p loopcam -p nvr
loopcam=${LOOPCAM:-target/profiling/loopcam}
nvr=${NVR:-target/profiling/nvr}
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

# A 720p25 clip at 4 Mbit/s with a 1 s GOP, and N names for it.
ffmpeg -v error -f lavfi -i testsrc2=size=1280x720:rate=25 -t 10 -c:v libx264 -preset veryfast \
  -b:v 4M -maxrate 4M -bufsize 8M -g 25 -bf 0 -pix_fmt yuv420p "$tmp/cam.mp4"
max=$(echo $counts | tr ' ' '\n' | sort -n | tail -1)
mkdir -p "$tmp/clips"
for i in $(seq -w 1 "$max"); do ln -s "$tmp/cam.mp4" "$tmp/clips/cam$i.mp4"; done
"$loopcam" --listen 127.0.0.1:18700 --no-udp --no-onvif "$tmp/clips" >/dev/null 2>"$tmp/loopcam.log" &
pids+=($!)
sleep 3

echo "cameras: 720p25 4 Mbit/s; $secs s windows; $(nproc) cores"
for n in $counts; do
  args=()
  for i in $(seq -w 1 "$max" | head -n "$n"); do args+=(--camera "cam$i=rtsp://127.0.0.1:18700/cam$i"); done
  for mode in events all; do
  rm -rf "$tmp/store"
  "$nvr" "${args[@]}" --smtp-listen 127.0.0.1:0 --http-listen 127.0.0.1:18780 --pre 5s --post 5s \
    --record "$mode" --store "$tmp/store" >"$tmp/nvr.out" 2>"$tmp/nvr.log" &
  nvrpid=$!
  pids+=("$nvrpid")
  sleep 12
  # One event per camera every 15 s, over HTTP.
  (
    while true; do
      for i in $(seq -w 1 "$max" | head -n "$n"); do
        curl -s -o /dev/null -X POST http://127.0.0.1:18780/api/events --data \
          "{\"v\":1,\"phase\":\"start\",\"received_at\":\"2026-01-01T00:00:00Z\",\"vendor\":\"generic\",\"camera\":\"cam$i\",\"kind\":\"motion\",\"subject\":\"bench\",\"from\":\"b@x\",\"to\":[\"cam$i@nvr\"],\"snapshots\":[],\"source\":{\"peer\":null,\"helo\":\"b\",\"auth_user\":null,\"tls\":false,\"mail_from\":\"b@x\"}}"
      done
      sleep 15
    done
  ) &
  events=$!
  pids+=("$events")
  sleep 2
  cpu=$(python3 "$peers/cpu_sample.py" "$secs" "nvr=$nvrpid")
  kill "$events"
  lat=$(curl -s http://127.0.0.1:18780/api/cameras | python3 -c '
import json, sys
c = json.load(sys.stdin)
lat = sorted(x["recorder"]["last_latency_ms"] for x in c)
ring = sum(x["ring"]["bytes"] for x in c) / len(c) / 1e6
clips = sum(x["recorder"]["clips"] for x in c)
print(f"latency p50 {lat[len(lat)//2]:.1f} ms max {lat[-1]:.1f} ms; ring {ring:.1f} MB/camera; clips {clips}")')
  kill -INT "$nvrpid"; wait "$nvrpid" 2>/dev/null || true
  python3 - "$n" "$cpu" "$lat" "$mode" <<'PY'
import json, sys
n = int(sys.argv[1]); c = json.loads(sys.argv[2])["nvr"]
print(f"{n:3d} cameras  nvr {sys.argv[4]:6s} {c['cpu_pct']:6.1f} % ({c['cpu_pct']/n:5.2f} %/camera)  RSS {c['rss_mb']:6.1f} MB ({c['rss_mb']/n:5.1f} MB/camera)  {sys.argv[3]}")
PY
  done

  # The same cameras recorded by ffmpeg, one process each.
  mkdir -p "$tmp/ff"
  ff=()
  for i in $(seq -w 1 "$max" | head -n "$n"); do
    ffmpeg -v error -rtsp_transport tcp -i "rtsp://127.0.0.1:18700/cam$i" -c copy -f segment \
      -segment_time 60 -reset_timestamps 1 "$tmp/ff/cam$i-%03d.mp4" </dev/null >/dev/null 2>&1 &
    ff+=($!)
    pids+=($!)
  done
  sleep 8
  ffcpu=$(python3 "$peers/cpu_sample.py" "$secs" "ffmpeg=$(IFS=,; echo "${ff[*]}")")
  for p in "${ff[@]}"; do kill -INT "$p" 2>/dev/null || true; done
  for p in "${ff[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp/ff"
  python3 - "$n" "$ffcpu" <<'PY'
import json, sys
n = int(sys.argv[1]); c = json.loads(sys.argv[2])["ffmpeg"]
print(f"{n:3d} cameras  ffmpeg     {c['cpu_pct']:6.1f} % ({c['cpu_pct']/n:5.2f} %/camera)  RSS {c['rss_mb']:6.1f} MB ({c['rss_mb']/n:5.1f} MB/camera)  alive {c['alive']}/{c['procs']}")
PY
done
