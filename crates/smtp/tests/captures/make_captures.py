#!/usr/bin/env python3
"""Writes the captured camera mails next to this file (CRLF line endings).

Every subject, body and attachment name below was published by someone who received the mail from
a real camera or NVR; README.md in this folder gives each file's source and says, line by line,
what is verbatim and what was reconstructed around it (headers the poster left out, and the
snapshot bytes, which nobody published: ../../testdata/snapshot.jpg stands in for them).
Run: python3 make_captures.py
"""
import base64
import os

os.chdir(os.path.dirname(os.path.abspath(__file__)))
jpg = open("../../testdata/snapshot.jpg", "rb").read()
JPG76 = base64.encodebytes(jpg).decode()  # wrapped at 76 columns


def w(name, text):
    with open(name, "w", newline="", encoding="utf-8") as f:
        f.write(text.replace("\r\n", "\n").replace("\n", "\r\n"))


def b64_crlf(body, wrap=76):
    """A text body as Dahua firmware sends it: CRLF lines, base64, wrapped at 76."""
    data = base64.b64encode(body.replace("\n", "\r\n").encode()).decode()
    return "\n".join(data[i:i + wrap] for i in range(0, len(data), wrap))


# Amcrest IP2M-841 (Dahua OEM): Jason Antman threw a shirt over the lens and printed what the
# camera sent to his test SMTP server. Headers and text part verbatim; the snapshot was elided
# ("...") in the post.
w("amcrest-tamper.eml", f"""Date: Sun, 06 May 2018 15:28:45 -0600
From: <>
To: <jason@jasonantman.com>
Subject: =?UTF-8?B?SVBDIE1lc3NhZ2U=?=
MIME-Version: 1.0
Content-type: multipart/mixed;boundary="======DAHUA_TECH======"

This is a multi-part message in MIME format.

--======DAHUA_TECH======
Content-Type: text/plain;
        charset=UTF-8
Content-Transfer-Encoding: base64

QWxhcm0gRXZlbnQ6IFRhbXBlciBEZXRlY3QNCkFsYXJtIElucHV0IENoYW5uZWw6IDENCkFsYXJt
IFN0YXJ0IFRpbWUoRC9NL1kgSDpNOlMpOiAwNi8wNS8yMDE4IDE1OjI4OjQwDQpBbGFybSBEZXZp
Y2UgTmFtZTogQU1DMDAwNTZfMjRBQUY4DQpBbGFybSBOYW1lOiANCklQIEFkZHJlc3M6IDE5Mi4x
NjguMC42MA0K



--======DAHUA_TECH======
Content-Type: application/octet-stream;
        name="20180506152840423ch01.jpg"
Content-Disposition: attachment;
        filename="20180506152840423ch01.jpg"
Content-Transfer-Encoding: base64

{JPG76}
--======DAHUA_TECH======--
""")

# The envelope the Amcrest capture above shows, for the Dahua-family mails whose posters gave only
# the body text.
def dahua_mail(date, sender, to, body, attachment=None):
    parts = f"""Date: {date}
From: <{sender}>
To: <{to}>
Subject: =?UTF-8?B?SVBDIE1lc3NhZ2U=?=
MIME-Version: 1.0
Content-type: multipart/mixed;boundary="======DAHUA_TECH======"

This is a multi-part message in MIME format.

--======DAHUA_TECH======
Content-Type: text/plain;
        charset=UTF-8
Content-Transfer-Encoding: base64

{b64_crlf(body)}



"""
    if attachment:
        parts += f"""--======DAHUA_TECH======
Content-Type: application/octet-stream;
        name="{attachment}"
Content-Disposition: attachment;
        filename="{attachment}"
Content-Transfer-Encoding: base64

{JPG76}
"""
    return parts + "--======DAHUA_TECH======--\n"


