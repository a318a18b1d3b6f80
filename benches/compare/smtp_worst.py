#!/usr/bin/env python3
"""A mail built to be worst-case for extraction against an ordinary mail of the same size, through
a running camevents, while another camera mails (docs/benchmarks.md, hostile peers).

usage: smtp_worst.py CAMEVENTS [SIZE_MIB] [ROUNDS]
Starts CAMEVENTS (a profiling-profile build: release code with symbols) on a free loopback port with --max-size above SIZE, then for
each shape of worst_mail.py (after one unmeasured warm-up mail) sends one SIZE mail, ROUNDS times, and reports the time from the first
byte of DATA's content to the 250 reply (min/median/max), and meanwhile a second client's small
mails (one after another, from 127.0.0.3) and their p50/p99/max reply times, and the server's
CPU time per mail.
"""
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import worst_mail  # noqa: E402


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def reply(f):
    while True:
        line = f.readline()
        if not line:
            raise ConnectionError("closed")
        if line[3:4] == b" ":
            return line


def send(port, body, local="127.0.0.2"):
    """Sends one mail; returns seconds from the first content byte to the 250."""
    s = socket.create_connection(("127.0.0.1", port), source_address=(local, 0))
    # No Nagle: a small mail's last segment must not wait for the delayed ACK of the one before.
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    f = s.makefile("rb")
    reply(f)
    for cmd in (b"EHLO x\r\n", b"MAIL FROM:<cam@x>\r\n", b"RCPT TO:<door@nvr>\r\n", b"DATA\r\n"):
        s.sendall(cmd)
        reply(f)
    t0 = time.monotonic()
    s.sendall(body + b"\r\n.\r\n")
    r = reply(f)
    dt = time.monotonic() - t0
    s.sendall(b"QUIT\r\n")
    s.close()
    if not r.startswith(b"250"):
        raise RuntimeError(r)
    return dt


def cpu_s(pid):
    """User + system CPU seconds of process `pid` so far."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    camevents = sys.argv[1]
    size = int(float(sys.argv[2]) * (1 << 20)) if len(sys.argv) > 2 else 25 << 20
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    port = free_port()
    proc = subprocess.Popen(
        [camevents, "--listen", "127.0.0.1:%d" % port, "--no-tls", "--max-size", str(size + (4 << 20))],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port)).close()
                break
            except OSError:
                time.sleep(0.05)
        small = b"Subject: Motion Detected\r\n\r\nEVENT TYPE: Motion Detected"
        results = {}
        # Warm-up, not measured: the server's first mail of SIZE grows its buffers and the
        # allocator's arenas (the first shape measured paid ~80 ms more than the same shape later).
        send(port, worst_mail.SHAPES["plain"](size))
        for shape, make in worst_mail.SHAPES.items():
            body = make(size)
            probe, stop = [], threading.Event()

            def prober():
                while not stop.is_set():
                    probe.append(send(port, small, local="127.0.0.3"))

            t = threading.Thread(target=prober)
            t.start()
            c0 = cpu_s(proc.pid)
            times = [send(port, body) for _ in range(rounds)]
            stop.set()
            t.join()
            cpu = cpu_s(proc.pid) - c0
            probe.sort()
            results[shape] = {
                "bytes": len(body),
                "reply_s_min": round(min(times), 3),
                "reply_s_median": round(statistics.median(times), 3),
                "reply_s_max": round(max(times), 3),
                # The server's CPU over the rounds (the other camera's small mails included).
                "server_cpu_ms_per_mail": round(cpu * 1000 / rounds, 1),
                "other_camera_mails": len(probe),
                "other_p50_ms": round(probe[len(probe) // 2] * 1000, 2),
                "other_p99_ms": round(probe[min(len(probe) - 1, int(len(probe) * 0.99))] * 1000, 2),
                "other_max_ms": round(probe[-1] * 1000, 2),
            }
            print(json.dumps({shape: results[shape]}), flush=True)
        base = max(results["plain"]["reply_s_median"], results["jpeg"]["reply_s_median"])
        worst = max(v["reply_s_median"] for k, v in results.items() if k not in ("plain", "jpeg"))
        worst_cpu = max(v["server_cpu_ms_per_mail"] for k, v in results.items()
                        if k not in ("plain", "jpeg"))
        print(json.dumps({"worst_over_plain": round(worst / results["plain"]["reply_s_median"], 2),
                          "worst_over_slower_baseline": round(worst / base, 2),
                          "worst_cpu_over_plain": round(
                              worst_cpu / max(results["plain"]["server_cpu_ms_per_mail"], 0.1), 2)}))
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
