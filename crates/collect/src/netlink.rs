//! Links, addresses and routes of a network namespace, read over a synchronous rtnetlink socket.
//!
//! A netlink socket belongs to the namespace of the thread that *creates* it, so [`read_current`]
//! opens its socket on the calling thread and [`read`] runs it on a thread that has entered the
//! namespace ([`Netns::run`]). Nothing here reads `/sys/class/net` or `/proc/net/*`: both follow the
//! namespace of whoever mounted /sys or of the main thread, not of the calling thread.
//!
//! The pure helpers at the end ([`route_lookup`], [`is_local`], [`veth_peer`], ...) work on
//! [`NetnsFacts`] alone, so the analysis can use them on a saved bundle.

use crate::error::{CollectError, Result};
use crate::netns::Netns;
use hostreach_model::{AddrFact, LinkFact, NetnsFacts, RouteFact};
use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST, NetlinkBuffer, NetlinkDeserializable,
    NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteMetric, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;

/// The main and local routing tables' ids.
pub use hostreach_model::routes::{RT_TABLE_LOCAL, RT_TABLE_MAIN};

/// Links, addresses (IPv4 and IPv6) and routes (every table) of the network namespace the calling
/// thread is in.
pub fn read_current() -> Result<NetnsFacts> {
    let inode = std::fs::metadata("/proc/thread-self/ns/net")
        .map(|m| m.ino())
        .ok();
    let links = dump_route(
        RouteNetlinkMessage::GetLink(LinkMessage::default()),
        "listing links",
    )?
    .into_iter()
    .filter_map(|m| match m {
        RouteNetlinkMessage::NewLink(l) => Some(link_fact(&l)),
        _ => None,
    })
    .collect();
    let addresses = dump_route(
        RouteNetlinkMessage::GetAddress(AddressMessage::default()),
        "listing addresses",
    )?
    .into_iter()
    .filter_map(|m| match m {
        RouteNetlinkMessage::NewAddress(a) => addr_fact(&a),
        _ => None,
    })
    .collect();
    let routes = dump_route(
        RouteNetlinkMessage::GetRoute(RouteMessage::default()),
        "listing routes",
    )?
    .into_iter()
    .filter_map(|m| match m {
        RouteNetlinkMessage::NewRoute(r) => route_fact(&r),
        _ => None,
    })
    .collect();
    Ok(NetnsFacts {
        inode,
        links,
        addresses,
        routes,
    })
}

/// The same as [`read_current`] for another namespace, read on a dedicated thread inside it.
pub fn read(ns: &Netns) -> Result<NetnsFacts> {
    let expected = ns.inode();
    let facts = ns.run("hr-netlink", read_current)?;
    if let Some(seen) = facts.inode
        && seen != expected
    {
        return Err(CollectError::Unavailable(format!(
            "read namespace {seen} instead of {} ({})",
            expected,
            ns.path().display()
        )));
    }
    Ok(facts)
}

// ---------------------------------------------------------------------------------------------
// Conversion of rtnetlink messages into facts.

