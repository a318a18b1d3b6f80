#!/usr/bin/env python3
"""Writes the vendor test mails next to this file (CRLF line endings).

Each is reconstructed from the vendor's documented or widely reported format (sources are in the
comment of the profile that reads it, crates/smtp/src/extract/*.rs); none is a capture from a
real device. snapshot.jpg was made with:
    ffmpeg -f lavfi -i "testsrc2=size=64x48:rate=1" -frames:v 1 -q:v 8 snapshot.jpg
Run: python3 make_mails.py
"""
import base64
import os

os.chdir(os.path.dirname(os.path.abspath(__file__)))
jpg = open("snapshot.jpg", "rb").read()
b64 = base64.encodebytes(jpg).decode()  # wrapped at 76 columns
b64_unwrapped = base64.b64encode(jpg).decode()  # one line, as many cameras send


def w(name, text):
    with open(name, "w", newline="", encoding="utf-8") as f:
        f.write(text.replace("\n", "\r\n"))


w("hikvision_ipc.eml", f"""Date: Fri, 22 May 2015 14:52:19 +0800
From: "IPCamera" <ipc@cams.example>
To: "nvr" <nvr@events.example>
Subject: =?UTF-8?B?SVBDYW1lcmE6IE1vdGlvbiBEZXRlY3RlZA==?=
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="#BOUNDARY#"
X-Mailer: HIKMailer
X-Priority: 3

--#BOUNDARY#
Content-Type: text/plain; charset=ISO-8859-1
Content-Transfer-Encoding: 8bit

This is an automatically generated e-mail from your IPC.

EVENT TYPE:     Motion Detected
EVENT TIME:     2015-05-22,14:52:18
IPC NAME:       Front Door
IPC S/N:        DS-2CD2032-I20150101AAWR123456789
CHANNEL NUMBER: 1
IPC IP ADDRESS: 192.0.2.64

--#BOUNDARY#
Content-Type: image/jpeg; name="ch01_20150522145218.jpg"
Content-Transfer-Encoding: base64
Content-Disposition: attachment; filename="ch01_20150522145218.jpg"

{b64_unwrapped}
--#BOUNDARY#--
""")

w("hikvision_nvr.eml", f"""Date: Mon, 04 Mar 2019 10:32:13 +0100
From: "Embedded Net DVR" <nvr-sender@cams.example>
To: <alarms@events.example>
Subject: Embedded Net DVR: Motion Detected On Channel A2
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="#BOUNDARY#"
X-Mailer: HIKMailer

--#BOUNDARY#
Content-Type: text/plain; charset=ISO-8859-1
Content-Transfer-Encoding: 8bit

This is an automatically generated e-mail from your NVR.

EVENT TYPE:       Motion Detected
EVENT TIME:       2019-03-04,10:32:12
NVR NAME:         Embedded Net DVR
NVR S/N:          DS-7608NI-K20819CCWR123456789
CAMERA NAME(NUM): Garage(A2)

--#BOUNDARY#
Content-Type: image/jpeg; name="A2_20190304103212.jpg"
Content-Transfer-Encoding: base64
Content-Disposition: attachment; filename="A2_20190304103212.jpg"

{b64}--#BOUNDARY#--
""")

# Dahua: base64 text body in gb2312 (the device name is Chinese: "后院摄像机", backyard camera).
body_dahua = """Alarm Event: Motion Detection
Alarm Input Channel: 2
Alarm Start Time(D/M/Y H:M:S): 05/12/2019 09:10:11
Alarm Device Name: 后院摄像机
Alarm Name: 
IP Address: 192.0.2.108
""".replace("\n", "\r\n")
w("dahua.eml", f"""Date: Thu, 05 Dec 2019 09:10:12 +0000
From: IPC <dahua@cams.example>
To: <backyard@events.example>
Subject: IPC Message
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="----=_NextPart_000_0001"

------=_NextPart_000_0001
Content-Type: text/plain; charset="gb2312"
Content-Transfer-Encoding: base64

{base64.b64encode(body_dahua.encode("gb2312")).decode()}

------=_NextPart_000_0001
Content-Type: application/octet-stream; name="IPC_ch2_20191205091011.jpg"
Content-Transfer-Encoding: base64
Content-Disposition: attachment; filename="IPC_ch2_20191205091011.jpg"

{b64}
------=_NextPart_000_0001--
""")

w("reolink.eml", f"""Date: Sat, 21 Mar 2020 12:34:57 +0000
From: Reolink <reolink@cams.example>
To: <nvr@events.example>
Subject: Alarm Message from Front Porch
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="REOLINK_BOUNDARY"

--REOLINK_BOUNDARY
Content-Type: text/plain; charset=UTF-8
Content-Transfer-Encoding: 7bit

Alarm Camera Name: Front Porch
Alarm Event: Motion Detection
Alarm Input Channel No.: 1
Alarm Start Time(D/M/Y H:M:S): 21/03/2020 12:34:56

--REOLINK_BOUNDARY
Content-Type: image/jpeg; name="Front Porch_00_20200321123456.jpg"
Content-Transfer-Encoding: base64
Content-Disposition: attachment; filename="Front Porch_00_20200321123456.jpg"

{b64}
--REOLINK_BOUNDARY--
""")

w("axis.eml", f"""Date: Tue, 02 Jun 2020 08:00:01 +0200
From: axis-camera@cams.example
To: driveway@events.example
Subject: Line crossing on AXIS M3106 driveway
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="axis-boundary"
X-Mailer: AXIS Communications

--axis-boundary
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: quoted-printable

Cross line detection triggered at 2020-06-02 08:00:00.

--axis-boundary
Content-Type: image/jpeg
Content-Transfer-Encoding: base64
Content-Disposition: attachment; filename="image.jpg"

{b64}
--axis-boundary--
""")
