"""onvif-zeep-async (the ONVIF library Home Assistant uses) against one loopcam ONVIF device.

Usage: zeep_client.py HOST PORT USER PASS CLIP [SNAPSHOT.jpg]

With WS-UsernameToken (PasswordDigest) auth: reads the device information, lists the
profiles, gets the stream URI (Media1, and Media2 when offered) and prints, one per line:
  model=<Model>
  serial=<SerialNumber>
  profile=<token> <encoding> <width>x<height>
  stream=<rtsp uri>                 (the first profile's)
  stream.<token>=<rtsp uri>         (every profile's)
(and the snapshot URI, the scopes and the host name). With SNAPSHOT.jpg, the first profile's
snapshot is fetched with the library's get_snapshot (HTTP Digest with the same credentials) and
written there. onvif-zeep-async 4.3 has no Media2 client.
Exits non-zero on any error. bins/loopcam/tests/onvif.rs runs it and plays the URI with ffprobe.
"""

import asyncio
import sys

from onvif import ONVIFCamera


async def main() -> int:
    host, port, user, password, clip = sys.argv[1:6]
    snapshot_file = sys.argv[6] if len(sys.argv) > 6 else None
    cam = ONVIFCamera(host, int(port), user, password, adjust_time=True)
    await cam.update_xaddrs()
    try:
        devicemgmt = await cam.create_devicemgmt_service()
        info = await devicemgmt.GetDeviceInformation()
        print(f"model={info.Model}")
        print(f"serial={info.SerialNumber}")
        if info.SerialNumber != clip:
            print(f"serial {info.SerialNumber!r} is not the clip {clip!r}", file=sys.stderr)
            return 1
        # The rest of the Device service, parsed against the ONVIF schemas by zeep.
        await devicemgmt.GetCapabilities({"Category": "All"})
        await devicemgmt.GetServices({"IncludeCapability": True})
        scopes = await devicemgmt.GetScopes()
        print("scopes=" + " ".join(s.ScopeItem for s in scopes))
        await devicemgmt.GetNetworkInterfaces()
        host = await devicemgmt.GetHostname()
        print(f"hostname={host.Name}")
        media = await cam.create_media_service()
        await media.GetVideoSources()
        await media.GetVideoSourceConfigurations()
        await media.GetVideoEncoderConfigurations()
        profiles = await media.GetProfiles()
        for p in profiles:
            enc = p.VideoEncoderConfiguration
            print(f"profile={p.token} {enc.Encoding} {enc.Resolution.Width}x{enc.Resolution.Height}")
        for i, p in enumerate(profiles):
            req = media.create_type("GetStreamUri")
            req.ProfileToken = p.token
            req.StreamSetup = {"Stream": "RTP-Unicast", "Transport": {"Protocol": "RTSP"}}
            uri = await media.GetStreamUri(req)
            if i == 0:
                print(f"stream={uri.Uri}")
            print(f"stream.{p.token}={uri.Uri}")
        snap = await media.GetSnapshotUri({"ProfileToken": profiles[0].token})
        print(f"snapshot={snap.Uri}")
        if snapshot_file:
            jpeg = await cam.get_snapshot(profiles[0].token)
            if not jpeg:
                print("get_snapshot returned nothing", file=sys.stderr)
                return 1
            with open(snapshot_file, "wb") as f:
                f.write(jpeg)
            print(f"snapshot_bytes={len(jpeg)}")
    finally:
        await cam.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
