//! Talking to the kernel's network stack the way `ip` does: rtnetlink.
//!
//! `ip link add`, `ip addr add` and `ip route add` are front ends: each sends one
//! message over a netlink socket (`socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE)`)
//! and reads the kernel's answer. A message is a 16-byte header, a fixed struct
//! for its kind (`ifinfomsg` for links, `ifaddrmsg` for addresses, `rtmsg` for
//! routes), then attributes: type-length-value records, which may nest. This file
//! builds those bytes by hand, so that nothing hides what `ip` sends
//! (see rtnetlink(7) and netlink(7)).

use anyhow::{bail, Context, Result};
use nix::errno::Errno;
use nix::sys::socket::{
    bind, recv, sendto, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol,
    SockType,
};
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};

// Message types (linux/rtnetlink.h) and header flags (linux/netlink.h).
const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_GETADDR: u16 = 22;
const RTM_NEWROUTE: u16 = 24;
const RTM_GETROUTE: u16 = 26;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_DUMP: u16 = 0x300;

// Attributes of a link (linux/if_link.h), an address (linux/if_addr.h), a route.
const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_PID: u16 = 19;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_TABLE: u16 = 15;

const AF_INET: u8 = 2;
const IFF_UP: u32 = 0x1;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_BOOT: u8 = 3;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RTN_UNICAST: u8 = 1;

/// A network interface, as `ip link` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub up: bool,
    /// The bridge it is attached to (its index), if any.
    pub master: Option<u32>,
    /// `bridge`, `veth`, `dummy`... (None for physical devices and lo).
    pub kind: Option<String>,
    pub mac: Vec<u8>,
}

/// An IPv4 address on an interface, as `ip -4 addr` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Address {
    pub index: u32,
    pub ip: Ipv4Addr,
    pub prefix: u8,
}

/// An IPv4 route of the main table, as `ip route` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub dst: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Option<Ipv4Addr>,
    pub oif: Option<u32>,
}

/// An open rtnetlink socket, in the network namespace of the thread that opened it.
pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
}

