#!/usr/bin/env bash
# Whole-process SMTP load comparison for docs/benchmarks.md (## nvrkit-smtp): Postfix's smtp-source
# drives each server in turn, same run, same machine, loopback only. Not part of CI.
#
# Peers (installed outside the repo, never by CI):
#   apt-get download postfix && dpkg -x postfix_*.deb /tmp/pf      # smtp-source and smtp-sink
#   cd /tmp/peers && npm install simplesmtp smtp-server              # node peers
#   python3 -m venv /tmp/peers/venv && /tmp/peers/venv/bin/pip install aiosmtpd
#   cargo build --profile profiling -p camevents
# Run from the repository root: bash benches/compare/smtp_load.sh [ROUNDS]
set -euo pipefail
PF=${PF:-/tmp/pf}
PEERS=${PEERS:-/tmp/peers}
CAMEVENTS=${CAMEVENTS:-target/profiling/camevents}
ROUNDS=${1:-1}
export LD_LIBRARY_PATH=$PF/usr/lib/postfix
SOURCE=$PF/usr/sbin/smtp-source
SINK=$PF/usr/sbin/smtp-sink
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

cat >"$WORK/simplesmtp.js" <<'JS'
// The library of the classic camera recipe: accept every mail, read nothing.
const simplesmtp = require("simplesmtp");
const server = simplesmtp.createSimpleServer({ SMTPBanner: "simplesmtp", disableDNSValidation: true }, (req) => {
  req.on("data", () => {});
  req.on("end", () => req.accept());
});
server.listen(+process.argv[2], "127.0.0.1");
JS
cat >"$WORK/smtp-server.js" <<'JS'
// nodemailer's smtp-server with a null onData (it holds each new connection 100 ms: early-talker check).
const { SMTPServer } = require("smtp-server");
new SMTPServer({ authOptional: true, disabledCommands: ["STARTTLS"], logger: false,
  onData(stream, session, cb) { stream.on("data", () => {}); stream.on("end", () => cb()); },
}).listen(+process.argv[2], "127.0.0.1");
JS

# A Hikvision-style alarm mail with three 100 KB JPEG-sized attachments, LF line endings
# (smtp-source -F appends CR to each line).
python3 - "$WORK/camera.eml" <<'PY'
import base64, os, sys
parts = []
for i in range(3):
    b64 = base64.encodebytes(os.urandom(100_000)).decode()
    parts.append(f'--B\nContent-Type: image/jpeg; name="ch01_{i}.jpg"\nContent-Transfer-Encoding: base64\n'
                 f'Content-Disposition: attachment; filename="ch01_{i}.jpg"\n\n{b64}')
mail = ("From: ipc@cams.example\nTo: garage@nvr\nSubject: IPCamera: Motion Detected\nX-Mailer: HIKMailer\n"
        "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"B\"\n\n--B\nContent-Type: text/plain\n\n"
        "EVENT TYPE: Motion Detected\nEVENT TIME: 2015-05-22,14:52:18\nIPC NAME: Garage\nCHANNEL NUMBER: 1\n\n"
        + "".join(parts) + "--B--\n")
open(sys.argv[1], "w").write(mail)
PY

port=25250
wait_port() { for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hwm_kb() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }

# bench NAME SESSIONS COUNT SOURCE_ARGS -- SERVER COMMAND...
bench() {
  local name=$1 sessions=$2 count=$3 src_args=$4
  shift 5
  port=$((port + 1))
  local cmd=("${@//PORT/$port}")
  "${cmd[@]}" >/dev/null 2>"$WORK/server.err" &
  local pid=$!
  wait_port "$port" || { echo "$name: server did not start"; cat "$WORK/server.err"; return 0; }
  local t0 c0 t1 c1
  c0=$(cpu_ticks "$pid")
  t0=$(date +%s.%N)
  # shellcheck disable=SC2086
  timeout 600 "$SOURCE" -s "$sessions" -m "$count" $src_args -f cam@x.local -t nvr@x.local "127.0.0.1:$port"
  t1=$(date +%s.%N)
  c1=$(cpu_ticks "$pid")
  local hwm
  hwm=$(hwm_kb "$pid")
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  awk -v n="$name" -v s="$sessions" -v m="$count" -v a="$t0" -v b="$t1" -v c=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" -v h="$hwm" \
    'BEGIN { el = b - a; cpu = c / hz; printf "%-28s %3d sess %6d msgs %7.2f s %9.0f msg/s  cpu %6.2f s (%6.0f msg/cpu-s)  peak RSS %6.1f MB\n", n, s, m, el, m / el, cpu, (cpu > 0 ? m / cpu : 0), h / 1024 }'
}

