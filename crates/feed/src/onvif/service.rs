//! The ONVIF actions of one device: pure functions from a parsed [`Request`] to the SOAP body
//! of the answer, or a fault. No I/O: the HTTP layer ([`super`]) reads and bounds the request,
//! checks the token and writes the envelope.

use nvrkit_media::WallTime;

use super::soap::{Request, esc};
use super::{Device, Video, VideoCodec};

/// ONVIF device management namespace.
pub const NS_DEVICE: &str = "http://www.onvif.org/ver10/device/wsdl";
/// ONVIF media (Media1) namespace.
pub const NS_MEDIA: &str = "http://www.onvif.org/ver10/media/wsdl";
/// ONVIF Media2 namespace.
pub const NS_MEDIA2: &str = "http://www.onvif.org/ver20/media/wsdl";

/// The main stream's profile token.
pub const PROFILE_TOKEN: &str = "main";
/// The sub stream's profile token (a device whose clip has a sub stream).
pub const SUB_PROFILE_TOKEN: &str = "sub";
const SOURCE_TOKEN: &str = "source";
const SOURCE_CONFIG_TOKEN: &str = "source_config";

/// One media profile: a stream of the device.
#[derive(Debug, Clone, Copy)]
struct Profile<'a> {
    token: &'static str,
    encoder: &'static str,
    /// The RTSP path.
    path: &'a str,
    video: Option<&'a Video>,
}

/// The device's profiles: main, then sub when the clip has one.
fn profiles(dev: &Device) -> Vec<Profile<'_>> {
    let mut v = vec![Profile {
        token: PROFILE_TOKEN,
        encoder: "encoder_main",
        path: &dev.name,
        video: dev.video.as_ref(),
    }];
    if let Some(sub) = &dev.sub {
        v.push(Profile {
            token: SUB_PROFILE_TOKEN,
            encoder: "encoder_sub",
            path: &sub.path,
            video: sub.video.as_ref(),
        });
    }
    v
}

/// A fault to answer with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// `env:Sender` or `env:Receiver`.
    pub code: &'static str,
    /// The ONVIF subcode (`ter:ActionNotSupported`, …).
    pub subcode: &'static str,
    /// The human reason.
    pub reason: String,
}

impl Fault {
    /// An `env:Sender` fault.
    pub(crate) fn sender(subcode: &'static str, reason: impl Into<String>) -> Fault {
        Fault {
            code: "env:Sender",
            subcode,
            reason: reason.into(),
        }
    }
}

/// Where the client reached the device: what the answers' URLs name.
#[derive(Debug, Clone)]
pub struct Reached {
    /// The host (IP or name; IPv6 in brackets) without port.
    pub host: String,
    /// The device's HTTP port.
    pub http_port: u16,
}

impl Reached {
    /// `http://HOST:PORT{path}`.
    pub(crate) fn http(&self, path: &str) -> String {
        format!("http://{}:{}{path}", self.host, self.http_port)
    }

    fn device_service(&self) -> String {
        self.http("/onvif/device_service")
    }
}

/// Whether the action may be called without credentials (clients call it first to learn the
/// device clock, which the token's `Created` depends on).
pub fn is_public(req: &Request) -> bool {
    req.ns == NS_DEVICE && req.action == "GetSystemDateAndTime"
}

