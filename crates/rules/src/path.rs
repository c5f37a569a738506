//! The wire between the subject and the host: the subject's interface towards the target, its veth
//! peer on the host, the bridge, the host's local-delivery firewall hooks and the socket.

use hostreach_model::{Facts, Hop, HopStatus, LinkFact, NetnsFacts, NetworkMode, PathHop, RouteFact};
use std::net::IpAddr;

/// Longest-prefix match in the main routing table, the kernel's way (see hostreach_model::routes).
pub fn route_lookup<'a>(ns: &'a NetnsFacts, dst: &IpAddr) -> Option<&'a RouteFact> {
    hostreach_model::routes::route_lookup(ns, *dst)
}

/// The pieces of the wire, as far as the facts show them.
#[derive(Debug, Clone, Default)]
pub struct Wire<'a> {
    /// The subject's interface the route to the target leaves by.
    pub subject_if: Option<&'a LinkFact>,
    pub subject_addr: Option<IpAddr>,
    /// The host-side peer of a veth subject interface.
    pub host_veth: Option<&'a LinkFact>,
    /// The bridge the peer is enslaved to.
    pub bridge: Option<&'a LinkFact>,
    pub bridge_addr: Option<IpAddr>,
    /// The subject's route towards the target.
    pub route: Option<&'a RouteFact>,
}

pub fn wire<'a>(facts: &'a Facts, dst: Option<&IpAddr>) -> Wire<'a> {
    let mut w = Wire::default();
    let Some(sn) = facts.subject_net.as_ref() else { return w };
    w.route = dst.and_then(|d| route_lookup(sn, d));
    w.subject_if = w
        .route
        .and_then(|r| r.oif)
        .and_then(|i| sn.link(i))
        .or_else(|| sn.link_by_name("eth0"))
        .or_else(|| sn.links.iter().find(|l| l.name != "lo"));
    if let Some(i) = w.subject_if {
        w.subject_addr = sn
            .addrs_of(i.index)
            .find(|a| dst.is_none_or(|d| d.is_ipv4() == a.address.is_ipv4()))
            .map(|a| a.address);
    }
    let Some(hn) = facts.host_net.as_ref() else { return w };
    if let Some(i) = w.subject_if
        && i.kind.as_deref() == Some("veth")
        && i.peer_netnsid.is_some()
    {
        w.host_veth = i.peer_index.and_then(|p| hn.link(p));
    }
    w.bridge = w.host_veth.and_then(|v| v.master).and_then(|m| hn.link(m));
    // Without the veth (not root, or collected elsewhere), fall back on Docker's bridge name.
    if w.bridge.is_none()
        && let Some(c) = facts.subject.container()
    {
        w.bridge = c.networks.iter().filter_map(|n| n.bridge.as_deref()).find_map(|b| hn.link_by_name(b));
    }
    if let Some(b) = w.bridge {
        w.bridge_addr = hn
            .addrs_of(b.index)
            .find(|a| dst.is_none_or(|d| d.is_ipv4() == a.address.is_ipv4()))
            .map(|a| a.address);
    }
    w
}

