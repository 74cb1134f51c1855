//! Layer 5: `ping`, for the checks: an ICMP echo request on a raw socket (or,
//! without CAP_NET_RAW, on a ping socket).

use anyhow::{bail, Context, Result};
use std::net::Ipv4Addr;

/// What `ping -c 3` does, stopping at the first answer: an ICMP echo request on a
/// raw socket, then wait up to a second for the echo reply, three times (the
/// first request also waits for ARP, and a busy machine may be slow). Returns
/// the round trip of the request that was answered, in milliseconds.
pub fn ping(ip: Ipv4Addr) -> Result<f64> {
    use nix::sys::socket::{
        recvfrom, sendto, setsockopt, socket, sockopt, AddressFamily, MsgFlags, SockFlag,
        SockProtocol, SockType, SockaddrIn,
    };
    use std::os::fd::AsRawFd;
    // Without CAP_NET_RAW (Podman drops it), a "ping socket" of the datagram
    // kind, which the kernel allows to the groups of net.ipv4.ping_group_range
    // (Podman sets it so that root inside may ping).
    let raw = socket(
        AddressFamily::Inet,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::Icmp,
    );
    let (fd, with_ip_header) = match raw {
        Ok(fd) => (fd, true),
        Err(nix::errno::Errno::EPERM) => (
            socket(
                AddressFamily::Inet,
                SockType::Datagram,
                SockFlag::SOCK_CLOEXEC,
                SockProtocol::Icmp,
            )
            .context(
                "socket(AF_INET, SOCK_RAW, IPPROTO_ICMP): EPERM (no CAP_NET_RAW), and a ping socket (SOCK_DGRAM) is not allowed either: net.ipv4.ping_group_range",
            )?,
            false,
        ),
        Err(e) => return Err(e).context("socket(AF_INET, SOCK_RAW, IPPROTO_ICMP)"),
    };
    setsockopt(
        &fd,
        sockopt::ReceiveTimeout,
        &nix::sys::time::TimeVal::new(0, 200_000),
    )?;
    let id = (std::process::id() & 0xffff) as u16;
    let to = SockaddrIn::from(std::net::SocketAddrV4::new(ip, 0));
    let mut buf = [0u8; 1500];
    for seq in 1..=3u16 {
        // Type 8 (echo request), code 0, checksum, identifier, sequence number, data.
        let mut packet = vec![8u8, 0, 0, 0];
        packet.extend_from_slice(&id.to_be_bytes());
        packet.extend_from_slice(&seq.to_be_bytes());
        packet.extend_from_slice(b"lab ping");
        let sum = checksum(&packet);
        packet[2..4].copy_from_slice(&sum.to_be_bytes());
        let start = std::time::Instant::now();
        sendto(fd.as_raw_fd(), &packet, &to, MsgFlags::empty())
            .context("sending the echo request")?;
        while start.elapsed().as_millis() < 1000 {
            let Ok((n, from)) = recvfrom::<SockaddrIn>(fd.as_raw_fd(), &mut buf) else {
                continue;
            };
            // A raw socket gets the IP header too: its length is in the low nibble.
            let ihl = match with_ip_header {
                true => ((buf[0] & 0x0f) as usize) * 4,
                false => 0,
            };
            let icmp = &buf[ihl.min(n)..n];
            let from_ip = from.map(|f| f.ip());
            // Any of our requests counts: a late reply to an earlier one still
            // proves the path. (A ping socket's identifier is the kernel's.)
            if icmp.len() >= 8
                && icmp[0] == 0
                && (!with_ip_header || icmp[4..6] == id.to_be_bytes())
                && from_ip == Some(ip)
            {
                return Ok(start.elapsed().as_secs_f64() * 1000.0);
            }
        }
    }
    bail!("no echo reply to 3 requests, 1 s each")
}

/// The Internet checksum: one's complement of the one's complement sum of 16-bit words.
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32)
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checksum_of_an_echo_request_verifies_to_zero() {
        let mut p = vec![8u8, 0, 0, 0, 0x12, 0x34, 0, 1, b'a', b'b', b'c'];
        let sum = checksum(&p);
        p[2..4].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(checksum(&p), 0);
    }
}
