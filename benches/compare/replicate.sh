#!/usr/bin/env bash
# Replication side by side with rsync --bwlimit, same store, same cap, same run (docs/benchmarks.md).
# A store of 12 ten-second segments of one camera (about 5 MiB) whose event footage is the last
# two segments in name order (an event that just happened). Measures, for each tool: the time
# until every event segment is complete on the target, the total time, bytes sent and CPU.
# Usage: benches/compare/replicate.sh [CAP_MBIT]   (default 8; needs rsync and a profiling-profile segstore)
set -euo pipefail
cd "$(dirname "$0")/../.."
cap=${1:-8}
S=${SEGSTORE:-target/profiling/segstore}
[ -x "$S" ] || cargo build --profile profiling -q -p segstore
w=$(mktemp -d)
trap 'rm -rf "$w"' EXIT
export RUST_LOG=warn
$S import --store "$w/st" --camera front --loops 12 --segment 10s --start 2026-11-25T12:00:00Z
$S tag --store "$w/st" --camera front --from 2026-11-25T12:01:41Z --to 2026-11-25T12:01:59Z --tag event
mapfile -t events < <(cd "$w/st" && ls front/2026-11-25/*.mp4 | tail -2)
bytes=$(du -cb "$w"/st/front/2026-11-25/*.mp4 | tail -1 | cut -f1)
now() { date +%s.%N; }

# rsync: --bwlimit is in KiB/s.
kib=$(python3 -c "print(round($cap * 1e6 / 8 / 1024))")
t0=$(now)
/usr/bin/time -f "%U %S" -o "$w/rsync.cpu" rsync -a --stats --bwlimit="$kib" "$w/st/" "$w/rsync/" > "$w/rsync.out" &
pid=$!
t_ev=""
while kill -0 "$pid" 2>/dev/null; do
  if [ -z "$t_ev" ] && [ -f "$w/rsync/${events[0]}" ] && [ -f "$w/rsync/${events[1]}" ]; then
    t_ev=$(now)
  fi
  sleep 0.02
done
wait "$pid"
t1=$(now)
[ -n "$t_ev" ] || t_ev=$t1
rs_sent=$(grep "Total bytes sent" "$w/rsync.out" | tr -dc 0-9)
read -r ru rs < "$w/rsync.cpu"

# segstore replicate to a directory, same cap.
t2=$(now)
/usr/bin/time -f "%U %S" -o "$w/seg.cpu" $S replicate --store "$w/st" --to "$w/rep" --upstream "${cap}Mbit" > "$w/seg.out"
t3=$(now)
read -r su ss < "$w/seg.cpu"
summary=$(tail -1 "$w/seg.out")
seg_sent=$(echo "$summary" | sed -E 's/.* in ([0-9]+) bytes sent.*/\1/')
seg_ev=$(echo "$summary" | sed -E 's/.*event footage safe after ([0-9.]+) s.*/\1/')
python3 - "$cap" "$bytes" "$t0" "$t_ev" "$t1" "$rs_sent" "$ru" "$rs" "$t2" "$t3" "$seg_sent" "$seg_ev" "$su" "$ss" <<'PY'
import sys
cap, nbytes, t0, tev, t1, rs_sent, ru, rs, t2, t3, seg_sent, seg_ev, su, ss = sys.argv[1:]
f = float
print(f"store {int(nbytes)} bytes of segments, cap {cap} Mbit/s")
print(f"{'tool':<20}{'events safe s':>14}{'total s':>9}{'sent bytes':>12}{'Mbit/s':>8}{'CPU s':>7}")
rt, st = f(t1) - f(t0), f(t3) - f(t2)
print(f"{'rsync --bwlimit':<20}{f(tev)-f(t0):>14.2f}{rt:>9.2f}{int(rs_sent):>12}{int(rs_sent)*8e-6/rt:>8.2f}{f(ru)+f(rs):>7.2f}")
print(f"{'segstore replicate':<20}{f(seg_ev):>14.2f}{st:>9.2f}{int(seg_sent):>12}{int(seg_sent)*8e-6/st:>8.2f}{f(su)+f(ss):>7.2f}")
print(f"events safe {(f(tev)-f(t0))/max(f(seg_ev),1e-3):.1f}x sooner with segstore replicate")
PY