/// The answer body to `req` on `dev`, reached at `at`, at time `now`.
pub fn answer(dev: &Device, at: &Reached, req: &Request, now: WallTime) -> Result<String, Fault> {
    let body = match (req.ns.as_str(), req.action.as_str()) {
        (NS_DEVICE, "GetSystemDateAndTime") => system_date_and_time(now),
        (NS_DEVICE, "GetDeviceInformation") => device_information(dev),
        (NS_DEVICE, "GetCapabilities") => capabilities(at),
        (NS_DEVICE, "GetServices") => {
            services(dev, at, req.field("IncludeCapability") == Some("true"))
        }
        (NS_DEVICE, "GetScopes") => {
            let items: String = scopes(dev)
                .iter()
                .map(|s| {
                    format!(
                        "<tds:Scopes><tt:ScopeDef>Fixed</tt:ScopeDef><tt:ScopeItem>{}</tt:ScopeItem></tds:Scopes>",
                        esc(s)
                    )
                })
                .collect();
            format!("<tds:GetScopesResponse>{items}</tds:GetScopesResponse>")
        }
        (NS_DEVICE, "GetNetworkInterfaces") => network_interfaces(at),
        (NS_DEVICE, "GetHostname") => format!(
            "<tds:GetHostnameResponse><tds:HostnameInformation><tt:FromDHCP>false</tt:FromDHCP><tt:Name>{}</tt:Name></tds:HostnameInformation></tds:GetHostnameResponse>",
            esc(&hostname(dev))
        ),
        (NS_MEDIA, "GetProfiles") => {
            let items: String = profiles(dev)
                .iter()
                .map(|p| media1_profile(dev, p, "trt:Profiles"))
                .collect();
            format!("<trt:GetProfilesResponse>{items}</trt:GetProfilesResponse>")
        }
        (NS_MEDIA, "GetProfile") => {
            let p = profile(dev, req)?;
            format!(
                "<trt:GetProfileResponse>{}</trt:GetProfileResponse>",
                media1_profile(dev, &p, "trt:Profile")
            )
        }
        (NS_MEDIA, "GetVideoSources") => {
            let (w, h, fps) = dims(dev.video.as_ref());
            format!(
                "<trt:GetVideoSourcesResponse><trt:VideoSources token=\"{SOURCE_TOKEN}\"><tt:Framerate>{fps}</tt:Framerate><tt:Resolution><tt:Width>{w}</tt:Width><tt:Height>{h}</tt:Height></tt:Resolution></trt:VideoSources></trt:GetVideoSourcesResponse>"
            )
        }
        (NS_MEDIA, "GetVideoSourceConfigurations") => format!(
            "<trt:GetVideoSourceConfigurationsResponse>{}</trt:GetVideoSourceConfigurationsResponse>",
            source_config(dev, "trt:Configurations")
        ),
        (NS_MEDIA, "GetVideoEncoderConfigurations") => format!(
            "<trt:GetVideoEncoderConfigurationsResponse>{}</trt:GetVideoEncoderConfigurationsResponse>",
            profiles(dev)
                .iter()
                .map(|p| encoder_config(p, "trt:Configurations"))
                .collect::<String>()
        ),
        (NS_MEDIA, "GetStreamUri") => {
            let p = profile(dev, req)?;
            if let Some(s) = req.field("Stream")
                && s != "RTP-Unicast"
            {
                return Err(Fault::sender(
                    "ter:InvalidArgVal",
                    format!("stream type {s} is not offered (RTP-Unicast only)"),
                ));
            }
            media_uri("trt:GetStreamUriResponse", &rtsp_uri(dev, p.path, at))
        }
        (NS_MEDIA, "GetSnapshotUri") => {
            profile(dev, req)?;
            media_uri("trt:GetSnapshotUriResponse", &snapshot_uri(dev, at))
        }
        (NS_MEDIA2, "GetProfiles") => {
            let all = profiles(dev);
            let wanted: Vec<&Profile<'_>> = match req.field("Token") {
                Some(t) => match all.iter().find(|p| p.token == t) {
                    Some(p) => vec![p],
                    None => return Err(no_profile(t)),
                },
                None => all.iter().collect(),
            };
            let items: String = wanted
                .iter()
                .map(|p| {
                    format!(
                        "<tr2:Profiles token=\"{t}\" fixed=\"true\"><tr2:Name>{t}</tr2:Name><tr2:Configurations>{}{}</tr2:Configurations></tr2:Profiles>",
                        source_config(dev, "tr2:VideoSource"),
                        encoder2_config(p),
                        t = p.token
                    )
                })
                .collect();
            format!("<tr2:GetProfilesResponse>{items}</tr2:GetProfilesResponse>")
        }
        (NS_MEDIA2, "GetStreamUri") => {
            let p = profile(dev, req)?;
            format!(
                "<tr2:GetStreamUriResponse><tr2:Uri>{}</tr2:Uri></tr2:GetStreamUriResponse>",
                esc(&rtsp_uri(dev, p.path, at))
            )
        }
        (NS_MEDIA2, "GetSnapshotUri") => {
            profile(dev, req)?;
            format!(
                "<tr2:GetSnapshotUriResponse><tr2:Uri>{}</tr2:Uri></tr2:GetSnapshotUriResponse>",
                esc(&snapshot_uri(dev, at))
            )
        }
        _ => {
            return Err(Fault {
                code: "env:Receiver",
                subcode: "ter:ActionNotSupported",
                reason: format!("{} ({}) is not supported", req.action, req.ns),
            });
        }
    };
    Ok(body)
}

fn no_profile(t: &str) -> Fault {
    Fault::sender("ter:NoProfile", format!("no profile {t:?}"))
}

