#!/usr/bin/env python3
"""Delivery jitter of one RTSP/TCP session: for every video frame (RTP marker bit), arrival time
minus the frame's RTP time, both in ms, relative to the smallest such offset in the run. A
server that sends each frame on time shows a spread near 0; one whose frames wait in a socket
(Nagle behind a delayed ACK, a busy event loop) shows the wait in p99/max.

usage: rtsp_jitter.py URL SECONDS [SKIP_S=8]   → one JSON line {frames, p50_ms, p99_ms, max_ms}
"""
import json
import socket
import sys
import time
from urllib.parse import urlparse

url, secs = sys.argv[1], float(sys.argv[2])
# A late joiner first gets the current GOP at once (up to a whole loop of a clip with one
# keyframe per loop): judge the steady state only, from SKIP_S seconds after PLAY.
SKIP_S = float(sys.argv[3]) if len(sys.argv) > 3 else 8.0
u = urlparse(url)
s = socket.create_connection((u.hostname, u.port or 554))
buf = b""


def recv_more():
    global buf
    d = s.recv(65536)
    if not d:
        raise SystemExit("server closed")
    buf += d


def request(cseq, method, target, extra=""):
    global buf
    s.sendall(f"{method} {target} RTSP/1.0\r\nCSeq: {cseq}\r\n{extra}\r\n".encode())
    while b"\r\n\r\n" not in buf:
        recv_more()
    head, buf = buf.split(b"\r\n\r\n", 1)
    headers = {}
    for line in head.decode(errors="replace").split("\r\n")[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    n = int(headers.get("content-length", 0))
    while len(buf) < n:
        recv_more()
    body, buf = buf[:n], buf[n:]
    return headers, body.decode(errors="replace")


_, sdp = request(1, "DESCRIBE", url, "Accept: application/sdp\r\n")
ctrl, video = None, False
for ln in sdp.splitlines():
    if ln.startswith("m="):
        video = ln.startswith("m=video")
    if video and ln.startswith("a=control:") and ctrl is None:
        ctrl = ln[len("a=control:"):].strip()
track = ctrl if ctrl.startswith("rtsp://") else url.rstrip("/") + "/" + ctrl
h, _ = request(2, "SETUP", track, "Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n")
session = h["session"].split(";")[0]
request(3, "PLAY", url, f"Session: {session}\r\n")

started = time.monotonic()
offsets, wrap, prev, end = [], 0, None, started + secs
while time.monotonic() < end:
    while len(buf) < 4:
        recv_more()
    if buf[0:1] != b"$":  # an RTSP message from the server: skip its header
        while b"\r\n\r\n" not in buf:
            recv_more()
        buf = buf.split(b"\r\n\r\n", 1)[1]
        continue
    ch, n = buf[1], int.from_bytes(buf[2:4], "big")
    while len(buf) < 4 + n:
        recv_more()
    pkt, buf = buf[4:4 + n], buf[4 + n:]
    now = time.monotonic()
    if ch != 0 or not pkt[1] & 0x80:
        continue
    ts = int.from_bytes(pkt[4:8], "big")
    if prev is not None and ts < prev and prev - ts > 1 << 31:
        wrap += 1 << 32
    prev = ts
    if now - started >= SKIP_S:
        offsets.append(now * 1000 - (ts + wrap) / 90.0)

base = min(offsets)
d = sorted(x - base for x in offsets)
q = lambda p: round(d[min(len(d) - 1, int(p * len(d)))], 2)
print(json.dumps({"frames": len(d), "p50_ms": q(0.5), "p99_ms": q(0.99), "max_ms": round(d[-1], 2)}))