fn link_fact(msg: &LinkMessage) -> LinkFact {
    let mut fact = LinkFact {
        index: msg.header.index,
        name: String::new(),
        kind: None,
        mtu: None,
        up: msg.header.flags.contains(LinkFlags::Up),
        lower_up: msg.header.flags.contains(LinkFlags::LowerUp),
        mac: None,
        master: None,
        peer_index: None,
        peer_netnsid: None,
    };
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => fact.name = n.clone(),
            LinkAttribute::Mtu(m) => fact.mtu = Some(*m),
            LinkAttribute::Address(a) if !a.is_empty() => fact.mac = Some(format_mac(a)),
            LinkAttribute::Controller(m) if *m != 0 => fact.master = Some(*m),
            LinkAttribute::Link(l) if *l != 0 => fact.peer_index = Some(*l),
            LinkAttribute::LinkNetNsId(id) => fact.peer_netnsid = Some(*id),
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    if let LinkInfo::Kind(k) = info {
                        fact.kind = Some(k.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    fact
}

/// `aa:bb:cc:dd:ee:ff` (any length: tunnels have 4- or 16-byte link addresses).
pub fn format_mac(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn addr_fact(msg: &AddressMessage) -> Option<AddrFact> {
    if !matches!(
        msg.header.family,
        AddressFamily::Inet | AddressFamily::Inet6
    ) {
        return None;
    }
    // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer's on point-to-point links.
    // IPv6 sends only IFA_ADDRESS (plus IFA_LOCAL on peer links).
    let mut local = None;
    let mut address = None;
    for attr in &msg.attributes {
        match attr {
            AddressAttribute::Local(a) => local = Some(*a),
            AddressAttribute::Address(a) => address = Some(*a),
            _ => {}
        }
    }
    Some(AddrFact {
        index: msg.header.index,
        address: local.or(address)?,
        prefix_len: msg.header.prefix_len,
    })
}

fn route_addr(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

/// The route type as iproute2 names it.
pub fn route_kind_name(kind: &RouteType) -> String {
    match kind {
        RouteType::Unspec => "unspec".into(),
        RouteType::Unicast => "unicast".into(),
        RouteType::Local => "local".into(),
        RouteType::Broadcast => "broadcast".into(),
        RouteType::Anycast => "anycast".into(),
        RouteType::Multicast => "multicast".into(),
        RouteType::BlackHole => "blackhole".into(),
        RouteType::Unreachable => "unreachable".into(),
        RouteType::Prohibit => "prohibit".into(),
        RouteType::Throw => "throw".into(),
        RouteType::Nat => "nat".into(),
        RouteType::ExternalResolve => "xresolve".into(),
        RouteType::Other(n) => format!("type-{n}"),
        _ => format!("{kind:?}").to_lowercase(),
    }
}

fn route_fact(msg: &RouteMessage) -> Option<RouteFact> {
    let h = &msg.header;
    if !matches!(h.address_family, AddressFamily::Inet | AddressFamily::Inet6) {
        // An AF_UNSPEC dump also brings multicast routing tables (RTNL_FAMILY_IPMR, ...).
        return None;
    }
    let mut fact = RouteFact {
        destination: None,
        prefix_len: h.destination_prefix_length,
        gateway: None,
        oif: None,
        // The header holds only 8 bits (RT_TABLE_COMPAT for ids above 255); RTA_TABLE has the id.
        table: u32::from(h.table),
        kind: route_kind_name(&h.kind),
        preferred_source: None,
        mtu: None,
    };
    let mut first_hop: Option<(u32, Option<IpAddr>)> = None;
    for attr in &msg.attributes {
        match attr {
            RouteAttribute::Destination(a) => fact.destination = route_addr(a),
            RouteAttribute::Gateway(a) => fact.gateway = route_addr(a),
            RouteAttribute::Oif(i) => fact.oif = Some(*i),
            RouteAttribute::Table(t) => fact.table = *t,
            RouteAttribute::PrefSource(a) => fact.preferred_source = route_addr(a),
            RouteAttribute::Metrics(ms) => {
                for m in ms {
                    if let RouteMetric::Mtu(mtu) = m {
                        fact.mtu = Some(*mtu);
                    }
                }
            }
            RouteAttribute::MultiPath(hops) => {
                if let Some(hop) = hops.first() {
                    let gw = hop.attributes.iter().find_map(|a| match a {
                        RouteAttribute::Gateway(g) => route_addr(g),
                        _ => None,
                    });
                    first_hop = Some((hop.interface_index, gw));
                }
            }
            _ => {}
        }
    }
    // A multipath route carries its gateways in RTA_MULTIPATH: report the first next hop.
    if let Some((oif, gw)) = first_hop {
        if fact.oif.is_none() && oif != 0 {
            fact.oif = Some(oif);
        }
        if fact.gateway.is_none() {
            fact.gateway = gw;
        }
    }
    if fact.prefix_len == 0 {
        fact.destination = None;
    }
    Some(fact)
}

// ---------------------------------------------------------------------------------------------
// A small synchronous netlink client: one request, read the multipart answer until NLMSG_DONE.

fn dump_route(msg: RouteNetlinkMessage, what: &str) -> Result<Vec<RouteNetlinkMessage>> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
    packet.finalize();
    let mut buf = vec![0; packet.buffer_len()];
    packet.serialize(&mut buf);
    dump(NETLINK_ROUTE, &mut buf, what)
}

/// Sends `request` (a complete netlink message with NLM_F_DUMP) on a fresh socket of `protocol`,
/// created on the calling thread (hence in its network namespace), and collects every answer until
/// NLMSG_DONE. A dump the kernel marks inconsistent (NLM_F_DUMP_INTR: the tables changed while
/// being read) is repeated a few times. The sequence number in `request` is overwritten.
pub(crate) fn dump<I>(protocol: isize, request: &mut [u8], what: &str) -> Result<Vec<I>>
where
    I: NetlinkDeserializable,
{
    let mut out = Vec::new();
    dump_each(protocol, request, what, |part| match part {
        DumpPart::Restart => out.clear(),
        DumpPart::Message(chunk) => match NetlinkMessage::<I>::deserialize(chunk) {
            Ok(m) => {
                if let NetlinkPayload::InnerMessage(m) = m.payload {
                    out.push(m);
                }
            }
            // One message we cannot decode (a newer kernel's attribute layout) must not lose
            // the rest of the dump.
            Err(e) => tracing::debug!("{what}: skipping an undecodable netlink message: {e}"),
        },
    })?;
    Ok(out)
}

/// What [`dump_each`] hands to its sink.
pub(crate) enum DumpPart<'a> {
    /// One answer message, netlink header included (never a control message: those are handled).
    Message(&'a [u8]),
    /// The kernel marked the dump inconsistent and it is being read again: forget what came so far.
    Restart,
}

/// The streaming form of [`dump`]: each answer goes to `sink` as it is read, out of one reused
/// buffer, so a dump of 100,000 sockets is never held twice (as raw messages and as facts).
pub(crate) fn dump_each(protocol: isize, request: &mut [u8], what: &str, mut sink: impl FnMut(DumpPart<'_>)) -> Result<()> {
    let mut socket = Socket::new(protocol)
        .map_err(|e| CollectError::io(format!("{what}: opening a netlink socket"), e))?;
    socket
        .bind_auto()
        .map_err(|e| CollectError::io(format!("{what}: binding a netlink socket"), e))?;
    socket
        .connect(&SocketAddr::new(0, 0))
        .map_err(|e| CollectError::io(format!("{what}: connecting a netlink socket"), e))?;
    // The kernel fills each dump datagram up to the size of the reads it has seen, capped at 32 KiB,
    // unless a family needs bigger messages (min_dump_alloc): 1 MiB of address space, of which
    // only the part written is ever touched.
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
    const ATTEMPTS: u32 = 4;
    for attempt in 1..=ATTEMPTS {
        if attempt > 1 {
            sink(DumpPart::Restart);
        }
        request[8..12].copy_from_slice(&attempt.to_ne_bytes());
        let interrupted = dump_once(&socket, request, attempt, what, &mut buf, &mut sink)?;
        if !interrupted || attempt == ATTEMPTS {
            if interrupted {
                tracing::debug!(
                    "{what}: dump still inconsistent after {ATTEMPTS} attempts; keeping the last one"
                );
            }
            return Ok(());
        }
    }
    unreachable!("the last attempt returns")
}

const NLMSG_NOOP: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSG_OVERRUN: u16 = 4;

fn dump_once(
    socket: &Socket,
    request: &[u8],
    seq: u32,
    what: &str,
    buf: &mut Vec<u8>,
    sink: &mut impl FnMut(DumpPart<'_>),
) -> Result<bool> {
    loop {
        match socket.send(request, 0) {
            Ok(_) => break,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(CollectError::io(
                    format!("{what}: sending the netlink request"),
                    e,
                ));
            }
        }
    }
    let netlink_err = |detail: String| CollectError::Netlink { what: what.into(), detail };
    let mut interrupted = false;
    loop {
        buf.clear();
        let (n, from) = match socket.recv_from(buf, libc::MSG_TRUNC) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(CollectError::io(
                    format!("{what}: reading the netlink answer"),
                    e,
                ));
            }
        };
        if n == 0 {
            return Err(netlink_err("the socket was closed".into()));
        }
        if from.port_number() != 0 {
            continue; // not from the kernel
        }
        if n > buf.len() {
            return Err(netlink_err(format!("a {n}-byte datagram did not fit the {}-byte buffer", buf.len())));
        }
        let mut off = 0;
        while off < buf.len() {
            let b = NetlinkBuffer::new_checked(&buf[off..]).map_err(|e| netlink_err(format!("truncated message: {e}")))?;
            let len = b.length() as usize;
            if len < 16 {
                return Err(netlink_err(format!("bad message length {len}")));
            }
            let (ty, flags, msg_seq) = (b.message_type(), b.flags(), b.sequence_number());
            let chunk = &buf[off..off + len];
            off += (len + 3) & !3;
            if msg_seq != seq {
                continue; // the answer to an earlier, abandoned attempt
            }
            if flags & NLM_F_DUMP_INTR != 0 {
                interrupted = true;
            }
            let code = || chunk.get(16..20).map(|c| i32::from_ne_bytes([c[0], c[1], c[2], c[3]])).unwrap_or(0);
            match ty {
                NLMSG_NOOP => {}
                NLMSG_DONE => {
                    // The kernel may end a dump with an error in place of NLMSG_ERROR.
                    let c = code();
                    if c < 0 {
                        return Err(netlink_error(what, std::io::Error::from_raw_os_error(-c)));
                    }
                    return Ok(interrupted);
                }
                NLMSG_ERROR => {
                    let c = code();
                    if c == 0 {
                        continue; // an ACK
                    }
                    return Err(netlink_error(what, std::io::Error::from_raw_os_error(c.saturating_abs())));
                }
                NLMSG_OVERRUN => return Err(netlink_err("overrun".into())),
                _ => sink(DumpPart::Message(chunk)),
            }
        }
    }
}

/// The kernel refused the request: an `Io` error, so the errno stays inspectable
/// (`raw_os_error()`), and EPERM/EACCES become `Permission`.
fn netlink_error(what: &str, e: std::io::Error) -> CollectError {
    CollectError::io(format!("{what}: the kernel answered"), e)
}

/// The errno of a refusal from the kernel (see [`dump`]), if `e` is one.
pub(crate) fn errno_of(e: &CollectError) -> Option<i32> {
    match e {
        CollectError::Io { source, .. } => source.raw_os_error(),
        CollectError::Permission { .. } => Some(libc::EPERM),
        _ => None,
    }
}

// The pure helpers on these facts (route lookup, locality, veth peers, bridge ports) live in the
// model, where the rules use them too; re-exported here for callers of the collector.
pub use hostreach_model::routes::{
    default_route, is_local, master_of, peers_of, ports_of, prefix_contains, route_covers, route_is_v6, route_lookup,
    route_lookup_in, veth_peer,
};

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn route(
        dst: Option<&str>,
        len: u8,
        gw: Option<&str>,
        oif: u32,
        table: u32,
        kind: &str,
    ) -> RouteFact {
        RouteFact {
            destination: dst.map(ip),
            prefix_len: len,
            gateway: gw.map(ip),
            oif: Some(oif),
            table,
            kind: kind.into(),
            preferred_source: None,
            mtu: None,
        }
    }

    fn link(index: u32, name: &str) -> LinkFact {
        LinkFact {
            index,
            name: name.into(),
            kind: None,
            mtu: Some(1500),
            up: true,
            lower_up: true,
            mac: None,
            master: None,
            peer_index: None,
            peer_netnsid: None,
        }
    }

    fn container_facts() -> NetnsFacts {
        NetnsFacts {
            inode: Some(1),
            links: vec![
                link(1, "lo"),
                LinkFact {
                    peer_index: Some(7),
                    peer_netnsid: Some(0),
                    ..link(6, "eth0")
                },
            ],
            addresses: vec![
                AddrFact {
                    index: 1,
                    address: ip("127.0.0.1"),
                    prefix_len: 8,
                },
                AddrFact {
                    index: 6,
                    address: ip("172.17.0.2"),
                    prefix_len: 16,
                },
            ],
            routes: vec![
                route(None, 0, Some("172.17.0.1"), 6, 254, "unicast"),
                route(Some("172.17.0.0"), 16, None, 6, 254, "unicast"),
                route(Some("10.9.0.0"), 16, None, 6, 254, "unreachable"),
                route(None, 0, Some("fd00::1"), 6, 254, "unicast"),
                route(Some("fd00::"), 64, None, 6, 254, "unicast"),
                route(Some("127.0.0.0"), 8, None, 1, 255, "local"),
                route(Some("172.17.0.2"), 32, None, 6, 255, "local"),
                route(Some("172.17.255.255"), 32, None, 6, 255, "broadcast"),
            ],
        }
    }

    #[test]
    fn prefix_matching() {
        assert!(prefix_contains(&ip("10.0.0.0"), 8, &ip("10.200.1.1")));
        assert!(!prefix_contains(&ip("10.0.0.0"), 8, &ip("11.0.0.1")));
        assert!(prefix_contains(&ip("0.0.0.0"), 0, &ip("8.8.8.8")));
        assert!(prefix_contains(&ip("1.2.3.4"), 32, &ip("1.2.3.4")));
        assert!(!prefix_contains(&ip("1.2.3.4"), 33, &ip("1.2.3.4")));
        assert!(prefix_contains(&ip("fd00::"), 64, &ip("fd00::42")));
        assert!(!prefix_contains(&ip("fd00::"), 64, &ip("fd01::42")));
        assert!(
            !prefix_contains(&ip("0.0.0.0"), 0, &ip("::1")),
            "families never mix"
        );
    }

    #[test]
    fn lookup_prefers_longest_prefix_in_main_table() {
        let f = container_facts();
        let r = route_lookup(&f, ip("172.17.0.1")).unwrap();
        assert_eq!(
            (r.destination, r.prefix_len, r.gateway),
            (Some(ip("172.17.0.0")), 16, None)
        );
        let r = route_lookup(&f, ip("8.8.8.8")).unwrap();
        assert_eq!(r.gateway, Some(ip("172.17.0.1")));
        let r = route_lookup(&f, ip("10.9.3.3")).unwrap();
        assert_eq!(r.kind, "unreachable");
        // The local table's /32 is ignored: the main table's /16 answers.
        let r = route_lookup(&f, ip("172.17.0.2")).unwrap();
        assert_eq!(r.prefix_len, 16);
        let r = route_lookup(&f, ip("2001:db8::1")).unwrap();
        assert_eq!(r.gateway, Some(ip("fd00::1")));
        let r = route_lookup(&f, ip("fd00::9")).unwrap();
        assert_eq!(r.prefix_len, 64);
    }

    #[test]
    fn lookup_without_default_route_finds_nothing() {
        let mut f = container_facts();
        f.routes.retain(|r| r.destination.is_some());
        assert!(route_lookup(&f, ip("8.8.8.8")).is_none());
        assert!(route_lookup(&f, ip("2001:db8::1")).is_none());
        assert!(route_lookup(&NetnsFacts::default(), ip("127.0.0.1")).is_none());
    }

    #[test]
    fn familyless_default_route_covers_both_but_loses_to_a_known_one() {
        let mut f = container_facts();
        f.routes.insert(0, route(None, 0, None, 9, 254, "unicast"));
        assert_eq!(
            route_lookup(&f, ip("8.8.8.8")).unwrap().gateway,
            Some(ip("172.17.0.1"))
        );
        f.routes.retain(|r| r.gateway.is_none());
        assert_eq!(route_lookup(&f, ip("8.8.8.8")).unwrap().oif, Some(9));
        assert_eq!(route_lookup(&f, ip("2001:db8::1")).unwrap().oif, Some(9));
    }

    #[test]
    fn default_route_by_family() {
        let f = container_facts();
        assert_eq!(
            default_route(&f, false).unwrap().gateway,
            Some(ip("172.17.0.1"))
        );
        assert_eq!(
            default_route(&f, true).unwrap().gateway,
            Some(ip("fd00::1"))
        );
    }

    #[test]
    fn locality() {
        let f = container_facts();
        assert!(is_local(&f, &ip("127.0.0.1")));
        assert!(is_local(&f, &ip("127.1.2.3")), "all of 127/8 is local");
        assert!(is_local(&f, &ip("172.17.0.2")));
        assert!(!is_local(&f, &ip("172.17.0.1")));
        assert!(
            !is_local(&f, &ip("172.17.255.255")),
            "broadcast is not local"
        );
    }

    #[test]
    fn veth_and_bridge_helpers() {
        let c = container_facts();
        let host = NetnsFacts {
            links: vec![
                link(1, "lo"),
                LinkFact {
                    kind: Some("bridge".into()),
                    ..link(3, "docker0")
                },
                LinkFact {
                    kind: Some("veth".into()),
                    master: Some(3),
                    peer_index: Some(6),
                    peer_netnsid: Some(1),
                    ..link(7, "vethabc")
                },
                LinkFact {
                    kind: Some("veth".into()),
                    master: Some(3),
                    peer_index: Some(9),
                    peer_netnsid: Some(2),
                    ..link(8, "vethdef")
                },
            ],
            ..Default::default()
        };
        let eth0 = c.link_by_name("eth0").unwrap();
        let peer = veth_peer(eth0, &host).unwrap();
        assert_eq!(peer.name, "vethabc");
        assert_eq!(master_of(peer, &host).unwrap().name, "docker0");
        assert_eq!(
            peers_of(eth0, &host).map(|l| l.index).collect::<Vec<_>>(),
            vec![7]
        );
        let bridge = host.link_by_name("docker0").unwrap();
        assert_eq!(ports_of(bridge, &host).count(), 2);
        assert!(veth_peer(c.link_by_name("lo").unwrap(), &host).is_none());
    }

    #[test]
    fn mac_and_route_kind_formatting() {
        assert_eq!(
            format_mac(&[0x02, 0x42, 0xac, 0x11, 0, 2]),
            "02:42:ac:11:00:02"
        );
        assert_eq!(route_kind_name(&RouteType::BlackHole), "blackhole");
        assert_eq!(route_kind_name(&RouteType::Unicast), "unicast");
        assert_eq!(route_kind_name(&RouteType::from(42u8)), "type-42");
    }

    // --- against the kernel ---

    #[test]
    fn reads_this_namespace() {
        let f = read_current().unwrap();
        let lo = f.link_by_name("lo").expect("every namespace has lo");
        assert_eq!(lo.index, 1);
        assert_eq!(lo.kind, None);
        assert_eq!(lo.mac.as_deref(), Some("00:00:00:00:00:00"));
        let me = std::fs::metadata("/proc/thread-self/ns/net").unwrap().ino();
        assert_eq!(f.inode, Some(me));
        // Every address and route points at a link that exists.
        for a in &f.addresses {
            assert!(f.link(a.index).is_some(), "{a:?}");
        }
        for r in &f.routes {
            if let Some(oif) = r.oif {
                assert!(f.link(oif).is_some(), "{r:?}");
            }
        }
        if lo.up {
            assert!(f.owns(&IpAddr::V4(Ipv4Addr::LOCALHOST)));
            assert!(is_local(&f, &ip("127.0.0.53")));
            assert!(
                f.routes
                    .iter()
                    .any(|r| r.table == RT_TABLE_LOCAL && r.kind == "local")
            );
        }
    }

    #[test]
    fn of_pid_and_read_current_agree() {
        let here = read_current().unwrap();
        let ns = Netns::of_pid(std::process::id()).unwrap();
        match read(&ns) {
            Ok(there) => {
                assert_eq!(there.inode, Some(ns.inode()));
                assert_eq!(there.links, here.links);
                assert_eq!(there.addresses, here.addresses);
            }
            Err(e) => assert!(e.is_permission(), "{e}"),
        }
    }

    /// A fresh namespace has only `lo`; the caller's links must not show through. Then a veth pair
    /// and an address created inside it show up with their kind, peer index and MAC.
    #[test]
    fn fresh_namespace_sees_only_its_own_links() {
        let host = read_current().unwrap();
        let r = std::thread::spawn(|| -> Result<Option<(NetnsFacts, NetnsFacts)>> {
            if nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).is_err() {
                return Ok(None); // not root: nothing to test
            }
            let before = read_current()?;
            test_support::add_veth_pair("hrtest0", "hrtest1")?;
            test_support::set_up(1)?;
            let after = read_current()?;
            Ok(Some((before, after)))
        })
        .join()
        .unwrap()
        .unwrap();
        let Some((before, after)) = r else {
            eprintln!("skipped: unshare(CLONE_NEWNET) not permitted");
            return;
        };
        assert_ne!(before.inode, host.inode);
        assert_eq!(before.links.len(), 1, "{:?}", before.links);
        assert_eq!(before.links[0].name, "lo");
        assert!(!before.links[0].up, "lo starts down in a new namespace");
        assert!(
            before.addresses.is_empty(),
            "lo down: no address yet: {:?}",
            before.addresses
        );
        for l in &host.links {
            if l.name != "lo" {
                assert!(
                    before.link_by_name(&l.name).is_none(),
                    "host link {} leaked",
                    l.name
                );
            }
        }

        let a = after.link_by_name("hrtest0").unwrap();
        let b = after.link_by_name("hrtest1").unwrap();
        assert_eq!(a.kind.as_deref(), Some("veth"));
        assert_eq!(a.peer_index, Some(b.index));
        assert_eq!(b.peer_index, Some(a.index));
        assert_eq!(a.peer_netnsid, None, "both ends in the same namespace");
        assert!(!a.up);
        assert_eq!(a.mac.as_deref().map(|m| m.len()), Some(17));
        assert_eq!(veth_peer(a, &after).unwrap().name, "hrtest1");
        let lo = after.link_by_name("lo").unwrap();
        assert!(lo.up && lo.lower_up);
        assert!(after.owns(&IpAddr::V4(Ipv4Addr::LOCALHOST)));
        assert!(after.owns(&IpAddr::V6(Ipv6Addr::LOCALHOST)));
        assert!(is_local(&after, &ip("127.9.9.9")));
        assert!(
            after
                .routes
                .iter()
                .all(|r| r.oif.is_none_or(|o| after.link(o).is_some()))
        );
        assert!(
            route_lookup(&after, ip("8.8.8.8")).is_none(),
            "no default route in a fresh namespace"
        );
    }

    /// A veth pair across two fresh namespaces, like a container's eth0 and its host-side peer:
    /// each end reports the other's ifindex (in the other namespace) and a peer netnsid, and
    /// `veth_peer` / `peers_of` pair them up.
    #[test]
    fn veth_across_namespaces_reports_peer() {
        let r = std::thread::spawn(|| -> Result<Option<(NetnsFacts, NetnsFacts)>> {
            if nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).is_err() {
                return Ok(None);
            }
            let host_ns = std::fs::File::open("/proc/thread-self/ns/net").unwrap();
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            // In the "container": eth0 here, its peer hrhost0 in the "host".
            use std::os::fd::AsRawFd;
            test_support::add_veth_pair_peer_in("eth0", "hrhost0", host_ns.as_raw_fd())?;
            let container = read_current()?;
            nix::sched::setns(&host_ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let host = read_current()?;
            Ok(Some((container, host)))
        })
        .join()
        .unwrap()
        .unwrap();
        let Some((container, host)) = r else {
            eprintln!("skipped: unshare(CLONE_NEWNET) not permitted");
            return;
        };
        assert_ne!(container.inode, host.inode);
        let eth0 = container.link_by_name("eth0").unwrap();
        let peer = host.link_by_name("hrhost0").unwrap();
        assert!(container.link_by_name("hrhost0").is_none());
        assert_eq!(eth0.kind.as_deref(), Some("veth"));
        assert_eq!(eth0.peer_index, Some(peer.index));
        assert_eq!(peer.peer_index, Some(eth0.index));
        assert!(eth0.peer_netnsid.is_some(), "{eth0:?}");
        assert!(peer.peer_netnsid.is_some(), "{peer:?}");
        assert_eq!(veth_peer(eth0, &host).unwrap().name, "hrhost0");
        assert_eq!(
            peers_of(eth0, &host)
                .map(|l| l.name.as_str())
                .collect::<Vec<_>>(),
            vec!["hrhost0"]
        );
    }
}

