#!/usr/bin/env python3
"""The "load held" figure (docs/benchmarks.md, hostile peers): a well-behaved client's latency
and the server's RSS, while N hostile connections are held open against the same server.

usage: load_held.py PROTO ADDR [--hostile N] [--kind KIND] [--tls-addr ADDR] [--secs S]
                    [--pid PID] [--path PATH]
  PROTO  smtp | http | rtsp
  KIND   slowloris: a request/command line sent one byte every few seconds, never finished
         trickle:   smtp: DATA begun and fed a line every few seconds; http/rtsp: header lines
                    fed one at a time, the header never ended
         tls:       a TCP connection to --tls-addr that sends half a ClientHello and stops
  --path  http: the URL path to GET (a tile); rtsp: the stream path (`/sample`)
Hostile connections come from 127.0.0.2, the well-behaved client from 127.0.0.3; a hostile
connection the server closes is opened again, so N stay held (the count actually open is
reported). Prints one JSON object: latency p50/p99/max in ms of the legitimate requests, how many
succeeded and failed, hostile connections open at the end and reopened, and the server's RSS
(VmRSS of --pid) in MB. The client's own CPU time is printed too, so a reader can see it was not
the bottleneck.
"""
import argparse
import asyncio
import json
import os
import resource
import socket
import sys
import time

ATTACKER = "127.0.0.2"
CAMERA = "127.0.0.3"


def parse_addr(text):
    host, port = text.rsplit(":", 1)
    return host, int(port)


async def connect(addr, local):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    # No Nagle: the measured latency is the server's, not a delayed ACK's.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((local, 0))
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, addr)
    return await asyncio.open_connection(sock=sock)


async def read_smtp_reply(reader):
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("closed")
        if len(line) >= 4 and line[3:4] == b" ":
            return line


# --- well-behaved clients: one request each, timed ---------------------------------------------

async def smtp_request(addr, _path):
    reader, writer = await connect(addr, CAMERA)
    try:
        await read_smtp_reply(reader)
        for cmd in (b"EHLO cam\r\n", b"MAIL FROM:<cam@x>\r\n", b"RCPT TO:<door@nvr>\r\n", b"DATA\r\n"):
            writer.write(cmd)
            await read_smtp_reply(reader)
        writer.write(b"Subject: Motion Detected\r\n\r\nEVENT TYPE: Motion Detected\r\n.\r\n")
        reply = await read_smtp_reply(reader)
        if not reply.startswith(b"250"):
            raise ConnectionError(reply.decode(errors="replace"))
        writer.write(b"QUIT\r\n")
    finally:
        writer.close()


async def http_request(addr, path):
    reader, writer = await connect(addr, CAMERA)
    try:
        writer.write(b"GET %s HTTP/1.1\r\nHost: %s:%d\r\nConnection: close\r\n\r\n"
                     % (path.encode(), addr[0].encode(), addr[1]))
        status = await reader.readline()
        if not status.startswith(b"HTTP/1.1 200"):
            raise ConnectionError(status.decode(errors="replace"))
        await reader.read()
    finally:
        writer.close()


async def rtsp_request(addr, path):
    """DESCRIBE, SETUP (interleaved), PLAY, then the first interleaved RTP packet."""
    reader, writer = await connect(addr, CAMERA)
    url = "rtsp://%s:%d%s" % (addr[0], addr[1], path)

    async def exchange(text):
        writer.write(text.encode())
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"RTSP/1.0 200"):
            raise ConnectionError(head.split(b"\r\n")[0].decode(errors="replace"))
        headers = {}
        for line in head.decode(errors="replace").split("\r\n")[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        return headers, body

    try:
        _, sdp = await exchange("DESCRIBE %s RTSP/1.0\r\nCSeq: 1\r\nAccept: application/sdp\r\n\r\n" % url)
        control = None
        for line in sdp.decode(errors="replace").split("\r\n"):
            if line.startswith("a=control:") and line != "a=control:*":
                control = line[len("a=control:"):]
                break
        track = control if control and control.startswith("rtsp") else url + "/" + (control or "")
        headers, _ = await exchange(
            "SETUP %s RTSP/1.0\r\nCSeq: 2\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\r\n" % track)
        session = headers.get("session", "").split(";")[0]
        await exchange("PLAY %s RTSP/1.0\r\nCSeq: 3\r\nSession: %s\r\nRange: npt=now-\r\n\r\n" % (url, session))
        while True:
            first = await reader.readexactly(1)
            if first == b"$":
                await reader.readexactly(3)
                return
    finally:
        writer.close()


# --- hostile connections, each held forever (reopened when the server cuts it) -----------------

def hostile_script(proto, kind):
    if kind == "slowloris":
        line = {"smtp": b"EHLO " + b"x" * 200, "http": b"GET /" + b"x" * 200,
                "rtsp": b"OPTIONS rtsp://x/" + b"x" * 200}[proto]
        return [line[i:i + 1] for i in range(len(line))]
    if kind == "trickle":
        if proto == "smtp":
            return ([b"EHLO x\r\n", b"MAIL FROM:<a@b>\r\n", b"RCPT TO:<c@d>\r\n", b"DATA\r\n"]
                    + [b"x" * 60 + b"\r\n"] * 10000)
        first = {"http": b"GET / HTTP/1.1\r\n", "rtsp": b"OPTIONS rtsp://x/ RTSP/1.0\r\n"}[proto]
        return [first] + [b"X-A: b\r\n"] * 10000
    if kind == "tls":
        return [b"\x16\x03\x01\x02"]
    raise SystemExit("unknown kind " + kind)


async def hold(addr, script, interval, stats, stop):
    while not stop.is_set():
        try:
            reader, writer = await connect(addr, ATTACKER)
        except OSError:
            await asyncio.sleep(0.5)
            continue
        stats["open"] += 1
        try:
            for piece in script:
                writer.write(piece)
                await writer.drain()
                try:
                    data = await asyncio.wait_for(reader.read(4096), interval)
                    if data == b"":
                        break
                except asyncio.TimeoutError:
                    pass
                if stop.is_set():
                    break
            else:
                await asyncio.wait_for(reader.read(), 3600)
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError):
            pass
        finally:
            stats["open"] -= 1
            writer.close()
        if not stop.is_set():
            stats["reopened"] += 1
            # Not a tight loop: a refused attacker comes back after a second, as a real one
            # would, and the load generator stays cheap.
            await asyncio.sleep(1)


