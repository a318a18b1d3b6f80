#!/usr/bin/env bash
# The "load held" figure of docs/benchmarks.md (hostile peers): for each server, a well-behaved
# client's latency and the server's RSS with no attack, then with N hostile connections of each
# kind held open, each run ROUNDS times, all in one run of this script.
#
# usage: benches/compare/load_held.sh SERVER [N] [SECS] [ROUNDS]
#   SERVER  camevents | loopcam | tileserve (builds of the profiling profile, release code with symbols, in target/profiling; tileserve serves
#           a GDAL-made world, as benches/compare/mbtiles.sh does, or MBTILES=path)
# Caps are raised above N (and per-address caps lifted) so the server really holds N connections;
# DEFAULT_CAPS=1 keeps the binary's defaults instead (the attacker is then held to its cap).
# Prints one JSON line per run (load_held.py's), prefixed with the round.
set -euo pipefail
cd "$(dirname "$0")/../.."
server=$1
n=${2:-1000}
secs=${3:-15}
rounds=${4:-3}
bin=target/profiling/$server
[ -x "$bin" ] || { echo "build it first: cargo build --profile profiling -p $server" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
tls_port=$(free_port)
caps=()
if [ -z "${DEFAULT_CAPS:-}" ]; then
  caps=(--max-conns $((n * 4)) --max-conns-per-addr $((n * 4)))
fi
case $server in
  camevents)
    proto=smtp
    path=/
    "$bin" --listen "127.0.0.1:$port" --smtps-listen "127.0.0.1:$tls_port" "${caps[@]}" \
      >/dev/null 2>&1 &
    kinds="slowloris trickle tls"
    ;;
  loopcam)
    proto=rtsp
    path=/sample
    "$bin" --listen "127.0.0.1:$port" --no-onvif --rtsps-listen "127.0.0.1:$tls_port" "${caps[@]}" \
      >/dev/null 2>&1 &
    kinds="slowloris trickle tls"
    ;;
  tileserve)
    proto=http
    # One GDAL-made JPEG world (zooms 0..5), as benches/compare/mbtiles.sh uses, unless MBTILES.
    if [ -z "${MBTILES:-}" ]; then
      gdal_dir=$(mktemp -d)
      crates/mbtiles/testdata/make-gdal.sh "$gdal_dir" 8192 >/dev/null
      cp "$gdal_dir/raster-jpeg.mbtiles" "$gdal_dir/world.mbtiles"
      MBTILES=$gdal_dir/world.mbtiles
    fi
    mbtiles=$MBTILES
    name=$(basename "$mbtiles" .mbtiles)
    path=/$name/3/2/1
    "$bin" --listen "127.0.0.1:$port" "${caps[@]}" "$mbtiles" >/dev/null 2>&1 &
    kinds="slowloris trickle"
    ;;
  *)
    echo "unknown server $server" >&2
    exit 2
    ;;
esac
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  python3 -c "import socket; socket.create_connection(('127.0.0.1', $port)).close()" 2>/dev/null && break
  sleep 0.1
done
for round in $(seq "$rounds"); do
  echo -n "round $round: "
  python3 benches/compare/load_held.py "$proto" "127.0.0.1:$port" --secs "$secs" --pid "$pid" --path "$path"
  for kind in $kinds; do
    echo -n "round $round: "
    python3 benches/compare/load_held.py "$proto" "127.0.0.1:$port" --hostile "$n" --kind "$kind" \
      --tls-addr "127.0.0.1:$tls_port" --secs "$secs" --pid "$pid" --path "$path"
  done
done
