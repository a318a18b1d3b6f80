//! The RTCP packets nvrkit sends (RFC 3550 §6).

use bytes::{BufMut, BytesMut};

/// A sender report followed by an SDES with the CNAME: the compound packet RFC 3550 §6.1
/// requires.
#[allow(clippy::too_many_arguments)] // reason: one argument per field of the report
pub fn sender_report(
    out: &mut BytesMut,
    ssrc: u32,
    ntp: u64,
    rtp_timestamp: u32,
    packets: u32,
    octets: u32,
    cname: &str,
) {
    // SR, §6.4.1: header, SSRC, NTP (64), RTP ts, packet count, octet count; no blocks.
    out.put_u8(0x80);
    out.put_u8(200);
    out.put_u16(6); // length in 32-bit words minus one
    out.put_u32(ssrc);
    out.put_u64(ntp);
    out.put_u32(rtp_timestamp);
    out.put_u32(packets);
    out.put_u32(octets);
    sdes(out, ssrc, cname);
}

/// SDES with one CNAME item, §6.5.
pub fn sdes(out: &mut BytesMut, ssrc: u32, cname: &str) {
    let name = &cname.as_bytes()[..cname.len().min(255)];
    // SSRC (4) + type (1) + length (1) + text + at least one null, padded to 4.
    let chunk = 4 + 2 + name.len() + 1;
    let padded = chunk.div_ceil(4) * 4;
    out.put_u8(0x81); // one chunk
    out.put_u8(202);
    out.put_u16((padded / 4) as u16);
    out.put_u32(ssrc);
    out.put_u8(1); // CNAME
    out.put_u8(name.len() as u8);
    out.put_slice(name);
    out.put_bytes(0, padded - chunk + 1);
}

/// BYE for one source, §6.6.
pub fn bye(out: &mut BytesMut, ssrc: u32) {
    out.put_u8(0x81);
    out.put_u8(203);
    out.put_u16(1);
    out.put_u32(ssrc);
}

/// True if `packet` is an RTCP packet a receiver sends (RR, or a compound starting with
/// one; also SDES/BYE/APP/feedback): liveness from a client.
pub fn is_receiver_rtcp(packet: &[u8]) -> bool {
    packet.len() >= 8 && packet[0] >> 6 == 2 && (201..=206).contains(&packet[1])
}
