#!/usr/bin/env bash
# Whole-process comparison of nvrkit's MP4 demuxer with ffmpeg's, in the same run:
#   nvr probe --read-all CLIP          (open, read and check every frame)
#   ffmpeg -v error -i CLIP -c copy -f null -   (open, read every packet, no decoding)
# on the 2 s 720p test clip and on a 10-minute file made from it. Needs hyperfine and ffmpeg.
# Usage: benches/compare/media.sh   (builds nvr in the profiling profile first)
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --profile profiling -q -p nvr
nvr=target/profiling/nvr
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
clip=testdata/h264_main_720p25_aac.mp4
long=$tmp/ten-minutes.mp4
ffmpeg -v error -stream_loop 299 -i "$clip" -c copy "$long"
for f in "$clip" "$long"; do
  echo "== $(basename "$f"): $(stat -c %s "$f") bytes"
  hyperfine -N --warmup 3 --runs 30 --export-json "$tmp/r.json" \
    "$nvr probe --read-all $f" \
    "ffmpeg -v error -i $f -c copy -f null -" >/dev/null
  python3 - "$tmp/r.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
for x in r:
    print(f"  {x['command']}: mean {x['mean']*1000:.2f} ms ± {x['stddev']*1000:.2f}")
print(f"  ratio ffmpeg / nvr: {r[1]['mean'] / r[0]['mean']:.1f}x")
PY
done
