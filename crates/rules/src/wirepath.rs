//! `hostreach path`: the container's side of the wire from the facts alone (no probe): its interfaces
//! and routes, the host veth found by the link index, the bridge and its Docker network, a macvlan's
//! parent, and towards a target the host's egress interface or tunnel, each hop with its MTU.
//! Builds on [`crate::path::wire`]; the findings here are what the wire alone shows.

use crate::mtu;
use crate::path::{route_lookup, wire};
use hostreach_model::{
    Code, ContainerReport, Evidence, Facts, Finding, Fix, Hop, HopStatus, HostSide, InterfaceReport, LinkFact, MtuComparison,
    NetnsFacts, NetworkMode, NetworkReport, PathHop, PathReport, RouteFact, RouteReport, SCHEMA, Severity, TargetReport,
    is_tunnel_kind,
};
use std::net::IpAddr;

/// Route kinds that mean "no way there".
pub fn is_dead_route(r: &RouteFact) -> bool {
    matches!(r.kind.as_str(), "unreachable" | "blackhole" | "prohibit" | "throw")
}

/// Is the subject in the host's own namespace (host mode, or a --pid/--netns of the host)?
pub fn shares_host_netns(facts: &Facts) -> bool {
    match (&facts.subject_net, &facts.host_net) {
        (Some(s), Some(h)) if s.inode.is_some() && h.inode.is_some() => s.inode == h.inode,
        _ => facts.subject.container().is_some_and(|c| c.network_mode == NetworkMode::Host),
    }
}

fn is_macvlan_kind(l: &LinkFact) -> bool {
    matches!(l.kind.as_deref(), Some("macvlan") | Some("ipvlan") | Some("macvtap") | Some("ipvtap"))
}

/// The host link a macvlan/ipvlan subject interface hangs on (IFLA_LINK into the host's namespace).
pub fn macvlan_parent<'a>(facts: &'a Facts, sub_if: &LinkFact) -> Option<&'a LinkFact> {
    if !is_macvlan_kind(sub_if) {
        return None;
    }
    let hn = facts.host_net.as_ref()?;
    if sub_if.peer_netnsid.is_none() && !shares_host_netns(facts) {
        return None;
    }
    sub_if.peer_index.and_then(|i| hn.link(i))
}

fn link_name(ns: Option<&NetnsFacts>, index: Option<u32>) -> Option<String> {
    index.and_then(|i| ns?.link(i)).map(|l| l.name.clone())
}

pub fn describe_route(r: &RouteFact, ns: Option<&NetnsFacts>) -> String {
    let dst = match r.destination {
        None => "default".to_string(),
        Some(d) => format!("{d}/{}", r.prefix_len),
    };
    let mut s = if is_dead_route(r) { format!("{} {dst}", r.kind) } else { dst };
    if let Some(g) = r.gateway {
        s.push_str(&format!(" via {g}"));
    }
    if let Some(d) = link_name(ns, r.oif) {
        s.push_str(&format!(" dev {d}"));
    }
    if let Some(m) = r.mtu {
        s.push_str(&format!(" mtu {m}"));
    }
    s
}

/// The main-table routes of a namespace, for evidence: `default via 172.17.0.1 dev eth0; 172.17.0.0/16 dev eth0`.
pub fn main_routes(ns: &NetnsFacts) -> String {
    let rs: Vec<String> = ns.routes.iter().filter(|r| r.table == 254).map(|r| describe_route(r, Some(ns))).collect();
    if rs.is_empty() { "none".into() } else { rs.join("; ") }
}

fn hop(hop: Hop, name: &str, mtu: Option<u32>, address: Option<String>, detail: Option<String>) -> PathHop {
    PathHop { hop, name: name.to_string(), interface: Some(name.to_string()), mtu, address, status: HopStatus::Passed, detail }
}

