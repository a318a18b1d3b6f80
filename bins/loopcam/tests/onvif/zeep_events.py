"""onvif-zeep-async's PullPoint manager (what Home Assistant's onvif integration uses) against one
loopcam ONVIF device.

Usage: zeep_events.py HOST PORT USER PASS WANT SECONDS [SOURCE]

With WS-UsernameToken (PasswordDigest) auth: reads the event properties, creates a PullPoint
subscription, and pulls (Timeout 5 s, MessageLimit 100) until WANT motion-on messages on
tns1:RuleEngine/CellMotionDetector/Motion have come, or SECONDS have passed. Prints one line per
message, as Home Assistant's parsers read it (Topic._value_1, Data.SimpleItem[0]):
  event <topic> <name>=<value> op=<PropertyOperation> utc=<UtcTime, ISO 8601>
then unsubscribes. With SOURCE (a loopback address such as 127.0.0.3), every connection the
library makes is bound to it (aiohttp's TCPConnector local_addr), so the device sees this client
apart from others on loopback. Exits non-zero on any error or when fewer than WANT came.
bins/loopcam/tests/onvif.rs runs it.
"""

import asyncio
import datetime as dt
import functools
import sys
import time

import aiohttp
import onvif.client
from onvif import ONVIFCamera


async def main() -> int:
    host, port, user, password, want, seconds = sys.argv[1:7]
    want, seconds = int(want), float(seconds)
    if len(sys.argv) > 7:
        onvif.client.TCPConnector = functools.partial(
            aiohttp.TCPConnector, local_addr=(sys.argv[7], 0)
        )
    cam = ONVIFCamera(host, int(port), user, password, adjust_time=True)
    await cam.update_xaddrs()
    try:
        events = await cam.create_events_service()
        caps = await events.GetServiceCapabilities()
        print(f"pullpoint={caps.WSPullPointSupport}")
        props = await events.GetEventProperties()
        print(f"fixed_topic_set={props.FixedTopicSet}")
        manager = await cam.create_pullpoint_manager(dt.timedelta(seconds=60), lambda: None)
        pullpoint = manager.get_service()
        seen = 0
        end = time.monotonic() + seconds
        while seen < want and time.monotonic() < end:
            resp = await pullpoint.PullMessages(
                {"MessageLimit": 100, "Timeout": dt.timedelta(seconds=5)}
            )
            for msg in resp.NotificationMessage or []:
                topic = msg.Topic._value_1
                m = msg.Message._value_1
                item = m.Data.SimpleItem[0]
                print(
                    f"event {topic} {item.Name}={item.Value} op={m.PropertyOperation} utc={m.UtcTime.isoformat()}",
                    flush=True,
                )
                if (
                    topic == "tns1:RuleEngine/CellMotionDetector/Motion"
                    and item.Value == "true"
                    and m.PropertyOperation == "Changed"
                ):
                    seen += 1
        await manager.shutdown()
    finally:
        await cam.close()
    if seen < want:
        print(f"only {seen} of {want} motion events in {seconds} s", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
