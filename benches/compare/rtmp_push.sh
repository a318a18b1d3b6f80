#!/usr/bin/env bash
# `loopcam push` against the ffmpeg publisher, same run, same clip, same nginx-rtmp:
#   ffmpeg -re -stream_loop -1 -i CLIP -c copy -fflags +genpts -f flv rtmp://…/live/ff_N
#   loopcam push rtmp://…/live/lc_1 CLIP [--push rtmp://…/live/lc_N …]
# For N = 1 and N = STREAMS (default 4) pushed streams: publisher CPU % (100 = one core; ffmpeg:
# the sum of its N processes) and RSS, over SECS (default 60) after a 3 s warm-up; then each
# stream is read back from nginx with ffprobe over LOOPS loops (default 10) and its seam defects
# are counted: DTS not increasing (per stream), and video PTS steps ≠ the frame step ± 1 ms.
# Tools: nginx + libnginx-mod-rtmp, ffmpeg/ffprobe (Debian), ../shared/peers/cpu_sample.py.
# Usage: benches/compare/rtmp_push.sh [CLIP]   (default ../shared/testdata/bigbuckbunny.mp4)
set -euo pipefail
cd "$(dirname "$0")/../.."
peers=${NVRKIT_PEERS:-$(pwd)/../shared/peers}
clip=${1:-${NVRKIT_SHARED_TESTDATA:-$(pwd)/../shared/testdata}/bigbuckbunny.mp4}
secs=${SECS:-60}
streams=${STREAMS:-4}
loops=${LOOPS:-10}
loopcam=${LOOPCAM:-target/profiling/loopcam}
[ -n "${LOOPCAM:-}" ] || cargo build --profile profiling -q -p loopcam
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.5
  rm -rf "$tmp"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$tmp/nginx.conf" <<CONF
daemon off;
master_process off;
worker_processes 1;
error_log $tmp/error.log warn;
pid $tmp/nginx.pid;
load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;
events { worker_connections 1024; }
rtmp { server { listen 127.0.0.1:$port; chunk_size 4096; application live { live on; record off; } } }
CONF
nginx -c "$tmp/nginx.conf" -p "$tmp" -e "$tmp/stderr.log" &
pids+=($!)
sleep 0.5
base="rtmp://127.0.0.1:$port/live"
period=$(ffprobe -v error -select_streams v:0 -show_entries format=duration -of csv=p=0 "$clip")
probe_secs=$(python3 -c "print(int($period * $loops + 4))")
echo "clip $(basename "$clip"): loop ${period} s; nginx-rtmp on $port; ffmpeg $(ffmpeg -version | head -1 | cut -d' ' -f3)"

run() { # n → prints one line per publisher
  local n=$1 ff=() lc
  for i in $(seq 1 "$n"); do
    ffmpeg -nostdin -v error -re -stream_loop -1 -i "$clip" -c copy -fflags +genpts -f flv "$base/ff_${n}_$i" 2>>"$tmp/ffmpeg.log" &
    ff+=($!)
    pids+=($!)
  done
  local extra=()
  for i in $(seq 2 "$n"); do extra+=(--push "$base/lc_${n}_$i"); done
  RUST_LOG=warn "$loopcam" push "$base/lc_${n}_1" "$clip" "${extra[@]}" 2>>"$tmp/loopcam.log" &
  lc=$!
  pids+=($lc)
  sleep 3
  # Read back one stream of each publisher while measuring.
  for who in ff lc; do
    ffprobe -v warning -rw_timeout 15000000 -show_entries packet=stream_index,pts,dts:stream=index,codec_type \
      -of csv -read_intervals "%+$probe_secs" "$base/${who}_${n}_1" >"$tmp/$who.$n.csv" 2>"$tmp/$who.$n.err" &
    pids+=($!)
  done
  local ffpids
  ffpids=$(IFS=,; echo "${ff[*]}")
  python3 "$peers/cpu_sample.py" "$secs" "ffmpeg=$ffpids" "loopcam=$lc" >"$tmp/cpu.$n.json"
  wait "${pids[@]: -2}" 2>/dev/null || true
  kill "${ff[@]}" "$lc" 2>/dev/null || true
  wait "${ff[@]}" "$lc" 2>/dev/null || true
  python3 - "$tmp" "$n" "$clip" <<'PY'
import json, subprocess, sys, collections
tmp, n, clip = sys.argv[1], int(sys.argv[2]), sys.argv[3]
cpu = json.load(open(f"{tmp}/cpu.{n}.json"))
rate = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                       "stream=r_frame_rate", "-of", "csv=p=0", clip], capture_output=True, text=True).stdout.strip()
num, den = (int(x) for x in rate.split("/"))
frame_ms = 1000 * den / num
for who, name in (("ff", "ffmpeg"), ("lc", "loopcam")):
    kinds, pk = {}, collections.defaultdict(list)
    for line in open(f"{tmp}/{who}.{n}.csv"):
        f = line.strip().split(",")
        if f[0] == "stream": kinds[f[1]] = f[2]
    for line in open(f"{tmp}/{who}.{n}.csv"):
        f = line.strip().split(",")
        if f[0] == "packet" and f[2] != "N/A": pk[kinds.get(f[1], "?")].append((int(f[3]), int(f[2])))
    back = {k: sum(1 for a, b in zip(v, v[1:]) if b[0] <= a[0]) for k, v in pk.items()}
    pts = sorted(p for _, p in pk.get("video", []))
    steps = [b - a for a, b in zip(pts, pts[1:])]
    odd = sum(1 for s in steps if abs(s - frame_ms) > 1)
    span = (pts[-1] - pts[0]) / 1000 if pts else 0
    c = cpu[name]
    warn = sum(1 for l in open(f"{tmp}/{who}.{n}.err") if "monoton" in l)
    print(f"{name:8} streams={n} cpu={c['cpu_pct']}% rss={c['rss_mb']}MB procs={c['procs']} | read {span:.1f} s: "
          f"backward/dup DTS video={back.get('video', 0)} audio={back.get('audio', 0)}, "
          f"video PTS steps off the frame step={odd} (e.g. {sorted(set(s for s in steps if abs(s - frame_ms) > 1))[:4]}), "
          f"ffprobe 'monotonic' warnings={warn}")
PY
}

run 1
run "$streams"