# Amcrest AMC046CC_31B4BF mailing its alarms to Flickr's upload-by-mail address: Flickr made the
# snapshot a photo titled after the attachment and the text part its description.
w("amcrest-motion-flickr.eml", dahua_mail(
    "Fri, 16 Nov 2018 20:56:41 -0800", "amcrest@home.example", "upload@flickr.example",
    """Alarm Event: Motion Detect
Alarm Input Channel: 1
Alarm Start Time(D/M/Y H:M:S): 16/11/2018 20:54:54
Alarm Device Name: AMC046CC_31B4BF
Alarm Name:
IP Address: 192.168.1.251
""", "20181116205454ch01.jpg"))

# Dahua IPC and Dahua EZIP (Imou) cameras, bodies as rapi3 published them in mqtt-email's README
# (sent base64-encoded, per the README; its search strings are base64 of CRLF lines).
w("dahua-ipc-motion.eml", dahua_mail(
    "Thu, 23 Dec 2021 10:27:48 +0200", "ipc06@myhome.local", "usercctv@myhome.local",
    """Alarm Event: Motion Detection
Alarm Input Channel: 1
Alarm Start Time(D/M/Y H:M:S): 23/12/2021 10:27:46
Alarm Device Name: IPC06
Alarm Name: 
IP Address: 192.168.2.164
"""))

w("dahua-ezip-motion-start.eml", dahua_mail(
    "Tue, 21 Dec 2021 22:15:35 +0200", "ez08@myhome.local", "usercctv@myhome.local",
    """Alarm Event: Motion Detection Start
Alarm Input Channel: 1
Alarm Start Time(D/M/Y H:M:S): 21/12/2021 22:15:33
Alarm Device Name: EZIP08
Alarm Name: 
IP Address: 192.168.2.155
"""))

# A Dahua NVR, body published as "Mẫu email từ Dahua NVR" (sample mail from a Dahua NVR) in
# vuthesang1/stationcheck, with a space before the time format and the channel's own name.
w("dahua-nvr-motion.eml", dahua_mail(
    "Wed, 12 Nov 2025 16:04:00 +0700", "nvr@station.example", "alarms@station.example",
    """Alarm Event: Motion Detection
Alarm Input Channel No.: 2
Alarm Input Channel Name: IPC
Alarm Start Time (D/M/Y H:M:S): 12/11/2025 16:03:57
Alarm Device Name: NVR-6C39
Alarm Name: 
IP Address: 192.168.1.200
Alarm Details:
"""))

# Hikvision IPC (DS-2CD2032-I): headers and body verbatim from the example in Eulogix'
# HikTools Alert.php.
w("hikvision-ipc-intrusion.eml", """From: "ORTO" <orto@cams.example>
To: <alarms@home.example>
Subject: ORTO: on Camera1: Intrusion Detection
X-Mailer: HIKMailer
X-Priority: 2
MIME-Version: 1.0
Content-type: multipart/alternative; boundary="#BOUNDARY#"

--#BOUNDARY#
Content-Type: text/plain; charset=gb2312
Content-Transfer-Encoding: 8bit

This is an automatically generated e-mail from your IPC.

EVENT TYPE: Intrusion Detection
EVENT TIME: 2015-05-22,14:52:18
IPC NAME: ORTO
CHANNEL NAME: Orto
CHANNEL NUMBER: 1
IPC S/N: DS-2CD2032-I20150107CCCH497875383

--#BOUNDARY#--
""")

# The Hikvision mail layout around the bodies below: the one the IPC above sends.
def hik_mail(date, sender, to, subject, body, attachment=None):
    text = f"""Date: {date}
From: <{sender}>
To: <{to}>
Subject: {subject}
X-Mailer: HIKMailer
X-Priority: 3
MIME-Version: 1.0
Content-type: multipart/mixed; boundary="#BOUNDARY#"

--#BOUNDARY#
Content-Type: text/plain; charset=gb2312
Content-Transfer-Encoding: 8bit

{body}
"""
    if attachment:
        text += f"""--#BOUNDARY#
Content-Type: image/jpeg; name="{attachment}"
Content-Transfer-Encoding: base64
Content-Disposition: attachment; filename="{attachment}"

{JPG76}
"""
    return text + "--#BOUNDARY#--\n"


