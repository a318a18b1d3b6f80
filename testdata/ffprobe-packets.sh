#!/usr/bin/env bash
# Writes FILE.packets next to each clip: ffprobe's packet list (stream, pts, dts, duration, size,
# flags) that crates/media/tests/media.rs compares the demuxer against with no ffmpeg installed.
# Usage: testdata/ffprobe-packets.sh [CLIP...]   (default: every .mp4 here and in cuts/, and the
# embedded sample)
set -euo pipefail
cd "$(dirname "$0")"
clips=("$@")
[ ${#clips[@]} -gt 0 ] || clips=(*.mp4 cuts/*.mp4 ../crates/media/testdata/sample.mp4)
for clip in "${clips[@]}"; do
  ffprobe -v error -show_entries packet=stream_index,pts,dts,duration,size,flags -of csv=p=0 "$clip" |
    cut -d, -f1-6 >"$clip.packets"
  echo "$clip.packets: $(wc -l <"$clip.packets") packets"
done