/// The hops from the subject towards `dst` (or towards the host's bridge without one), the MTUs compared,
/// and what the wire alone shows (NO_ROUTE, MACVLAN_HOST_ISOLATION, an MTU smaller than the container's).
pub fn hops_towards(facts: &Facts, dst: Option<&IpAddr>) -> (Vec<PathHop>, Option<MtuComparison>, Vec<Finding>) {
    let mut out = Vec::new();
    let mut findings = Vec::new();
    let container = facts.subject.container();
    let mode = container.map(|c| c.network_mode);
    if mode == Some(NetworkMode::None) {
        return (out, None, findings);
    }
    let w = wire(facts, dst);
    let host_ns = shares_host_netns(facts);
    let sn = facts.subject_net.as_ref();
    let hn = facts.host_net.as_ref();
    let mut macvlan = false;

    if !host_ns {
        // The subject's interface.
        match w.subject_if {
            Some(i) => {
                let route_mtu = w.route.and_then(|r| r.mtu);
                let mut h = hop(
                    Hop::ContainerEth0,
                    &i.name,
                    match (i.mtu, route_mtu) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    },
                    w.subject_addr.map(|a| a.to_string()),
                    w.route.map(|r| format!("route {}", describe_route(r, sn))),
                );
                if let Some(k) = &i.kind {
                    h.detail = Some(format!("{k}{}", h.detail.as_deref().map(|d| format!(", {d}")).unwrap_or_default()));
                }
                out.push(h);
                if let Some(v) = w.host_veth {
                    out.push(hop(Hop::HostVeth, &v.name, v.mtu, None, Some(format!("peer of the container's {} (IFLA_LINK {})", i.name, v.index))));
                } else if i.kind.as_deref() == Some("veth") {
                    out.push(PathHop { status: HopStatus::Unknown, ..hop(Hop::HostVeth, "veth", None, None, Some("the host's links could not be read".into())) });
                }
                if let Some(b) = w.bridge {
                    let net = container.and_then(|c| c.networks.iter().find(|n| n.bridge.as_deref() == Some(b.name.as_str())));
                    out.push(hop(
                        Hop::Bridge,
                        &b.name,
                        b.mtu,
                        w.bridge_addr.map(|a| a.to_string()),
                        net.map(|n| format!("Docker network {}", n.name)),
                    ));
                }
                if let Some(p) = macvlan_parent(facts, i) {
                    macvlan = true;
                    out.push(hop(
                        Hop::MacvlanParent,
                        &p.name,
                        p.mtu,
                        hn.and_then(|h| h.addrs_of(p.index).next()).map(|a| a.address.to_string()),
                        Some(format!("parent of the container's {} {}: frames leave here onto the wire", i.kind.as_deref().unwrap_or("macvlan"), i.name)),
                    ));
                } else if is_macvlan_kind(i) {
                    macvlan = true;
                }
            }
            None => out.push(PathHop {
                status: HopStatus::Unknown,
                ..hop(Hop::ContainerEth0, "eth0", None, None, Some("the container's links could not be read".into()))
            }),
        }
    }

    if let Some(d) = dst {
        // The subject's own routing decision.
        let sub_route = sn.and_then(|n| route_lookup(n, d));
        let sub_dead = sn.is_some() && sub_route.is_none_or(is_dead_route);
        if sub_dead && !host_ns {
            if let Some(h) = out.first_mut() {
                h.status = HopStatus::Failed;
                h.detail = Some(match sub_route {
                    Some(r) => format!("route {} for {d}", describe_route(r, sn)),
                    None => format!("no route to {d}"),
                });
            }
            findings.push(no_route_finding(facts, d, Hop::ContainerEth0));
        } else if macvlan {
            let owns = hn.is_some_and(|h| h.owns(d));
            if owns {
                if let Some(h) = out.iter_mut().find(|h| h.hop == Hop::MacvlanParent) {
                    h.status = HopStatus::Failed;
                }
                if let Some(f) = crate::wirecheck::macvlan_finding(facts, d, None) {
                    findings.push(f);
                }
            }
        } else if let Some(hn) = hn {
            let owns = hn.owns(d) || hostreach_model::target::is_loopback(d);
            if owns {
                out.push(PathHop {
                    hop: Hop::HostInput,
                    name: "PREROUTING -> INPUT".into(),
                    interface: hn.owner_of(d).map(|l| l.name.clone()),
                    mtu: None,
                    address: Some(d.to_string()),
                    status: HopStatus::Passed,
                    detail: Some(format!(
                        "local delivery: the host owns {d}{}",
                        hn.owner_of(d).map(|l| format!(" (on {})", l.name)).unwrap_or_default()
                    )),
                });
            } else {
                match route_lookup(hn, d).filter(|r| !is_dead_route(r)) {
                    None => {
                        out.push(PathHop {
                            hop: Hop::HostRoute,
                            name: "no route".into(),
                            interface: None,
                            mtu: None,
                            address: Some(d.to_string()),
                            status: HopStatus::Failed,
                            detail: Some(format!("the host has no route to {d}")),
                        });
                        findings.push(no_route_finding(facts, d, Hop::HostRoute));
                    }
                    Some(r) => {
                        let link = r.oif.and_then(|i| hn.link(i));
                        let name = link.map(|l| l.name.clone()).unwrap_or_else(|| format!("if{}", r.oif.unwrap_or(0)));
                        let mtu = match (link.and_then(|l| l.mtu), r.mtu) {
                            (Some(a), Some(b)) => Some(a.min(b)),
                            (a, b) => a.or(b),
                        };
                        let tunnel = link.is_some_and(|l| is_tunnel_kind(l.kind.as_deref()));
                        let kind = link.and_then(|l| l.kind.clone());
                        let detail = format!(
                            "{}route {}",
                            if tunnel { format!("{} tunnel, ", kind.as_deref().unwrap_or("")) } else { kind.map(|k| format!("{k}, ")).unwrap_or_default() },
                            describe_route(r, Some(hn))
                        );
                        out.push(hop(
                            if tunnel { Hop::Tunnel } else { Hop::HostEgress },
                            &name,
                            mtu,
                            link.and_then(|l| hn.addrs_of(l.index).find(|a| a.address.is_ipv4() == d.is_ipv4())).map(|a| a.address.to_string()),
                            Some(detail),
                        ));
                    }
                }
            }
        }
    }

    let cmp = compare(&out, sn, w.subject_if);
    if let (Some(c), Some(d)) = (&cmp, dst)
        && c.mismatch
        && findings.is_empty()
    {
        findings.push(mtu::path_mismatch_finding(facts, c, d));
    }
    (out, cmp, findings)
}

