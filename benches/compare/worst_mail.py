#!/usr/bin/env python3
"""Writes mails built to be worst cases for an SMTP server's MIME extraction, for the fuzz
corpora (.ci/run), the hostile-peer benchmark (benches/compare/smtp_worst.sh) and by hand.

usage: worst_mail.py SHAPE SIZE OUT      (SIZE in bytes, e.g. 1048576; SHAPE: see SHAPES)
       worst_mail.py --list
Each mail is DATA content (no dot-stuffing needed: no line starts with '.'), lines <= 64 KiB
so that it is accepted under the default 1 MiB DATA line limit, except `base64-line`, whose
lines are 1,000,000 bytes.
"""
import base64
import sys

HEAD = b"From: cam@x\r\nTo: nvr@x\r\nSubject: Motion Detected\r\nMIME-Version: 1.0\r\n"


def repeat_to(unit: bytes, size: int) -> bytes:
    return unit * max(1, size // len(unit))


def cte_headers(size):
    # The report: part-header-like lines and no blank line, ever.
    return repeat_to(b"--b\r\nContent-Transfer-Encoding: base64\r\n", size)


def base64_line(size):
    # Lines of repeated "base64": quadratic for a scan that walks back to the line start per hit.
    line = repeat_to(b"base64", min(size, 1_000_000) - 2) + b"\r\n"
    return HEAD + b"\r\n" + line * max(1, size // len(line))


def unique_boundaries(size):
    # Image part headers, each with its own boundary that never comes back.
    out, i = [HEAD, b'Content-Type: multipart/mixed; boundary="b0"\r\n\r\n'], 0
    total = 0
    while total < size:
        part = (b"--b%d\r\nContent-Type: image/jpeg\r\nContent-Transfer-Encoding: base64\r\n\r\nQUJD\r\n" % i)
        out.append(part)
        total += len(part)
        i += 1
    return b"".join(out)


def many_parts(size):
    out = [HEAD, b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n']
    part = b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n"
    out.append(repeat_to(part, size))
    out.append(b"--b--\r\n")
    return b"".join(out)


def nested(size):
    # Multipart inside multipart, as deep as the size allows.
    depth = max(1, size // 64)
    out = [HEAD, b'Content-Type: multipart/mixed; boundary="b0"\r\n\r\n']
    for i in range(1, depth):
        out.append(b'--b%d\r\nContent-Type: multipart/mixed; boundary="b%d"\r\n\r\n' % (i - 1, i))
    return b"".join(out)[:size]


def header_flood(size):
    return repeat_to(b"X-Header: value\r\n", size) + b"\r\nbody\r\n"


def folded_header(size):
    return b"Subject: x\r\n" + repeat_to(b" folded\r\n", size) + b"\r\nbody\r\n"


def delim_far(size):
    # A part delimiter every 4 KiB, with base64 encoding headers in between: a 4 KiB look-back
    # per header line.
    block = b"\r\n--b\r\n" + repeat_to(b"Content-Transfer-Encoding: base64\r\n", 4096)
    return HEAD + repeat_to(block, size)


def boundary_in_params(size):
    # One Content-Type header with a huge parameter list.
    # Folded every 64 KiB: a DATA line stays under the server's 1 MiB line limit.
    line = b' ' + b'a="b"; ' * 9362 + b"\r\n"
    return HEAD + b"Content-Type: multipart/mixed;\r\n" + repeat_to(line, size) + b"\r\nx\r\n"


def plain(size):
    # An ordinary text mail of that size (the baseline).
    line = b"x" * 76 + b"\r\n"
    return HEAD + b"\r\n" + repeat_to(line, size)


def jpeg(size):
    # An ordinary camera mail: a short text and one snapshot of that size (the other baseline).
    raw = bytes(range(256)) * max(1, (size * 3 // 4) // 256)
    b64 = base64.encodebytes(raw).replace(b"\n", b"\r\n")
    return (HEAD + b'Content-Type: multipart/mixed; boundary="#BOUNDARY#"\r\n\r\n'
            b"--#BOUNDARY#\r\nContent-Type: text/plain\r\n\r\nEVENT TYPE: Motion Detected\r\n"
            b'--#BOUNDARY#\r\nContent-Type: image/jpeg; name="a.jpg"\r\n'
            b"Content-Transfer-Encoding: base64\r\n\r\n" + b64 + b"--#BOUNDARY#--\r\n")


SHAPES = {
    "cte-headers": cte_headers,
    "base64-line": base64_line,
    "unique-boundaries": unique_boundaries,
    "many-parts": many_parts,
    "nested": nested,
    "header-flood": header_flood,
    "folded-header": folded_header,
    "delim-far": delim_far,
    "boundary-in-params": boundary_in_params,
    "plain": plain,
    "jpeg": jpeg,
}

if __name__ == "__main__":
    if sys.argv[1:] == ["--list"]:
        print("\n".join(SHAPES))
        sys.exit(0)
    if len(sys.argv) != 4 or sys.argv[1] not in SHAPES:
        sys.exit(__doc__)
    with open(sys.argv[3], "wb") as f:
        f.write(SHAPES[sys.argv[1]](int(sys.argv[2])))
