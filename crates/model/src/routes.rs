//! Pure helpers on a namespace's links and routes: longest-prefix route lookup the kernel's way,
//! locality, veth peers, bridge ports. Used by the collectors' tests and by the rules alike.

use crate::facts::{LinkFact, NetnsFacts, RouteFact};
use std::net::IpAddr;

/// The main routing table.
pub const RT_TABLE_MAIN: u32 = 254;
/// The local routing table (local and broadcast addresses of this namespace).
pub const RT_TABLE_LOCAL: u32 = 255;

/// Does `prefix/len` contain `ip`? Families must match; `len` beyond the address size never matches.
pub fn prefix_contains(prefix: &IpAddr, len: u8, ip: &IpAddr) -> bool {
    match (prefix, ip) {
        (IpAddr::V4(p), IpAddr::V4(a)) => {
            if len > 32 {
                return false;
            }
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            u32::from(*p) & mask == u32::from(*a) & mask
        }
        (IpAddr::V6(p), IpAddr::V6(a)) => {
            if len > 128 {
                return false;
            }
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            u128::from(*p) & mask == u128::from(*a) & mask
        }
        _ => false,
    }
}

/// The family of a route, when the route tells: its destination, else its gateway, else its
/// preferred source. A default route through a device only (`default dev wg0`) does not tell.
pub fn route_is_v6(r: &RouteFact) -> Option<bool> {
    r.destination
        .or(r.gateway)
        .or(r.preferred_source)
        .map(|a| a.is_ipv6())
}

/// Does route `r` cover `dst`? A default route whose family is unknown (see [`route_is_v6`])
/// covers both families.
pub fn route_covers(r: &RouteFact, dst: &IpAddr) -> bool {
    match r.destination {
        Some(d) => prefix_contains(&d, r.prefix_len, dst),
        None => r.prefix_len == 0 && route_is_v6(r).is_none_or(|v6| v6 == dst.is_ipv6()),
    }
}

/// Longest-prefix match of `dst` in the main table (254), as `ip route get` would choose when no
/// policy rule intervenes. The local table is ignored (see [`is_local`]). Between routes with the
/// same prefix, one whose family is known wins over a family-less default, then dump order (the
/// kernel's, lowest metric first).
pub fn route_lookup(facts: &NetnsFacts, dst: IpAddr) -> Option<&RouteFact> {
    route_lookup_in(facts, dst, RT_TABLE_MAIN)
}

/// Longest-prefix match of `dst` in one routing table.
pub fn route_lookup_in(facts: &NetnsFacts, dst: IpAddr, table: u32) -> Option<&RouteFact> {
    let mut best: Option<(&RouteFact, (u8, bool))> = None;
    for r in facts
        .routes
        .iter()
        .filter(|r| r.table == table && route_covers(r, &dst))
    {
        let rank = (r.prefix_len, route_is_v6(r).is_some());
        if best.is_none_or(|(_, b)| rank > b) {
            best = Some((r, rank));
        }
    }
    best.map(|(r, _)| r)
}

/// Is `ip` delivered locally in this namespace: an address of one of its links, or covered by a
/// `local` route of the local table (all of 127.0.0.0/8, for instance)?
pub fn is_local(facts: &NetnsFacts, ip: &IpAddr) -> bool {
    facts.owns(ip)
        || facts
            .routes
            .iter()
            .any(|r| r.table == RT_TABLE_LOCAL && r.kind == "local" && route_covers(r, ip))
}

/// The default route of one family in the main table.
pub fn default_route(facts: &NetnsFacts, v6: bool) -> Option<&RouteFact> {
    let any = if v6 {
        IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
    };
    facts
        .routes
        .iter()
        .filter(|r| r.table == RT_TABLE_MAIN && r.destination.is_none() && r.prefix_len == 0)
        .find(|r| route_covers(r, &any) && route_is_v6(r).is_some())
        .or_else(|| {
            facts.routes.iter().find(|r| {
                r.table == RT_TABLE_MAIN
                    && r.destination.is_none()
                    && r.prefix_len == 0
                    && route_covers(r, &any)
            })
        })
}

/// The other end of `link` (a veth in one namespace) among `other`'s links: IFLA_LINK holds the
/// peer's ifindex in the peer's namespace. Only meaningful when `other` is the peer's namespace.
pub fn veth_peer<'a>(link: &LinkFact, other: &'a NetnsFacts) -> Option<&'a LinkFact> {
    other.link(link.peer_index?)
}

/// The links of `facts` whose peer is `link` in namespace `link_ns`: the reverse of [`veth_peer`]
/// (e.g. the host side of a container's eth0, found from the host). Candidates must point back
/// at `link.index` and, when they say so, live across a namespace boundary.
pub fn peers_of<'a>(link: &LinkFact, facts: &'a NetnsFacts) -> impl Iterator<Item = &'a LinkFact> {
    let index = link.index;
    facts
        .links
        .iter()
        .filter(move |l| l.peer_index == Some(index) && l.peer_netnsid.is_some())
}

/// The bridge `link` is enslaved to (IFLA_MASTER), if any.
pub fn master_of<'a>(link: &LinkFact, facts: &'a NetnsFacts) -> Option<&'a LinkFact> {
    facts.link(link.master?)
}

/// The links enslaved to `bridge`.
pub fn ports_of<'a>(
    bridge: &LinkFact,
    facts: &'a NetnsFacts,
) -> impl Iterator<Item = &'a LinkFact> {
    let index = bridge.index;
    facts.links.iter().filter(move |l| l.master == Some(index))
}

