#!/usr/bin/env bash
# Makes the loop corpus: short clips of the shapes users bring to loopcam, made with stock ffmpeg
# (libx264, libx265, native AAC, G.711), over which `.ci/run` checks that every clip loops
# seamlessly, offline (`loopcam check`) and over the wire (ffprobe across three seams over
# RTSP/TCP, RTSP/UDP for every other clip, RTMP through nginx-rtmp for H.264):
# bins/loopcam/tests/corpus.rs. The clips are not committed; this script is.
#
# Usage: testdata/corpus.sh [OUTDIR]      (default: target/corpus; prints the matrix, then makes
#                                          every clip missing from OUTDIR)
#        testdata/corpus.sh --list        (the matrix only)
#
# The matrix is pairwise: every pair of values of any two factors below appears in at least one
# clip (38 rows, chosen greedily; audio "none" makes channels/end/length moot):
#   codec   h264, h265
#   fps     24, 25, 30000/1001, 12.5, vfr (30 fps with every 4th frame dropped: steps of 1 and 2
#           frames)
#   audio   none, AAC at 8, 16, 44.1, 48 kHz, G.711 mu-law / A-law at 8 kHz (in .mov, as ffmpeg
#           writes it: loopcam skips the track until G.711 support lands, and `loopcam check`
#           reports it as not served)
#   ch      mono, stereo
#   end     whole: the audio is a whole number of frames (AAC 1,024 samples, G.711 20 ms);
#           partial: half a frame more (the edit list trims the last AAC frame)
#   len     same as the video, short (0.5 s shorter: a gap at each seam), long (0.4 s longer:
#           cut at each seam)
#   bf      B-frames: 0 or 3
#   gop     closed (IDR every second) or open (x265 CRA with RASL leading pictures; x264
#           open-gop=1 recovery points); keyint is a multiple of 4 for open GOPs so that three
#           B-frames precede each keyframe
# Four more clips (EXTRAS) add shapes outside those factors: 10-bit H.265, one keyframe in the
# whole clip, audio starting 0.5 s late (an empty edit), a file cut inside a GOP.
# Clips last at most 3 s at 320x180 (every fifth at 640x360).
set -euo pipefail
cd "$(dirname "$0")/.."

ROWS=(
  # codec fps audio ch end len bf gop
  "h265 25 aac44100 1 whole long 0 open"
  "h264 vfr alaw 2 partial same 0 closed"
  "h264 24 ulaw 1 whole short 3 closed"
  "h265 12.5 aac16000 2 partial short 3 open"
  "h265 30000/1001 aac48000 2 whole same 3 closed"
  "h264 30000/1001 aac8000 1 partial long 0 open"
  "h265 vfr aac8000 2 whole long 3 closed"
  "h265 24 ulaw 2 partial same 0 open"
  "h264 12.5 aac16000 1 whole same 0 closed"
  "h264 25 aac48000 2 partial short 0 open"
  "h265 vfr alaw 1 whole short 3 open"
  "h264 30000/1001 aac44100 2 partial short 3 closed"
  "h265 25 none - - - 3 closed"
  "h264 12.5 none - - - 0 open"
  "h264 12.5 aac48000 1 partial long 0 open"
  "h264 24 aac16000 2 whole long 0 open"
  "h264 25 aac8000 1 partial same 3 open"
  "h265 12.5 ulaw 1 whole long 0 open"
  "h265 25 alaw 1 partial long 3 open"
  "h265 12.5 aac44100 1 partial same 3 open"
  "h264 12.5 aac8000 1 partial short 0 closed"
  "h264 30000/1001 aac16000 2 whole same 3 open"
  "h265 24 none - - - 3 open"
  "h265 24 aac8000 2 whole short 3 open"
  "h264 25 aac16000 2 whole short 3 closed"
  "h265 vfr ulaw 1 partial short 0 open"
  "h265 30000/1001 none - - - 0 closed"
  "h265 30000/1001 alaw 2 partial same 3 open"
  "h265 vfr aac44100 2 whole same 0 open"
  "h264 30000/1001 ulaw 1 partial short 0 closed"
  "h265 25 ulaw 1 partial same 3 open"
  "h265 12.5 alaw 2 partial long 3 closed"
  "h265 24 aac44100 1 partial long 0 closed"
  "h265 24 alaw 1 whole long 0 closed"
  "h265 vfr aac48000 1 whole short 0 closed"
  "h264 24 aac48000 1 whole short 3 closed"
  "h265 vfr aac16000 1 whole same 0 open"
  "h264 vfr none - - - 3 open"
)