/// Draws the hops, marking `failed` and everything after it as not reached. `unknown_from` marks
/// hops whose fate the evidence does not show.
pub fn hops(facts: &Facts, dst: Option<&IpAddr>, port: u16, failed: Option<Hop>, unknown_from: Option<Hop>) -> Vec<PathHop> {
    let mode = facts.subject.container().map(|c| c.network_mode);
    let w = wire(facts, dst);
    let mut out = Vec::new();
    let loopback_target = dst.is_some_and(hostreach_model::target::is_loopback);
    let resolver_relevant = facts.resolution.as_ref().is_some_and(|r| r.name.is_some());
    if resolver_relevant || failed == Some(Hop::ContainerResolver) {
        out.push(PathHop {
            hop: Hop::ContainerResolver,
            name: "resolver".into(),
            interface: None,
            mtu: None,
            address: dst.map(|d| d.to_string()),
            status: HopStatus::Passed,
            detail: facts.resolution.as_ref().and_then(|r| r.name.clone()).map(|n| format!("looks up {n}")),
        });
    }
    let host_mode = mode == Some(NetworkMode::Host);
    if failed == Some(Hop::ContainerLoopback) || (loopback_target && !host_mode) {
        out.push(PathHop {
            hop: Hop::ContainerLoopback,
            name: "lo".into(),
            interface: Some("lo".into()),
            mtu: facts.subject_net.as_ref().and_then(|n| n.link_by_name("lo")).and_then(|l| l.mtu),
            address: dst.map(|d| d.to_string()),
            status: HopStatus::Passed,
            detail: Some("the container's own loopback: the packet never leaves the container".into()),
        });
    } else if !host_mode && mode != Some(NetworkMode::None) {
        if let Some(i) = w.subject_if {
            out.push(PathHop {
                hop: Hop::ContainerEth0,
                name: i.name.clone(),
                interface: Some(i.name.clone()),
                mtu: i.mtu,
                address: w.subject_addr.map(|a| a.to_string()),
                status: HopStatus::Passed,
                detail: w.route.map(describe_route),
            });
        } else {
            out.push(unknown_hop(Hop::ContainerEth0, "eth0"));
        }
        if w.host_veth.is_some() || w.subject_if.is_some_and(|i| i.kind.as_deref() == Some("veth")) {
            match w.host_veth {
                Some(v) => out.push(PathHop {
                    hop: Hop::HostVeth,
                    name: v.name.clone(),
                    interface: Some(v.name.clone()),
                    mtu: v.mtu,
                    address: None,
                    status: HopStatus::Passed,
                    detail: Some(format!("peer of the container's {} (ifindex {})", w.subject_if.map(|i| i.name.as_str()).unwrap_or("eth0"), v.index)),
                }),
                None => out.push(unknown_hop(Hop::HostVeth, "veth")),
            }
        }
        if let Some(b) = w.bridge {
            out.push(PathHop {
                hop: Hop::Bridge,
                name: b.name.clone(),
                interface: Some(b.name.clone()),
                mtu: b.mtu,
                address: w.bridge_addr.map(|a| a.to_string()),
                status: HopStatus::Passed,
                detail: facts
                    .subject
                    .container()
                    .and_then(|c| c.networks.iter().find(|n| n.bridge.as_deref() == Some(b.name.as_str())))
                    .map(|n| format!("Docker network {}", n.name)),
            });
        }
    }
    if (host_mode || !loopback_target) && mode != Some(NetworkMode::None) {
        let host_owns = dst.is_some_and(|d| facts.host_net.as_ref().is_some_and(|h| h.owns(d)) || hostreach_model::target::is_loopback(d));
        out.push(PathHop {
            hop: Hop::HostInput,
            name: if host_owns || dst.is_none() { "PREROUTING -> INPUT".into() } else { "FORWARD".into() },
            interface: None,
            mtu: None,
            address: None,
            status: HopStatus::Passed,
            detail: match dst {
                None => None,
                Some(_) if host_owns => {
                    Some("local delivery: the host owns the address, so INPUT decides (not FORWARD, not DOCKER-USER)".into())
                }
                Some(_) => Some("the host does not own this address: the packet is forwarded".into()),
            },
        });
        out.push(PathHop {
            hop: Hop::HostSocket,
            name: match dst {
                Some(IpAddr::V6(a)) => format!("[{a}]:{port}"),
                Some(a) => format!("{a}:{port}"),
                None => format!("*:{port}"),
            },
            interface: None,
            mtu: None,
            address: None,
            status: HopStatus::Passed,
            detail: None,
        });
    }
    mark(&mut out, failed, unknown_from);
    out
}

fn unknown_hop(hop: Hop, name: &str) -> PathHop {
    PathHop { hop, name: name.into(), interface: None, mtu: None, address: None, status: HopStatus::Unknown, detail: None }
}

fn describe_route(r: &RouteFact) -> String {
    let dst = match r.destination {
        None => "default".to_string(),
        Some(d) => format!("{d}/{}", r.prefix_len),
    };
    match r.gateway {
        Some(g) => format!("route {dst} via {g}"),
        None => format!("route {dst} (on-link)"),
    }
}

fn mark(hops: &mut [PathHop], failed: Option<Hop>, unknown_from: Option<Hop>) {
    let mut after_fail = false;
    let mut unknown = false;
    for h in hops.iter_mut() {
        if after_fail {
            h.status = HopStatus::NotReached;
            continue;
        }
        if Some(h.hop) == unknown_from {
            unknown = true;
        }
        if Some(h.hop) == failed {
            h.status = HopStatus::Failed;
            after_fail = true;
            continue;
        }
        if unknown && h.status != HopStatus::Failed {
            h.status = HopStatus::Unknown;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hostreach_model::RouteFact;

    fn r(dst: Option<&str>, len: u8, gw: Option<&str>, oif: u32) -> RouteFact {
        RouteFact {
            destination: dst.map(|d| d.parse().unwrap()),
            prefix_len: len,
            gateway: gw.map(|g| g.parse().unwrap()),
            oif: Some(oif),
            table: 254,
            kind: "unicast".into(),
            preferred_source: None,
            mtu: None,
        }
    }

    #[test]
    fn lpm() {
        let ns = NetnsFacts {
            inode: None,
            links: vec![],
            addresses: vec![],
            routes: vec![r(None, 0, Some("172.17.0.1"), 2), r(Some("172.17.0.0"), 16, None, 2), r(Some("10.1.0.0"), 24, None, 3)],
        };
        assert_eq!(route_lookup(&ns, &"172.17.0.1".parse().unwrap()).unwrap().prefix_len, 16);
        assert_eq!(route_lookup(&ns, &"10.1.0.9".parse().unwrap()).unwrap().oif, Some(3));
        assert_eq!(route_lookup(&ns, &"198.18.0.1".parse().unwrap()).unwrap().prefix_len, 0);
        assert!(route_lookup(&ns, &"::1".parse().unwrap()).is_none());
    }
}