def rss_mb(pid):
    if not pid:
        return None
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return None


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("proto", choices=["smtp", "http", "rtsp"])
    ap.add_argument("addr")
    ap.add_argument("--hostile", type=int, default=0)
    ap.add_argument("--kind", default="slowloris")
    ap.add_argument("--tls-addr")
    ap.add_argument("--secs", type=float, default=20)
    ap.add_argument("--interval", type=float, default=5, help="seconds between hostile bytes")
    ap.add_argument("--pid", type=int)
    ap.add_argument("--path", default="/")
    ap.add_argument("--attack-only", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    addr = parse_addr(a.addr)
    target = parse_addr(a.tls_addr) if a.kind == "tls" else addr
    request = {"smtp": smtp_request, "http": http_request, "rtsp": rtsp_request}[a.proto]
    stats = {"open": 0, "reopened": 0}
    stop = asyncio.Event()
    script = hostile_script(a.proto, a.kind)
    if a.attack_only:
        # The attacker process: hold the connections until killed, report the count on stdout.
        for _ in range(a.hostile):
            asyncio.create_task(hold(target, script, a.interval, stats, stop))
            await asyncio.sleep(0.002)
        while True:
            await asyncio.sleep(1)
            print(json.dumps(stats), flush=True)
    attacker = None
    if a.hostile:
        # Attackers in a process of their own, so their work never delays the measured client.
        attacker = await asyncio.create_subprocess_exec(
            sys.executable, os.path.abspath(__file__), *sys.argv[1:], "--attack-only",
            stdout=asyncio.subprocess.PIPE)
        await asyncio.sleep(2 + a.hostile * 0.003)  # let them all connect
    lat, ok, failed, errors = [], 0, 0, {}
    t_end = time.monotonic() + a.secs
    while time.monotonic() < t_end:
        t0 = time.monotonic()
        try:
            await asyncio.wait_for(request(addr, a.path), 30)
            lat.append((time.monotonic() - t0) * 1000)
            ok += 1
        except Exception as e:  # noqa: BLE001 - every failure is counted and reported
            failed += 1
            errors[type(e).__name__ + ": " + str(e)[:80]] = errors.get(type(e).__name__ + ": " + str(e)[:80], 0) + 1
        await asyncio.sleep(0.05)
    rss = rss_mb(a.pid)
    attacker_cpu = None
    if attacker:
        line = b""
        while True:  # the attacker's latest report
            try:
                line = await asyncio.wait_for(attacker.stdout.readline(), 0.1)
            except asyncio.TimeoutError:
                break
        stats = json.loads(line) if line else stats
        with open("/proc/%d/stat" % attacker.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
            attacker_cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        attacker.kill()
        await attacker.wait()
    held = stats["open"]
    lat.sort()
    pct = lambda p: round(lat[min(len(lat) - 1, int(p * len(lat)))], 2) if lat else None
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({
        "proto": a.proto, "kind": a.kind if a.hostile else "none", "hostile": a.hostile,
        "hostile_open_at_end": held, "hostile_reopened": stats["reopened"],
        "ok": ok, "failed": failed, "errors": errors,
        "p50_ms": pct(0.5), "p99_ms": pct(0.99), "max_ms": round(lat[-1], 2) if lat else None,
        "server_rss_mb": round(rss, 1) if rss else None,
        "client_cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "attacker_cpu_s": round(attacker_cpu, 2) if attacker_cpu is not None else None,
    }))


if __name__ == "__main__":
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(main())
