#!/usr/bin/env bash
# tileserve against martin in the same run: wrk, 2 threads, 64 keep-alive connections, random
# existing tiles of one GDAL-made JPEG MBTiles file (zooms 0..5, 1,365 tiles), every server on
# 127.0.0.1 on this machine, one after the other, twice each, with their tile caches on (both
# default to one) and off. Besides wrk's figures it prints each server's CPU time per request
# (utime + stime from /proc over the run), which is steadier than req/s on a shared machine.
# Then the RSS of tileserve idle with 10 tilesets.
#
# Needs: gdal-bin, sqlite3, wrk (Debian), and martin built outside the repo:
#   cargo install martin --version 1.14.0 --locked --no-default-features --features mbtiles --root /tmp/martin
# Usage: benches/compare/mbtiles.sh [SECONDS]   (default 15 s per run; MARTIN=path and
#   TILESERVE=path use those binaries instead of /tmp/martin and a fresh profiling build; ROUNDS=n
#   runs each server n times, interleaved, default 2)
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-15}
rounds=${ROUNDS:-2}
martin=${MARTIN:-/tmp/martin/bin/martin}
[ -x "$martin" ] || { echo "martin not found at $martin (see the header of this script)"; exit 1; }
if [ -z "${TILESERVE:-}" ]; then
  cargo build --profile profiling -q -p tileserve
fi
tileserve=${TILESERVE:-$PWD/target/profiling/tileserve}
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

crates/mbtiles/testdata/make-gdal.sh "$tmp/gdal" 8192 >/dev/null
mkdir -p "$tmp/one"
cp "$tmp/gdal/raster-jpeg.mbtiles" "$tmp/one/world.mbtiles"
file=$tmp/one/world.mbtiles
sqlite3 "$file" "SELECT '/world/' || zoom_level || '/' || tile_column || '/' || ((1 << zoom_level) - 1 - tile_row) FROM tiles" >"$tmp/paths.txt"
echo "file: $(stat -c %s "$file") bytes, $(wc -l <"$tmp/paths.txt") tiles, mean tile $(sqlite3 "$file" 'SELECT avg(length(tile_data)) FROM tiles' | cut -d. -f1) bytes"
cat >"$tmp/random.lua" <<EOF
local paths = {}
for line in io.lines("$tmp/paths.txt") do paths[#paths + 1] = line end
math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)"), 16) % 1000)
request = function() return wrk.format("GET", paths[math.random(#paths)]) end
EOF

wait_up() {
  for _ in $(seq 100); do curl -sf -o /dev/null "$1" && return 0; sleep 0.1; done
  echo "server at $1 did not come up"; exit 1
}
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

# Each server with its tile cache on (the default of both) and off (every request reads SQLite).
"$martin" --listen-addresses 127.0.0.1:3111 "$file" >"$tmp/martin.log" 2>&1 &
pids+=($!); martin_pid=$!
"$tileserve" "$file" --listen 127.0.0.1:3112 --poll 0 >"$tmp/tileserve.log" 2>&1 &
pids+=($!); ts_pid=$!
"$martin" --cache-size 0 --listen-addresses 127.0.0.1:3113 "$file" >"$tmp/martin0.log" 2>&1 &
pids+=($!); martin0_pid=$!
"$tileserve" "$file" --cache-size 0 --listen 127.0.0.1:3114 --poll 0 >"$tmp/tileserve0.log" 2>&1 &
pids+=($!); ts0_pid=$!
for port in 3111 3112 3113 3114; do wait_up "http://127.0.0.1:$port/world/0/0/0"; done
# Both answer the same bytes for the same path.
cmp <(curl -s http://127.0.0.1:3111/world/3/2/1) <(curl -s http://127.0.0.1:3112/world/3/2/1)

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
run() {
  local name=$1 port=$2 pid=$3
  local t0 t1 n rps p50 p99 errs
  t0=$(cpu_ticks "$pid")
  wrk -t2 -c64 -d"${secs}s" --latency -s "$tmp/random.lua" "http://127.0.0.1:$port" >"$tmp/wrk.txt"
  t1=$(cpu_ticks "$pid")
  n=$(awk '/requests in/ {print $1}' "$tmp/wrk.txt")
  rps=$(awk '/Requests\/sec/ {print $2}' "$tmp/wrk.txt")
  p50=$(awk '$1 == "50%" {print $2}' "$tmp/wrk.txt")
  p99=$(awk '$1 == "99%" {print $2}' "$tmp/wrk.txt")
  errs=$(grep -E 'Non-2xx|Socket errors' "$tmp/wrk.txt" | tr '\n' ' ' || true)
  printf '%-11s %10s req/s  p50 %-8s p99 %-8s server CPU %3d µs/request  RSS %s kB %s\n' \
    "$name" "$rps" "$p50" "$p99" $(((t1 - t0) * 1000000 / $(getconf CLK_TCK) / n)) "$(rss_kb "$pid")" "$errs"
  echo "$name $rps" >>"$tmp/rps.txt"
}
for round in $(seq "$rounds"); do
  run martin 3111 "$martin_pid"
  run tileserve 3112 "$ts_pid"
  run martin-C0 3113 "$martin0_pid"
  run tileserve-0 3114 "$ts0_pid"
done
awk '{s[$1] += $2; n[$1]++} END {
  printf "mean, caches on:  martin %.0f req/s, tileserve %.0f req/s, tileserve / martin = %.2f\n",
    s["martin"] / n["martin"], s["tileserve"] / n["tileserve"], s["tileserve"] / s["martin"];
  printf "mean, caches off: martin %.0f req/s, tileserve %.0f req/s, tileserve / martin = %.2f\n",
    s["martin-C0"] / n["martin-C0"], s["tileserve-0"] / n["tileserve-0"], s["tileserve-0"] / s["martin-C0"] }' "$tmp/rps.txt"
kill "$martin_pid" "$ts_pid" "$martin0_pid" "$ts0_pid"

# Idle RSS with 10 tilesets (copies of the same file under 10 names).
mkdir -p "$tmp/ten"
for i in $(seq 10); do cp "$file" "$tmp/ten/world$i.mbtiles"; done
"$tileserve" "$tmp/ten" --listen 127.0.0.1:3113 >"$tmp/ten.log" 2>&1 &
pids+=($!)
wait_up http://127.0.0.1:3113/world1/0/0/0
for i in $(seq 10); do curl -s -o /dev/null "http://127.0.0.1:3113/world$i/1/0/0"; done
sleep 2
echo "tileserve idle with 10 tilesets (each opened and read once): RSS $(rss_kb $!) kB"