impl Netlink {
    pub fn open() -> Result<Netlink> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkRoute,
        )
        .context("socket(AF_NETLINK, NETLINK_ROUTE)")?;
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0)).context("bind(netlink)")?;
        Ok(Netlink { fd, seq: 0 })
    }

    // ── ip link ──────────────────────────────────────────────────────────────

    /// `ip link add NAME [address MAC] type bridge`
    pub fn add_bridge(&mut self, name: &str, mac: Option<[u8; 6]>) -> Result<()> {
        let mut m = Message::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
        m.ifinfo(0, 0, 0);
        m.attr_str(IFLA_IFNAME, name);
        if let Some(mac) = mac {
            m.attr(IFLA_ADDRESS, &mac);
        }
        let info = m.begin(IFLA_LINKINFO);
        m.attr_str(IFLA_INFO_KIND, "bridge");
        m.end(info);
        self.ack(m)
    }

    /// `ip link add NAME type veth peer name PEER`: two ends of one cable.
    /// With `peer_netns`, the peer is made in the network namespace of that PID.
    pub fn add_veth(
        &mut self,
        name: &str,
        peer: &str,
        peer_mac: Option<[u8; 6]>,
        peer_netns: Option<i32>,
    ) -> Result<()> {
        let mut m = Message::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
        m.ifinfo(0, 0, 0);
        m.attr_str(IFLA_IFNAME, name);
        let info = m.begin(IFLA_LINKINFO);
        m.attr_str(IFLA_INFO_KIND, "veth");
        let data = m.begin(IFLA_INFO_DATA);
        // The peer is described by a whole link message of its own, nested.
        let p = m.begin(VETH_INFO_PEER);
        m.ifinfo(0, 0, 0);
        m.attr_str(IFLA_IFNAME, peer);
        if let Some(mac) = peer_mac {
            m.attr(IFLA_ADDRESS, &mac);
        }
        if let Some(pid) = peer_netns {
            m.attr_u32(IFLA_NET_NS_PID, pid as u32);
        }
        m.end(p);
        m.end(data);
        m.end(info);
        self.ack(m)
    }

    /// `ip link set NAME up`
    pub fn set_up(&mut self, index: u32) -> Result<()> {
        let mut m = Message::new(RTM_NEWLINK, 0);
        m.ifinfo(index, IFF_UP, IFF_UP);
        self.ack(m)
    }

    /// `ip link set NAME master BRIDGE`
    pub fn set_master(&mut self, index: u32, bridge: u32) -> Result<()> {
        let mut m = Message::new(RTM_NEWLINK, 0);
        m.ifinfo(index, 0, 0);
        m.attr_u32(IFLA_MASTER, bridge);
        self.ack(m)
    }

    /// `ip link del NAME`
    pub fn delete_link(&mut self, index: u32) -> Result<()> {
        let mut m = Message::new(RTM_DELLINK, 0);
        m.ifinfo(index, 0, 0);
        self.ack(m)
    }

    /// `ip link show`
    pub fn links(&mut self) -> Result<Vec<Link>> {
        let mut m = Message::new(RTM_GETLINK, NLM_F_DUMP);
        m.ifinfo(0, 0, 0);
        Ok(self.dump(m)?.iter().filter_map(|b| parse_link(b)).collect())
    }

    /// `ip link show NAME`: asked by name, so that its cost does not grow with the
    /// number of links (fifty containers put fifty veths on the host).
    pub fn link(&mut self, name: &str) -> Result<Option<Link>> {
        let mut m = Message::new(RTM_GETLINK, 0);
        m.ifinfo(0, 0, 0);
        m.attr_str(IFLA_IFNAME, name);
        let seq = self.send(m, NLM_F_REQUEST)?;
        loop {
            for (kind, s, body) in self.receive()? {
                if s != seq {
                    continue;
                }
                if kind == NLMSG_ERROR {
                    return match errno_of(&body) {
                        Err(e) if e.downcast_ref() == Some(&Errno::ENODEV) => Ok(None),
                        Err(e) => Err(e),
                        Ok(()) => Ok(None),
                    };
                }
                return Ok(parse_link(&body));
            }
        }
    }

    /// The index of link `name`, or an error that names it.
    pub fn index(&mut self, name: &str) -> Result<u32> {
        self.link(name)?
            .map(|l| l.index)
            .with_context(|| format!("no network interface named {name}"))
    }

    // ── ip addr ──────────────────────────────────────────────────────────────

    /// `ip addr add IP/PREFIX dev NAME` (the kernel adds the route to the subnet).
    pub fn add_address(&mut self, index: u32, ip: Ipv4Addr, prefix: u8) -> Result<()> {
        let mut m = Message::new(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL);
        // struct ifaddrmsg: family, prefix length, flags, scope, interface index.
        m.bytes(&[AF_INET, prefix, 0, RT_SCOPE_UNIVERSE]);
        m.bytes(&index.to_ne_bytes());
        m.attr(IFA_LOCAL, &ip.octets());
        m.attr(IFA_ADDRESS, &ip.octets());
        self.ack(m)
    }

    /// `ip -4 addr show`
    pub fn addresses(&mut self) -> Result<Vec<Address>> {
        let mut m = Message::new(RTM_GETADDR, NLM_F_DUMP);
        m.bytes(&[AF_INET, 0, 0, 0, 0, 0, 0, 0]);
        let mut found = Vec::new();
        for body in self.dump(m)? {
            let Some((head, attrs)) = split(&body, 8) else {
                continue;
            };
            if head[0] != AF_INET {
                continue;
            }
            let mut ip = None;
            for (kind, value) in attributes(attrs) {
                // IFA_LOCAL is the interface's own address; IFA_ADDRESS the peer's
                // on point-to-point links, else the same.
                if (kind == IFA_LOCAL || (kind == IFA_ADDRESS && ip.is_none())) && value.len() == 4
                {
                    ip = Some(Ipv4Addr::new(value[0], value[1], value[2], value[3]));
                }
            }
            if let Some(ip) = ip {
                found.push(Address {
                    index: u32_at(head, 4),
                    ip,
                    prefix: head[1],
                });
            }
        }
        Ok(found)
    }

    // ── ip route ─────────────────────────────────────────────────────────────

    /// `ip route add default via GATEWAY`
    pub fn add_default_route(&mut self, gateway: Ipv4Addr) -> Result<()> {
        let mut m = Message::new(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL);
        // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags.
        m.bytes(&[
            AF_INET,
            0,
            0,
            0,
            RT_TABLE_MAIN,
            RTPROT_BOOT,
            RT_SCOPE_UNIVERSE,
            RTN_UNICAST,
        ]);
        m.bytes(&0u32.to_ne_bytes());
        m.attr(RTA_GATEWAY, &gateway.octets());
        self.ack(m)
    }

    /// `ip -4 route show` (the main table).
    pub fn routes(&mut self) -> Result<Vec<Route>> {
        let mut m = Message::new(RTM_GETROUTE, NLM_F_DUMP);
        m.bytes(&[AF_INET, 0, 0, 0, 0, 0, 0, 0]);
        m.bytes(&0u32.to_ne_bytes());
        let mut found = Vec::new();
        for body in self.dump(m)? {
            let Some((head, attrs)) = split(&body, 12) else {
                continue;
            };
            let mut table = head[4] as u32;
            let mut route = Route {
                dst: Ipv4Addr::UNSPECIFIED,
                prefix: head[1],
                gateway: None,
                oif: None,
            };
            let ip = |v: &[u8]| (v.len() == 4).then(|| Ipv4Addr::new(v[0], v[1], v[2], v[3]));
            for (kind, value) in attributes(attrs) {
                match kind {
                    RTA_DST => route.dst = ip(value).unwrap_or(route.dst),
                    RTA_GATEWAY => route.gateway = ip(value),
                    RTA_OIF if value.len() >= 4 => route.oif = Some(u32_at(value, 0)),
                    RTA_TABLE if value.len() >= 4 => table = u32_at(value, 0),
                    _ => {}
                }
            }
            if head[0] == AF_INET && table == RT_TABLE_MAIN as u32 {
                found.push(route);
            }
        }
        Ok(found)
    }

    // ── The conversation ─────────────────────────────────────────────────────

    fn send(&mut self, mut m: Message, flags: u16) -> Result<u32> {
        self.seq += 1;
        m.finish(self.seq, flags);
        sendto(
            self.fd.as_raw_fd(),
            &m.0,
            &NetlinkAddr::new(0, 0),
            MsgFlags::empty(),
        )
        .context("sendto(netlink)")?;
        Ok(self.seq)
    }

    /// Send a request and read the kernel's acknowledgement: an error message whose
    /// error number is 0 on success.
    fn ack(&mut self, m: Message) -> Result<()> {
        let seq = self.send(m, NLM_F_REQUEST | NLM_F_ACK)?;
        loop {
            for (kind, s, body) in self.receive()? {
                if s != seq {
                    continue;
                }
                if kind == NLMSG_ERROR {
                    return errno_of(&body);
                }
            }
        }
    }

    /// Send a dump request and collect the bodies of every answer until DONE.
    fn dump(&mut self, m: Message) -> Result<Vec<Vec<u8>>> {
        let seq = self.send(m, NLM_F_REQUEST)?;
        let mut bodies = Vec::new();
        loop {
            for (kind, s, body) in self.receive()? {
                if s != seq {
                    continue;
                }
                match kind {
                    NLMSG_DONE => return Ok(bodies),
                    NLMSG_ERROR => {
                        errno_of(&body)?;
                        return Ok(bodies);
                    }
                    _ => bodies.push(body),
                }
            }
        }
    }

    /// One datagram from the kernel, cut into messages: (type, sequence, body).
    fn receive(&mut self) -> Result<Vec<(u16, u32, Vec<u8>)>> {
        let mut buf = vec![0u8; 65536];
        let n = loop {
            match recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                Err(Errno::EINTR) => continue,
                other => break other.context("recv(netlink)")?,
            }
        };
        let mut out = Vec::new();
        let mut rest = &buf[..n];
        while rest.len() >= 16 {
            let len = u32_at(rest, 0) as usize;
            if len < 16 || len > rest.len() {
                break;
            }
            let kind = u16::from_ne_bytes([rest[4], rest[5]]);
            out.push((kind, u32_at(rest, 8), rest[16..len].to_vec()));
            rest = &rest[align(len).min(rest.len())..];
        }
        Ok(out)
    }
}