# idle NAME COMMAND...: RSS growth per idle session (1,000 sessions that got their greeting).
idle() {
  local name=$1
  shift
  port=$((port + 1))
  local cmd=("${@//PORT/$port}")
  "${cmd[@]}" >/dev/null 2>"$WORK/server.err" &
  local pid=$!
  wait_port "$port"
  sleep 0.5
  local before after
  before=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
  python3 - "$port" "$WORK/idle.ready" <<'PY' &
import socket, sys, time
port, ready = int(sys.argv[1]), sys.argv[2]
conns = []
for _ in range(1000):
    s = socket.create_connection(("127.0.0.1", port))
    s.recv(512)
    conns.append(s)
open(ready, "w").close()
time.sleep(5)
PY
  local client=$!
  while [ ! -e "$WORK/idle.ready" ]; do sleep 0.1; done
  sleep 0.5
  after=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
  rm -f "$WORK/idle.ready"
  wait "$client"
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  echo "$name: RSS ${before} kB idle, ${after} kB with 1,000 idle sessions: $(((after - before) / 1000)) kB per session"
}

if [ -z "${SKIP_IDLE:-}" ]; then
echo "=== idle sessions"
idle "camevents" "$CAMEVENTS" --listen 127.0.0.1:PORT --no-tls --max-conns 2000 --max-conns-per-addr 2000
idle "simplesmtp 0.3 (node)" env NODE_PATH="$PEERS/node_modules" node "$WORK/simplesmtp.js" PORT
fi

for round in $(seq "$ROUNDS"); do
  echo "=== round $round: 4 KiB mails, one connection per mail"
  bench "smtp-sink (ceiling)" 50 20000 "-l 4096" -- "$SINK" -u nobody 127.0.0.1:PORT 256
  bench "camevents" 50 20000 "-l 4096" -- "$CAMEVENTS" --listen 127.0.0.1:PORT --no-tls --max-conns-per-addr 512
  bench "simplesmtp 0.3 (node)" 50 20000 "-l 4096" -- env NODE_PATH="$PEERS/node_modules" node "$WORK/simplesmtp.js" PORT
  bench "camevents" 20 5000 "-l 4096" -- "$CAMEVENTS" --listen 127.0.0.1:PORT --no-tls
  bench "smtp-server (node)" 20 1000 "-l 4096" -- env NODE_PATH="$PEERS/node_modules" node "$WORK/smtp-server.js" PORT
  bench "aiosmtpd Sink (python)" 20 5000 "-l 4096" -- "$PEERS/venv/bin/python" -m aiosmtpd -n -l 127.0.0.1:PORT -c aiosmtpd.handlers.Sink
  echo "=== round $round: 100 KiB mails"
  bench "smtp-sink (ceiling)" 20 5000 "-l 102400" -- "$SINK" -u nobody 127.0.0.1:PORT 256
  bench "camevents" 20 5000 "-l 102400" -- "$CAMEVENTS" --listen 127.0.0.1:PORT --no-tls
  bench "simplesmtp 0.3 (node)" 20 5000 "-l 102400" -- env NODE_PATH="$PEERS/node_modules" node "$WORK/simplesmtp.js" PORT
  echo "=== round $round: camera mails, 3 x 100 KB JPEG ($(wc -c <"$WORK/camera.eml") bytes)"
  bench "camevents" 20 3000 "-F $WORK/camera.eml" -- "$CAMEVENTS" --listen 127.0.0.1:PORT --no-tls
  bench "simplesmtp 0.3 (node)" 20 3000 "-F $WORK/camera.eml" -- env NODE_PATH="$PEERS/node_modules" node "$WORK/simplesmtp.js" PORT
done