/// The profile a request's `ProfileToken` names.
fn profile<'a>(dev: &'a Device, req: &Request) -> Result<Profile<'a>, Fault> {
    match req.field("ProfileToken") {
        Some(t) => profiles(dev)
            .into_iter()
            .find(|p| p.token == t)
            .ok_or_else(|| no_profile(t)),
        None => Err(Fault::sender("ter:InvalidArgVal", "ProfileToken missing")),
    }
}

fn media1_profile(dev: &Device, p: &Profile<'_>, element: &str) -> String {
    format!(
        "<{element} token=\"{t}\" fixed=\"true\"><tt:Name>{t}</tt:Name>{}{}</{element}>",
        source_config(dev, "tt:VideoSourceConfiguration"),
        encoder_config(p, "tt:VideoEncoderConfiguration"),
        t = p.token
    )
}

/// The device's scopes (also its WS-Discovery `Scopes`).
pub fn scopes(dev: &Device) -> Vec<String> {
    vec![
        "onvif://www.onvif.org/type/video_encoder".into(),
        "onvif://www.onvif.org/Profile/Streaming".into(),
        "onvif://www.onvif.org/hardware/loopcam".into(),
        format!("onvif://www.onvif.org/name/{}", uri_segment(&dev.name)),
    ]
}

/// Percent-encodes what a URI path segment cannot hold.
pub fn uri_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn hostname(dev: &Device) -> String {
    let name: String = dev
        .name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("loopcam-{name}")
}

/// The RTSP URL of the device's stream at `path` (its name, or its sub stream's `NAME/sub`)
/// for a client that reached the device at `at`.
pub fn rtsp_uri(dev: &Device, path: &str, at: &Reached) -> String {
    let path: Vec<String> = path.split('/').map(uri_segment).collect();
    format!("rtsp://{}:{}/{}", at.host, dev.rtsp_port, path.join("/"))
}

fn snapshot_uri(dev: &Device, at: &Reached) -> String {
    at.http(&format!("/snapshot/{}.jpg", uri_segment(&dev.name)))
}

fn media_uri(element: &str, uri: &str) -> String {
    format!(
        "<{element}><trt:MediaUri><tt:Uri>{}</tt:Uri><tt:InvalidAfterConnect>false</tt:InvalidAfterConnect><tt:InvalidAfterReboot>false</tt:InvalidAfterReboot><tt:Timeout>PT0S</tt:Timeout></trt:MediaUri></{element}>",
        esc(uri)
    )
}

fn system_date_and_time(now: WallTime) -> String {
    // `to_rfc3339` is `YYYY-MM-DDTHH:MM:SS[.ffffff]Z`.
    let s = now.to_rfc3339();
    let num = |r: std::ops::Range<usize>| s.get(r).and_then(|x| x.parse::<u32>().ok()).unwrap_or(0);
    let (y, mo, d, h, mi, se) = (
        num(0..4),
        num(5..7),
        num(8..10),
        num(11..13),
        num(14..16),
        num(17..19),
    );
    format!(
        "<tds:GetSystemDateAndTimeResponse><tds:SystemDateAndTime><tt:DateTimeType>NTP</tt:DateTimeType><tt:DaylightSavings>false</tt:DaylightSavings><tt:TimeZone><tt:TZ>UTC0</tt:TZ></tt:TimeZone><tt:UTCDateTime><tt:Time><tt:Hour>{h}</tt:Hour><tt:Minute>{mi}</tt:Minute><tt:Second>{se}</tt:Second></tt:Time><tt:Date><tt:Year>{y}</tt:Year><tt:Month>{mo}</tt:Month><tt:Day>{d}</tt:Day></tt:Date></tt:UTCDateTime></tds:SystemDateAndTime></tds:GetSystemDateAndTimeResponse>"
    )
}

fn device_information(dev: &Device) -> String {
    format!(
        "<tds:GetDeviceInformationResponse><tds:Manufacturer>nvrkit</tds:Manufacturer><tds:Model>loopcam</tds:Model><tds:FirmwareVersion>{}</tds:FirmwareVersion><tds:SerialNumber>{}</tds:SerialNumber><tds:HardwareId>loopcam</tds:HardwareId></tds:GetDeviceInformationResponse>",
        env!("CARGO_PKG_VERSION"),
        esc(&dev.name)
    )
}