/// The error of an NLMSG_ERROR body (a negative errno, 0 for success).
fn errno_of(body: &[u8]) -> Result<()> {
    if body.len() < 4 {
        bail!("a netlink error message too short to read");
    }
    match i32::from_ne_bytes([body[0], body[1], body[2], body[3]]) {
        0 => Ok(()),
        e => Err(Errno::from_raw(-e).into()),
    }
}

/// A request being built: header first, its length filled in at the end.
struct Message(Vec<u8>);

impl Message {
    fn new(kind: u16, flags: u16) -> Message {
        let mut b = vec![0u8; 16];
        b[4..6].copy_from_slice(&kind.to_ne_bytes());
        b[6..8].copy_from_slice(&flags.to_ne_bytes());
        Message(b)
    }
    fn finish(&mut self, seq: u32, flags: u16) {
        let len = self.0.len() as u32;
        self.0[0..4].copy_from_slice(&len.to_ne_bytes());
        let f = u16::from_ne_bytes([self.0[6], self.0[7]]) | flags;
        self.0[6..8].copy_from_slice(&f.to_ne_bytes());
        self.0[8..12].copy_from_slice(&seq.to_ne_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.0.extend_from_slice(b);
    }
    /// struct ifinfomsg: family, pad, type, index, flags, and which flags to change.
    fn ifinfo(&mut self, index: u32, flags: u32, change: u32) {
        self.bytes(&[0, 0, 0, 0]);
        self.bytes(&index.to_ne_bytes());
        self.bytes(&flags.to_ne_bytes());
        self.bytes(&change.to_ne_bytes());
    }
    /// struct rtattr: length, type, value, padded to 4 bytes.
    fn attr(&mut self, kind: u16, value: &[u8]) {
        let len = (4 + value.len()) as u16;
        self.bytes(&len.to_ne_bytes());
        self.bytes(&kind.to_ne_bytes());
        self.bytes(value);
        self.pad();
    }
    fn attr_str(&mut self, kind: u16, s: &str) {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        self.attr(kind, &v);
    }
    fn attr_u32(&mut self, kind: u16, v: u32) {
        self.attr(kind, &v.to_ne_bytes());
    }
    /// Open a nested attribute; its length is written by [`Message::end`].
    fn begin(&mut self, kind: u16) -> usize {
        let at = self.0.len();
        self.bytes(&[0, 0]);
        self.bytes(&kind.to_ne_bytes());
        at
    }
    fn end(&mut self, at: usize) {
        let len = (self.0.len() - at) as u16;
        self.0[at..at + 2].copy_from_slice(&len.to_ne_bytes());
    }
    fn pad(&mut self) {
        while self.0.len() % 4 != 0 {
            self.0.push(0);
        }
    }
}

fn align(n: usize) -> usize {
    (n + 3) & !3
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn c_string(v: &[u8]) -> String {
    let end = v.iter().position(|&b| b == 0).unwrap_or(v.len());
    String::from_utf8_lossy(&v[..end]).into_owned()
}

/// The fixed struct of a message body, and the attributes after it.
fn split(body: &[u8], fixed: usize) -> Option<(&[u8], &[u8])> {
    (body.len() >= fixed).then(|| body.split_at(align(fixed).min(body.len())))
}

/// The attributes in `b`, as (type, value); nested ones are read the same way.
fn attributes(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if b.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
        if len < 4 || len > b.len() {
            return None;
        }
        // The top bit marks nested attributes on some kernels: not part of the type.
        let kind = u16::from_ne_bytes([b[2], b[3]]) & 0x3fff;
        let value = &b[4..len];
        b = &b[align(len).min(b.len())..];
        Some((kind, value))
    })
}