# Hikvision DVR ("Embedded Net DVR" is the factory name), subject and body from milosz08's
# event-proxy-system, serial number "RESTRICTED" as the poster redacted it.
w("hikvision-dvr-motion.eml", hik_mail(
    "Sat, 26 Jul 2025 16:53:10 +0200", "dvr@home.example", "receiver@home.example",
    "Embedded Net DVR: Motion Detected On Channel A2",
    """This is an automatically generated e-mail from your DVR.

EVENT TYPE:    Motion Detected
EVENT TIME:    2025-07-26,16:53:09
DVR NAME:      Embedded Net DVR
DVR S/N:       RESTRICTED
CAMERA NAME(NUM):   CAM 2 Garage(A2)
"""))

# Hikvision NVR ("Network Video Recorder" is the factory name) whose mails reach the receiver
# through Calipsa's relay, as quoted from real samples in truelive_backend's Calipsa parser.
w("hikvision-nvr-calipsa.eml", hik_mail(
    "Tue, 12 May 2026 22:40:09 +0000", "admin@calipsa.io", "alerts@truelive.example",
    "Network Video Recorder: Motion Detected On Channel D4",
    """EVENT TYPE:    Motion Detected
EVENT TIME:    2026-05-12,22:40:07
NVR NAME:      Network Video Recorder
NVR S/N:       0820241008CCRRFQ6386292WCVU
CAMERA NAME(NUM):   D4(D4)
""", "D4_20260512224007.jpg"))

# A camera rapi3 calls "No Name": Hikvision's text layout (tabs as published), but the time is
# day first. Sent as plain 8-bit text, not base64, per the README.
w("noname-ipc-motion.eml", """Date: Mon, 27 Dec 2021 17:42:21 +0200
From: <ipc@myhome.local>
To: <usercctv@myhome.local>
Subject: IPC: Motion Detected
MIME-Version: 1.0
Content-Type: text/plain; charset=us-ascii
Content-Transfer-Encoding: 8bit

\tThis is an automatically generated e-mail from your IPC.

\t\tEVENT TYPE: Motion Detected
\t\tEVENT TIME: 27/12/2021 17:42:19
\t\tIPC NAME: IPC
\t\tCHANNEL NUMBER: 01
\t\tIPC IP: 192.168.2.111
""")

# Reolink camera: clydeu/iot-services logs a body as its non-empty lines joined by ", " and its
# test quotes that log line; these are the lines (no blank after the colon, as Reolink writes
# them). Sender as the author's camera was set up. Reolink sends the text part base64 on one
# line (fwestenberg/reolink_dev's SMTP handler reads it that way).
reolink_body = base64.b64encode(
    b"Alarm Camera Name:Living Room Camera\r\nAlarm Event:Motion Detection\r\n"
    b"Alarm Input Channel No.:1\r\nAlarm Device Name:Living Room Camera\r\n").decode()
w("reolink-motion.eml", f"""Date: Wed, 07 Feb 2024 13:09:01 -0800
From: "Living Room Camera" <reolink@macbuntu.com>
To: <motion@macbuntu.com>
Subject: Alarm Message from Living Room Camera
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="reolink-boundary"

--reolink-boundary
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: base64

{reolink_body}

--reolink-boundary--
""")

# Swann NVR8-8580RN: body from clydeu/iot-services' test, subject the one its code matches
# (SWANN_EMAIL_SUBJECTS default), sender as the author's NVR was set up.
w("swann-nvr-human.eml", f"""Date: Wed, 07 Feb 2024 13:09:00 -0800
From: <swann@macbuntu.com>
To: <motion@macbuntu.com>
Subject: Alert from your NVR/DVR --- A Human and Vehicle event has been detected
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="swann-boundary"

--swann-boundary
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit



Device Name: NVR8-8580RN
Event Type: Human and Vehicle

Channel Name [IP-CH1]: Front Yard
AlarmType: Human
Time: 2024-02-07 13:08:59
Alert from your NVR/DVR --- A Human and Vehicle event has been detected on one of your cameras; please check the attached image for reference.

--swann-boundary
Content-Type: image/jpeg; name="IP-CH1.jpg"
Content-Transfer-Encoding: base64
Content-Disposition: attachment; filename="IP-CH1.jpg"

{JPG76}
--swann-boundary--
""")