fn capabilities(at: &Reached) -> String {
    let x = esc(&at.device_service()).into_owned();
    let ev = esc(&at.http(super::events::EVENT_SERVICE_PATH)).into_owned();
    format!(
        "<tds:GetCapabilitiesResponse><tds:Capabilities>\
<tt:Device><tt:XAddr>{x}</tt:XAddr>\
<tt:Network><tt:IPFilter>false</tt:IPFilter><tt:ZeroConfiguration>false</tt:ZeroConfiguration><tt:IPVersion6>false</tt:IPVersion6><tt:DynDNS>false</tt:DynDNS></tt:Network>\
<tt:System><tt:DiscoveryResolve>false</tt:DiscoveryResolve><tt:DiscoveryBye>false</tt:DiscoveryBye><tt:RemoteDiscovery>false</tt:RemoteDiscovery><tt:SystemBackup>false</tt:SystemBackup><tt:SystemLogging>false</tt:SystemLogging><tt:FirmwareUpgrade>false</tt:FirmwareUpgrade><tt:SupportedVersions><tt:Major>2</tt:Major><tt:Minor>60</tt:Minor></tt:SupportedVersions></tt:System>\
<tt:Security><tt:TLS1.1>false</tt:TLS1.1><tt:TLS1.2>false</tt:TLS1.2><tt:OnboardKeyGeneration>false</tt:OnboardKeyGeneration><tt:AccessPolicyConfig>false</tt:AccessPolicyConfig><tt:X.509Token>false</tt:X.509Token><tt:SAMLToken>false</tt:SAMLToken><tt:KerberosToken>false</tt:KerberosToken><tt:RELToken>false</tt:RELToken></tt:Security>\
</tt:Device>\
<tt:Events><tt:XAddr>{ev}</tt:XAddr><tt:WSSubscriptionPolicySupport>false</tt:WSSubscriptionPolicySupport><tt:WSPullPointSupport>true</tt:WSPullPointSupport><tt:WSPausableSubscriptionManagerInterfaceSupport>false</tt:WSPausableSubscriptionManagerInterfaceSupport></tt:Events>\
<tt:Media><tt:XAddr>{x}</tt:XAddr><tt:StreamingCapabilities><tt:RTPMulticast>false</tt:RTPMulticast><tt:RTP_TCP>true</tt:RTP_TCP><tt:RTP_RTSP_TCP>true</tt:RTP_RTSP_TCP></tt:StreamingCapabilities></tt:Media>\
</tds:Capabilities></tds:GetCapabilitiesResponse>"
    )
}

fn services(dev: &Device, at: &Reached, with_capabilities: bool) -> String {
    let n = profiles(dev).len();
    let x = esc(&at.device_service()).into_owned();
    let ev = esc(&at.http(super::events::EVENT_SERVICE_PATH)).into_owned();
    let one = |ns: &str, x: &str, major: u32, minor: u32, caps: &str| {
        let caps = if with_capabilities && !caps.is_empty() {
            format!("<tds:Capabilities>{caps}</tds:Capabilities>")
        } else {
            String::new()
        };
        format!(
            "<tds:Service><tds:Namespace>{ns}</tds:Namespace><tds:XAddr>{x}</tds:XAddr>{caps}<tds:Version><tt:Major>{major}</tt:Major><tt:Minor>{minor}</tt:Minor></tds:Version></tds:Service>"
        )
    };
    format!(
        "<tds:GetServicesResponse>{}{}{}{}</tds:GetServicesResponse>",
        one(
            NS_DEVICE,
            &x,
            2,
            60,
            "<tds:Capabilities><tds:Network/><tds:Security UsernameToken=\"true\"/><tds:System/></tds:Capabilities>"
        ),
        one(
            NS_MEDIA,
            &x,
            2,
            60,
            &format!(
                "<trt:Capabilities SnapshotUri=\"true\"><trt:ProfileCapabilities MaximumNumberOfProfiles=\"{n}\"/><trt:StreamingCapabilities RTPMulticast=\"false\" RTP_TCP=\"true\" RTP_RTSP_TCP=\"true\"/></trt:Capabilities>"
            )
        ),
        one(
            NS_MEDIA2,
            &x,
            2,
            60,
            &format!(
                "<tr2:Capabilities SnapshotUri=\"true\"><tr2:ProfileCapabilities MaximumNumberOfProfiles=\"{n}\"/><tr2:StreamingCapabilities RTP_RTSP_TCP=\"true\"/></tr2:Capabilities>"
            )
        ),
        one(
            super::events::NS_EVENTS,
            &ev,
            2,
            60,
            &format!(
                "<tev:Capabilities WSSubscriptionPolicySupport=\"false\" WSPullPointSupport=\"true\" WSPausableSubscriptionManagerInterfaceSupport=\"false\" MaxNotificationProducers=\"0\" MaxPullPoints=\"{}\"/>",
                super::events::MAX_SUBSCRIPTIONS
            )
        ),
    )
}