/// A link message (RTM_NEWLINK) as [`Link`].
fn parse_link(body: &[u8]) -> Option<Link> {
    let (head, attrs) = split(body, 16)?;
    let mut link = Link {
        index: u32_at(head, 4),
        name: String::new(),
        up: u32_at(head, 8) & IFF_UP != 0,
        master: None,
        kind: None,
        mac: Vec::new(),
    };
    for (kind, value) in attributes(attrs) {
        match kind {
            IFLA_IFNAME => link.name = c_string(value),
            IFLA_MASTER if value.len() >= 4 => link.master = Some(u32_at(value, 0)),
            IFLA_ADDRESS => link.mac = value.to_vec(),
            IFLA_LINKINFO => {
                link.kind = attributes(value)
                    .find(|(k, _)| *k == IFLA_INFO_KIND)
                    .map(|(_, v)| c_string(v));
            }
            _ => {}
        }
    }
    Some(link)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_attributes_carry_their_whole_length() {
        let mut m = Message::new(RTM_NEWLINK, 0);
        let info = m.begin(IFLA_LINKINFO);
        m.attr_str(IFLA_INFO_KIND, "veth");
        m.end(info);
        let attrs: Vec<(u16, Vec<u8>)> = attributes(&m.0[16..])
            .map(|(k, v)| (k, v.to_vec()))
            .collect();
        assert_eq!(attrs.len(), 1);
        assert_eq!(attrs[0].0, IFLA_LINKINFO);
        let inner: Vec<(u16, String)> = attributes(&attrs[0].1)
            .map(|(k, v)| (k, c_string(v)))
            .collect();
        assert_eq!(inner, vec![(IFLA_INFO_KIND, "veth".to_string())]);
    }

    #[test]
    fn a_dump_of_this_namespace_lists_lo() {
        let mut nl = Netlink::open().unwrap();
        let links = nl.links().unwrap();
        assert!(links.iter().any(|l| l.name == "lo"), "{links:?}");
    }
}