# name codec fps audio ch end len bf gop -> the clip's file name.
clip_name() {
  local i=$1 codec=$2 fps=$3 audio=$4 ch=$5 end=$6 len=$7 bf=$8 gop=$9
  local f=${fps/30000\/1001/29.97} a
  case $audio in
    none) a=noaudio ;;
    aac*) a="aac$((${audio#aac} / 1000))k${ch}ch_${end}_${len}" ;;
    *) a="${audio}${ch}ch_${end}_${len}" ;;
  esac
  local ext=mp4
  case $audio in ulaw | alaw) ext=mov ;; esac
  printf 'c%02d_%s_%sfps_%s_bf%s_%s.%s' "$i" "$codec" "$f" "$a" "$bf" "$gop" "$ext"
}

list() {
  printf '%-58s %-5s %-10s %-9s %-3s %-8s %-6s %-3s %s\n' clip codec fps audio ch end length bf gop
  local i=0 row
  for row in "${ROWS[@]}"; do
    i=$((i + 1))
    # shellcheck disable=SC2086
    set -- $row
    local note=""
    case $3 in ulaw | alaw) note="  (G.711: not served until supported)" ;; esac
    printf '%-58s %-5s %-10s %-9s %-3s %-8s %-6s %-3s %s%s\n' \
      "$(clip_name "$i" "$@")" "$1" "$2" "$3" "$4" "$5" "$6" "$7" "$8" "$note"
  done
}

# make OUT i codec fps audio ch end len bf gop
make_clip() {
  local out=$1 i=$2 codec=$3 fps=$4 audio=$5 ch=$6 end=$7 len=$8 bf=$9 gop=${10}
  local size=320x180
  [ $((i % 5)) -eq 0 ] && size=640x360
  local vin="" vf=() frames secs key
  case $fps in
    vfr)
      vin="testsrc2=size=$size:rate=30:duration=3"
      vf=(-vf "select='not(eq(mod(n\,4)\,3))'" -fps_mode vfr -video_track_timescale 90000)
      secs=3 key=30
      ;;
    24) frames=72 secs=3 key=24 ;;
    25) frames=75 secs=3 key=25 ;;
    30000/1001) frames=89 secs=$(awk 'BEGIN{print 89*1001/30000}') key=30 ;;
    12.5) frames=36 secs=2.88 key=13 ;;
    *) echo "unknown fps $fps" >&2; return 1 ;;
  esac
  if [ "$fps" != vfr ]; then
    # A filter ends the stream (an output -frames:v would end the whole file, audio included).
    vin="testsrc2=size=$size:rate=$fps"
    vf=(-vf "trim=end_frame=$frames")
  fi
  if [ "$gop" = open ]; then
    # A multiple of 4: with mini-GOPs of 3 B-frames, three of them precede each keyframe.
    key=$(((key + 3) / 4 * 4))
  fi
  local venc
  case $codec in
    h264)
      local open=""
      [ "$gop" = open ] && open=":open-gop=1"
      venc=(-c:v libx264 -preset veryfast -crf 36 -pix_fmt yuv420p
        -x264-params "keyint=$key:min-keyint=$key:scenecut=0:bframes=$bf:b-adapt=0$open")
      ;;
    h265)
      local open=0
      [ "$gop" = open ] && open=1
      venc=(-c:v libx265 -preset veryfast -crf 36 -tag:v hvc1
        -x265-params "log-level=error:keyint=$key:min-keyint=$key:scenecut=0:bframes=$bf:b-adapt=0:open-gop=$open")
      ;;
  esac
  local ain=() aenc=()
  if [ "$audio" != none ]; then
    local rate frame
    case $audio in
      aac*) rate=${audio#aac} frame=1024 aenc=(-c:a aac -b:a 32k) ;;
      ulaw) rate=8000 frame=160 aenc=(-c:a pcm_mulaw) ;;
      alaw) rate=8000 frame=160 aenc=(-c:a pcm_alaw) ;;
    esac
    local delta=0
    case $len in short) delta=-0.5 ;; long) delta=0.4 ;; esac
    # Samples: the video's duration (+ delta) in whole frames, plus half a frame if partial.
    local samples
    samples=$(awk -v s="$secs" -v d="$delta" -v r="$rate" -v f="$frame" -v e="$end" 'BEGIN{
      n = int((s + d) * r / f + 0.5) * f; if (e == "partial") n = n - f / 2; print n }')
    ain=(-f lavfi -i "sine=frequency=440:sample_rate=$rate")
    aenc+=(-af "atrim=end_sample=$samples" -ac "$ch")
  fi
  local mov=()
  case $out in *.mp4) mov=(-movflags +faststart) ;; esac
  ffmpeg -v error -nostdin -y -f lavfi -i "$vin" "${ain[@]}" "${vf[@]}" \
    "${venc[@]}" "${aenc[@]}" "${mov[@]}" "$out.tmp.${out##*.}"
  mv "$out.tmp.${out##*.}" "$out"
}