/// Netlink requests that change things: only the tests use them (to build a namespace to look at).
#[cfg(test)]
pub(crate) mod test_support {
    use super::*;
    use netlink_packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL};
    use netlink_packet_route::link::{InfoData, InfoKind, InfoVeth};

    fn request(msg: RouteNetlinkMessage, what: &str) -> Result<()> {
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
        header.sequence_number = 1;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        packet.finalize();
        let mut buf = vec![0; packet.buffer_len()];
        packet.serialize(&mut buf);
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(|e| CollectError::io(what, e))?;
        socket.bind_auto().map_err(|e| CollectError::io(what, e))?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(|e| CollectError::io(what, e))?;
        socket
            .send(&buf, 0)
            .map_err(|e| CollectError::io(what, e))?;
        let (ans, _) = socket
            .recv_from_full()
            .map_err(|e| CollectError::io(what, e))?;
        let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&ans).map_err(|e| {
            CollectError::Netlink {
                what: what.into(),
                detail: e.to_string(),
            }
        })?;
        match msg.payload {
            NetlinkPayload::Error(e) if e.code.is_some() => Err(netlink_error(what, e.to_io())),
            _ => Ok(()),
        }
    }

    /// `ip link add A type veth peer name B` in the calling thread's namespace.
    pub fn add_veth_pair(a: &str, b: &str) -> Result<()> {
        let mut peer = LinkMessage::default();
        peer.attributes.push(LinkAttribute::IfName(b.into()));
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(a.into()));
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
        ]));
        request(RouteNetlinkMessage::NewLink(msg), "creating a veth pair")
    }

    /// `ip link add A type veth peer name B netns FD`.
    pub fn add_veth_pair_peer_in(a: &str, b: &str, netns_fd: std::os::fd::RawFd) -> Result<()> {
        let mut peer = LinkMessage::default();
        peer.attributes.push(LinkAttribute::IfName(b.into()));
        peer.attributes.push(LinkAttribute::NetNsFd(netns_fd));
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(a.into()));
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
        ]));
        request(RouteNetlinkMessage::NewLink(msg), "creating a veth pair")
    }

    /// `ip link set dev INDEX up`.
    pub fn set_up(index: u32) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        request(RouteNetlinkMessage::SetLink(msg), "setting a link up")
    }
}