/// The MTUs along the hops compared with the container's.
pub fn compare(hops: &[PathHop], sn: Option<&NetnsFacts>, sub_if: Option<&LinkFact>) -> Option<MtuComparison> {
    let container = hops.iter().find(|h| h.hop == Hop::ContainerEth0).and_then(|h| h.mtu).or_else(|| {
        // Host mode: the egress is the container's own interface.
        hops.iter().find(|h| matches!(h.hop, Hop::HostEgress | Hop::Tunnel)).and_then(|h| h.mtu)
    })?;
    let _ = sn;
    let smallest = hops.iter().filter(|h| h.mtu.is_some()).min_by_key(|h| h.mtu.unwrap());
    let tunnel = hops
        .iter()
        .find(|h| h.hop == Hop::Tunnel)
        .and_then(|h| h.detail.as_deref().and_then(|d| d.split(' ').next()).map(str::to_string))
        .or_else(|| sub_if.filter(|l| is_tunnel_kind(l.kind.as_deref())).and_then(|l| l.kind.clone()));
    Some(MtuComparison {
        container: Some(container),
        smallest: smallest.and_then(|h| h.mtu),
        smallest_at: smallest.map(|h| format!("{} {}", h.hop, h.name)),
        tunnel,
        mismatch: smallest.and_then(|h| h.mtu).is_some_and(|m| m < container),
    })
}

/// NO_ROUTE from the routing tables: in the container (`hop` container-eth0) or on the host (host-route).
pub fn no_route_finding(facts: &Facts, dst: &IpAddr, at: Hop) -> Finding {
    let container = facts.subject.container();
    let name = container.map(|c| c.name.clone()).unwrap_or_else(|| "the subject".into());
    let (summary, ns_name, ns) = if at == Hop::HostRoute {
        (format!("the host has no route to {dst}: the container's packets reach the host and go no further"), "host", facts.host_net.as_ref())
    } else {
        (format!("container {name} has no route to {dst}: the kernel refuses to send (ENETUNREACH) before anything leaves its namespace"), "container", facts.subject_net.as_ref())
    };
    let mut f = Finding { code: Code::NoRoute, severity: Severity::Error, summary, hop: Some(at), evidence: vec![], fix: vec![] };
    if let Some(ns) = ns {
        let lookup = route_lookup(ns, dst);
        f.evidence.push(Evidence::Route {
            netns: ns_name.into(),
            detail: match lookup {
                Some(r) => format!("lookup {dst}: {} (no usable route)", describe_route(r, Some(ns))),
                None => format!("lookup {dst}: no route matches in the main table"),
            },
        });
        f.evidence.push(Evidence::Route { netns: ns_name.into(), detail: format!("main table: {}", main_routes(ns)) });
    } else {
        f.evidence.push(Evidence::Missing { what: format!("{ns_name}-routes"), why: "the routing table could not be read".into() });
    }
    if at == Hop::ContainerEth0 {
        let net = container.and_then(|c| c.networks.iter().find(|n| n.name == c.network_mode_raw).or_else(|| c.networks.first()));
        let gw = net.and_then(|n| n.gateway).map(|g| g.to_string()).unwrap_or_else(|| "GATEWAY".into());
        let pid = facts.subject.pid().map(|p| p.to_string()).unwrap_or_else(|| "PID".into());
        let dev = facts
            .subject_net
            .as_ref()
            .and_then(|n| n.link_by_name("eth0").or_else(|| n.links.iter().find(|l| l.name != "lo")))
            .map(|l| l.name.clone())
            .unwrap_or_else(|| "eth0".into());
        if let Some(n) = net {
            f.fix.push(Fix::new(
                format!("Docker sets a container's routes when it attaches it to a network: reattach {name} to {} (or restart it) to get them back", n.name),
                [format!("docker network disconnect {} {name} && docker network connect {} {name}", n.name, n.name), format!("docker restart {name}")],
            ));
        }
        f.fix.push(Fix::new(
            "Or put the route back by hand, inside the container's namespace (lost when it restarts)",
            [format!("sudo nsenter -t {pid} -n ip route add default via {gw} dev {dev}")],
        ));
    } else {
        f.fix.push(Fix::new(
            format!("Give the host a route to {dst} (through the interface and gateway that reach it)"),
            [format!("sudo ip route add {dst} via GATEWAY dev INTERFACE")],
        ));
    }
    f
}

