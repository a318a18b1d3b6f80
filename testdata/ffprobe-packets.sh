#!/usr/bin/env bash
# Writes FILE.packets next to each clip: ffprobe's packet list (stream, pts, dts, duration, size,
# flags) that crates/media/tests/media.rs compares the demuxer against with no ffmpeg installed.
# For .mov clips (G.711) the file offset `pos` comes before the flags: ffmpeg cuts MOV PCM into
# one packet per chunk, the demuxer into 20 ms frames, so the test compares the bytes at those
# offsets and the total duration rather than packet boundaries.
# Usage: testdata/ffprobe-packets.sh [CLIP...]   (default: every .mp4/.mov here and in cuts/, and the
# embedded sample)
set -euo pipefail
cd "$(dirname "$0")"
clips=("$@")
[ ${#clips[@]} -gt 0 ] || clips=(*.mp4 *.mov cuts/*.mp4 ../crates/media/testdata/sample.mp4)
for clip in "${clips[@]}"; do
  case "$clip" in
  *.mov) fields=stream_index,pts,dts,duration,size,pos,flags columns=1-7 ;;
  *) fields=stream_index,pts,dts,duration,size,flags columns=1-6 ;;
  esac
  ffprobe -v error -show_entries packet=$fields -of csv=p=0 "$clip" |
    cut -d, -f$columns >"$clip.packets"
  echo "$clip.packets: $(wc -l <"$clip.packets") packets"
done