fn network_interfaces(at: &Reached) -> String {
    let ip = at
        .host
        .parse::<std::net::Ipv4Addr>()
        .unwrap_or(std::net::Ipv4Addr::LOCALHOST);
    format!(
        "<tds:GetNetworkInterfacesResponse><tds:NetworkInterfaces token=\"eth0\"><tt:Enabled>true</tt:Enabled><tt:Info><tt:Name>eth0</tt:Name><tt:HwAddress>02:00:00:00:00:01</tt:HwAddress><tt:MTU>1500</tt:MTU></tt:Info><tt:IPv4><tt:Enabled>true</tt:Enabled><tt:Config><tt:Manual><tt:Address>{ip}</tt:Address><tt:PrefixLength>24</tt:PrefixLength></tt:Manual><tt:DHCP>false</tt:DHCP></tt:Config></tt:IPv4></tds:NetworkInterfaces></tds:GetNetworkInterfacesResponse>"
    )
}

/// (width, height, frames per second) of a video, 0 when there is none.
fn dims(video: Option<&Video>) -> (u32, u32, String) {
    match video {
        Some(v) => (v.width, v.height, format!("{:.3}", v.fps)),
        None => (0, 0, "0".into()),
    }
}

fn source_config(dev: &Device, element: &str) -> String {
    let (w, h, _) = dims(dev.video.as_ref());
    let uses = profiles(dev).len();
    format!(
        "<{element} token=\"{SOURCE_CONFIG_TOKEN}\"><tt:Name>{SOURCE_CONFIG_TOKEN}</tt:Name><tt:UseCount>{uses}</tt:UseCount><tt:SourceToken>{SOURCE_TOKEN}</tt:SourceToken><tt:Bounds x=\"0\" y=\"0\" width=\"{w}\" height=\"{h}\"/></{element}>"
    )
}

fn encoder_config(p: &Profile<'_>, element: &str) -> String {
    let (w, h, fps) = dims(p.video);
    let enc = p.encoder;
    let (encoding, extra) = match p.video.map(|v| v.codec) {
        // Media1 has no H.265 encoding; cameras write H265 there all the same, and Media2 is
        // where a client should read it.
        Some(VideoCodec::H265) => ("H265", String::new()),
        _ => (
            "H264",
            "<tt:H264><tt:GovLength>0</tt:GovLength><tt:H264Profile>Main</tt:H264Profile></tt:H264>"
                .to_string(),
        ),
    };
    let fps_limit = fps.parse::<f64>().map(|f| f.round() as u32).unwrap_or(0);
    format!(
        "<{element} token=\"{enc}\"><tt:Name>{enc}</tt:Name><tt:UseCount>1</tt:UseCount><tt:Encoding>{encoding}</tt:Encoding><tt:Resolution><tt:Width>{w}</tt:Width><tt:Height>{h}</tt:Height></tt:Resolution><tt:Quality>5</tt:Quality><tt:RateControl><tt:FrameRateLimit>{fps_limit}</tt:FrameRateLimit><tt:EncodingInterval>1</tt:EncodingInterval><tt:BitrateLimit>0</tt:BitrateLimit></tt:RateControl>{extra}<tt:Multicast><tt:Address><tt:Type>IPv4</tt:Type><tt:IPv4Address>0.0.0.0</tt:IPv4Address></tt:Address><tt:Port>0</tt:Port><tt:TTL>0</tt:TTL><tt:AutoStart>false</tt:AutoStart></tt:Multicast><tt:SessionTimeout>PT60S</tt:SessionTimeout></{element}>"
    )
}

fn encoder2_config(p: &Profile<'_>) -> String {
    let (w, h, fps) = dims(p.video);
    let enc = p.encoder;
    let encoding = match p.video.map(|v| v.codec) {
        Some(VideoCodec::H265) => "H265",
        _ => "H264",
    };
    format!(
        "<tr2:VideoEncoder token=\"{enc}\"><tt:Name>{enc}</tt:Name><tt:UseCount>1</tt:UseCount><tt:Encoding>{encoding}</tt:Encoding><tt:Resolution><tt:Width>{w}</tt:Width><tt:Height>{h}</tt:Height></tt:Resolution><tt:RateControl><tt:FrameRateLimit>{fps}</tt:FrameRateLimit><tt:BitrateLimit>0</tt:BitrateLimit></tt:RateControl><tt:Quality>5</tt:Quality></tr2:VideoEncoder>"
    )
}