/// The whole `hostreach path` report.
pub fn path_report(facts: &Facts) -> PathReport {
    let container = facts.subject.container();
    let dst = facts.resolution.as_ref().and_then(|r| r.address);
    let (hops, mtu, findings) = hops_towards(facts, dst.as_ref());
    let sn = facts.subject_net.as_ref();
    let hn = facts.host_net.as_ref();
    let interfaces = sn
        .map(|n| {
            n.links
                .iter()
                .map(|l| {
                    let host_side = if shares_host_netns(facts) {
                        None
                    } else if l.kind.as_deref() == Some("veth") && l.peer_netnsid.is_some() {
                        l.peer_index.map(|p| {
                            let peer = hn.and_then(|h| h.link(p));
                            HostSide {
                                relation: "veth-peer".into(),
                                index: p,
                                name: peer.map(|x| x.name.clone()),
                                kind: peer.and_then(|x| x.kind.clone()),
                                mtu: peer.and_then(|x| x.mtu),
                                master: peer.and_then(|x| x.master).and_then(|m| hn.and_then(|h| h.link(m))).map(|b| b.name.clone()),
                            }
                        })
                    } else if is_macvlan_kind(l) {
                        l.peer_index.map(|p| {
                            let parent = hn.and_then(|h| h.link(p));
                            HostSide {
                                relation: "parent".into(),
                                index: p,
                                name: parent.map(|x| x.name.clone()),
                                kind: parent.and_then(|x| x.kind.clone()),
                                mtu: parent.and_then(|x| x.mtu),
                                master: None,
                            }
                        })
                    } else {
                        None
                    };
                    InterfaceReport {
                        name: l.name.clone(),
                        index: l.index,
                        kind: l.kind.clone(),
                        mtu: l.mtu,
                        up: l.up,
                        mac: l.mac.clone(),
                        addresses: n.addrs_of(l.index).map(|a| format!("{}/{}", a.address, a.prefix_len)).collect(),
                        host_side,
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let routes = sn
        .map(|n| {
            n.routes
                .iter()
                .filter(|r| r.table == 254)
                .map(|r| RouteReport {
                    destination: match r.destination {
                        None => "default".into(),
                        Some(d) => format!("{d}/{}", r.prefix_len),
                    },
                    gateway: r.gateway,
                    dev: link_name(Some(n), r.oif),
                    kind: r.kind.clone(),
                    mtu: r.mtu,
                    source: r.preferred_source,
                })
                .collect()
        })
        .unwrap_or_default();
    let networks = container
        .map(|c| {
            c.networks
                .iter()
                .map(|n| NetworkReport {
                    name: n.name.clone(),
                    id: n.network_id.clone(),
                    driver: n.driver.clone(),
                    bridge: n.bridge.clone(),
                    subnet: n.subnet.clone(),
                    gateway: n.gateway,
                    address: n.ip,
                })
                .collect()
        })
        .unwrap_or_default();
    let net_name = container.and_then(|c| c.networks.iter().find(|n| n.name == c.network_mode_raw).or_else(|| c.networks.first())).map(|n| n.name.clone());
    PathReport {
        schema: SCHEMA.to_string(),
        container: container.map(|c| ContainerReport {
            id: c.id.clone(),
            name: c.name.clone(),
            pid: c.pid,
            network_mode: c.network_mode,
            network: net_name,
        }),
        network_mode: container.map(|c| c.network_mode),
        network_mode_raw: container.map(|c| c.network_mode_raw.clone()),
        networks,
        interfaces,
        routes,
        target: facts.target.as_ref().map(|t| TargetReport {
            input: t.input.clone(),
            address: dst,
            port: t.port,
            proto: t.proto,
            name: t.name().map(str::to_string),
        }),
        hops,
        mtu,
        findings,
        skipped: facts.skipped.clone(),
    }
}