# Shapes outside the pairwise factors, each made by one command (OUT is the file to write).
EXTRAS=(
  "x01_h265_10bit_25fps_aac48k2ch.mp4|10-bit H.265 (Main 10)|-f lavfi -i testsrc2=size=320x180:rate=25 -f lavfi -i sine=frequency=440:sample_rate=48000 -vf trim=end_frame=75 -af atrim=end_sample=144000 -c:v libx265 -preset veryfast -crf 36 -pix_fmt yuv420p10le -tag:v hvc1 -x265-params log-level=error:keyint=25 -c:a aac -ac 2 -b:a 32k -movflags +faststart OUT"
  "x02_h264_25fps_onegop_aac16k1ch.mp4|one keyframe in 3 s (a long GOP)|-f lavfi -i testsrc2=size=320x180:rate=25 -f lavfi -i sine=frequency=440:sample_rate=16000 -vf trim=end_frame=75 -af atrim=end_sample=48000 -c:v libx264 -preset veryfast -crf 36 -pix_fmt yuv420p -x264-params keyint=75:min-keyint=75:scenecut=0 -c:a aac -ac 1 -b:a 24k -movflags +faststart OUT"
  "x03_h264_25fps_aac44k1ch_starts_0.5s_late.mp4|audio starting 0.5 s after the video (an empty edit)|-f lavfi -i testsrc2=size=320x180:rate=25 -itsoffset 0.5 -f lavfi -i sine=frequency=440:sample_rate=44100 -vf trim=end_frame=75 -af atrim=end_sample=110250 -c:v libx264 -preset veryfast -crf 36 -pix_fmt yuv420p -g 25 -c:a aac -ac 1 -b:a 32k -movflags +faststart OUT"
  "x04_h264_25fps_aac16k1ch_cut_mid_gop.mp4|a file cut inside a GOP: the first 10 video packets dropped, the keyframe among them|-f lavfi -i testsrc2=size=320x180:rate=25 -f lavfi -i sine=frequency=440:sample_rate=16000 -vf trim=end_frame=75 -af atrim=end_sample=48000 -c:v libx264 -preset veryfast -crf 36 -pix_fmt yuv420p -g 25 -bf 0 -bsf:v noise=drop=lt(n\\,10) -c:a aac -ac 1 -b:a 24k OUT"
)

list_extras() {
  local e
  for e in "${EXTRAS[@]}"; do
    printf '%-58s %s\n' "${e%%|*}" "$(cut -d'|' -f2 <<<"$e")"
  done
}

if [ "${1:-}" = --list ]; then
  list
  list_extras
  exit 0
fi
outdir=${1:-target/corpus}
mkdir -p "$outdir"
list
command -v ffmpeg >/dev/null || { echo "corpus.sh: ffmpeg is missing" >&2; exit 1; }
i=0
made=0
for row in "${ROWS[@]}"; do
  i=$((i + 1))
  # shellcheck disable=SC2086
  set -- $row
  name=$(clip_name "$i" "$@")
  [ -s "$outdir/$name" ] && continue
  make_clip "$outdir/$name" "$i" "$@"
  made=$((made + 1))
done
list_extras
for e in "${EXTRAS[@]}"; do
  name=${e%%|*}
  [ -s "$outdir/$name" ] && continue
  args=${e##*|}
  # shellcheck disable=SC2086
  ffmpeg -v error -nostdin -y ${args/OUT/$outdir/$name.tmp.mp4}
  mv "$outdir/$name.tmp.mp4" "$outdir/$name"
  made=$((made + 1))
done
echo "corpus.sh: $((${#ROWS[@]} + ${#EXTRAS[@]})) clips in $outdir ($made made now)"
