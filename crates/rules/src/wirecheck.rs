//! Failures of the wire itself, before any firewall or socket: a macvlan/ipvlan child that targets its own
//! host (MACVLAN_HOST_ISOLATION), and reverse-path filtering (RP_FILTER_DROP, drop reason IP_RPFILTER).

use crate::path::{route_lookup, wire};
use crate::wirepath::{describe_route, macvlan_parent};
use hostreach_model::{Code, DropEvent, Evidence, Facts, Finding, Fix, Hop, NetworkMode, Severity};
use std::net::{IpAddr, Ipv4Addr};

/// Drop reasons of reverse-path filtering.
pub const RPFILTER_REASONS: &[&str] = &["IP_RPFILTER"];

fn is_macvlan_subject(facts: &Facts) -> bool {
    if facts.subject.container().is_some_and(|c| matches!(c.network_mode, NetworkMode::Macvlan | NetworkMode::Ipvlan)) {
        return true;
    }
    wire(facts, None).subject_if.is_some_and(|i| matches!(i.kind.as_deref(), Some("macvlan") | Some("ipvlan")))
}

/// A free-looking address for the host's shim in `subnet` (`10.77.0.0/24`): the last usable one that is not
/// the gateway, the container's or the host's.
fn shim_address(subnet: &str, taken: &[IpAddr]) -> Option<Ipv4Addr> {
    let (net, len) = subnet.split_once('/')?;
    let net: Ipv4Addr = net.parse().ok()?;
    let len: u32 = len.parse().ok()?;
    if !(8..=30).contains(&len) {
        return None;
    }
    let base = u32::from(net) & (u32::MAX << (32 - len));
    let bcast = base | !(u32::MAX << (32 - len));
    (base + 1..bcast).rev().take(64).map(Ipv4Addr::from).find(|a| !taken.contains(&IpAddr::V4(*a)))
}

/// MACVLAN_HOST_ISOLATION: a macvlan/ipvlan container targets an address its own host owns. The kernel
/// does not pass frames between a macvlan child and its parent's host stack, so the packets leave on the
/// wire and nothing answers.
pub fn macvlan_finding(facts: &Facts, addr: &IpAddr, probe: Option<Evidence>) -> Option<Finding> {
    if !is_macvlan_subject(facts) {
        return None;
    }
    let hn = facts.host_net.as_ref()?;
    if !hn.owns(addr) {
        return None;
    }
    let c = facts.subject.container();
    let name = c.map(|c| c.name.clone()).unwrap_or_else(|| "the container".into());
    let w = wire(facts, Some(addr));
    let sub_if = w.subject_if;
    let parent = sub_if.and_then(|i| macvlan_parent(facts, i));
    let parent_name = parent.map(|p| p.name.clone()).unwrap_or_else(|| "PARENT".into());
    let kind = sub_if.and_then(|i| i.kind.clone()).unwrap_or_else(|| "macvlan".into());
    let owner = hn.owner_of(addr).map(|l| l.name.clone()).unwrap_or_default();
    let mut f = Finding {
        code: Code::MacvlanHostIsolation,
        severity: Severity::Error,
        summary: format!(
            "{name} is a {kind} child of the host's {parent_name}, and {addr} belongs to this host (on {owner}): the kernel does not pass traffic between a {kind} child and its own host through the parent, so the packets go out on the wire and the host never sees them"
        ),
        hop: Some(Hop::MacvlanParent),
        evidence: vec![],
        fix: vec![],
    };
    let net = c.and_then(|c| c.networks.iter().find(|n| matches!(n.driver.as_deref(), Some("macvlan") | Some("ipvlan"))).or_else(|| c.networks.first()));
    if let Some(n) = net {
        f.evidence.push(Evidence::Docker { field: format!("network {} driver", n.name), value: n.driver.clone().unwrap_or_default() });
    }
    if let Some(i) = sub_if {
        f.evidence.push(Evidence::Route {
            netns: "container".into(),
            detail: format!(
                "{} is {kind}, IFLA_LINK {} = the host's {parent_name}{}",
                i.name,
                i.peer_index.unwrap_or(0),
                w.subject_addr.map(|a| format!("; its address {a}")).unwrap_or_default()
            ),
        });
    }
    f.evidence.push(Evidence::Address { address: addr.to_string(), interface: owner.clone() });
    if let Some(p) = probe {
        f.evidence.push(p);
    }
    // The shim: a macvlan of the host on the same parent, in bridge mode, reaches its siblings.
    let cip = w.subject_addr.or(net.and_then(|n| n.ip));
    let mut taken: Vec<IpAddr> = hn.addresses.iter().map(|a| a.address).collect();
    taken.extend(cip);
    taken.extend(net.and_then(|n| n.gateway));
    let shim = net.and_then(|n| n.subnet.as_deref()).and_then(|s| shim_address(s, &taken)).map(|a| a.to_string()).unwrap_or_else(|| "SHIM_ADDRESS".into());
    let cip_s = cip.map(|a| a.to_string()).unwrap_or_else(|| "CONTAINER_IP".into());
    let port = facts.target.as_ref().map(|t| t.port).unwrap_or(0);
    let mut cmds = vec![
        format!("sudo ip link add mv-shim link {parent_name} type macvlan mode bridge"),
        format!("sudo ip addr add {shim}/32 dev mv-shim"),
        "sudo ip link set mv-shim up".to_string(),
        format!("sudo ip route add {cip_s}/32 dev mv-shim"),
    ];
    if let Some(n) = net {
        cmds.push(format!(
            "# keep Docker from handing {shim} to a container: docker network create ... --aux-address host={shim} {}",
            n.name
        ));
    }
    f.fix.push(Fix::new(
        format!(
            "Give the host a macvlan interface of its own on {parent_name} (a shim, mode bridge) with an address in the containers' subnet and a route to them; {name} then reaches this host at {shim}{} instead of {addr}",
            if port > 0 { format!(":{port}") } else { String::new() }
        ),
        cmds,
    ));
    f.fix.push(Fix::new(
        format!("Or attach {name} to a bridge network as well, and reach the host through that network's gateway"),
        [format!("docker network connect bridge {name}")],
    ));
    Some(f)
}

/// RP_FILTER_DROP: the kernel dropped the container's packet on reverse-path filtering: the host would
/// route replies to the packet's source out of another interface than the one it came in on.
///
/// Without the kernel's IP_RPFILTER report, a probe that got no answer is still named so when the facts show
/// both halves: strict rp_filter (1) on the ingress interface, and the host's route back to the container's
/// address leaving by another interface. That is the case before any IP packet: the same check refuses the
/// container's ARP request for its gateway, so the SYN never leaves (the drop is then NEIGH_FAILED, later,
/// in a timer, not the probe's).
pub fn rp_filter_finding(facts: &Facts, drops: &[&DropEvent], probe: Option<Evidence>, no_answer: bool) -> Option<Finding> {
    let rp: Vec<&&DropEvent> = drops.iter().filter(|d| RPFILTER_REASONS.contains(&d.reason.as_str())).collect();
    let addr = facts.resolution.as_ref().and_then(|r| r.address);
    let w = wire(facts, addr.as_ref());
    let ingress = w.bridge.map(|b| b.name.clone()).or_else(|| w.host_veth.map(|v| v.name.clone())).unwrap_or_else(|| "INTERFACE".into());
    let src = w.subject_addr;
    let hn = facts.host_net.as_ref();
    let back = src.and_then(|s| hn.and_then(|h| route_lookup(h, &s).map(|r| (r, describe_route(r, Some(h))))));
    let back_dev = back.as_ref().and_then(|(r, _)| r.oif).and_then(|i| hn.and_then(|h| h.link(i))).map(|l| l.name.clone());
    let sysctl = |n: &str| facts.sysctls.iter().find(|s| s.name == format!("net.ipv4.conf.{n}.rp_filter")).and_then(|s| s.value.trim().parse::<u8>().ok());
    let strict = sysctl("all").max(sysctl(&ingress)) == Some(1);
    let inferred = rp.is_empty() && no_answer && strict && back_dev.as_deref().is_some_and(|d| d != ingress);
    if rp.is_empty() && !inferred {
        return None;
    }
    let src_s = src.map(|s| s.to_string()).unwrap_or_else(|| "the container's address".into());
    let mut f = Finding {
        code: Code::RpFilterDrop,
        severity: Severity::Error,
        summary: format!(
            "the host's reverse-path filter (rp_filter) drops the container's packets from {src_s} arriving on {ingress}: {}",
            match &back_dev {
                Some(d) if *d != ingress => format!("its route back to {src_s} leaves by {d}, not {ingress}"),
                _ => format!("its route back to {src_s} does not leave by {ingress}"),
            }
        ),
        hop: Some(Hop::Bridge),
        evidence: vec![],
        fix: vec![],
    };
    if let Some(p) = probe {
        f.evidence.push(p);
    }
    for d in rp {
        f.evidence.push(Evidence::drop(d));
    }
    if inferred {
        f.summary.push_str(" (the same check refuses its ARP request for the gateway, so no IP packet leaves: the kernel reports no IP_RPFILTER for the probe)");
        f.evidence.push(Evidence::Missing {
            what: "drop-reason".into(),
            why: "no IP_RPFILTER drop was reported for the probe: rp_filter also stops the container's ARP request, and that drop is not attributed to it".into(),
        });
    }
    for s in facts.sysctls.iter().filter(|s| s.name.ends_with(".rp_filter")) {
        f.evidence.push(Evidence::Sysctl { name: s.name.clone(), value: s.value.clone(), namespace: s.namespace.clone() });
    }
    match &back {
        Some((_, text)) => f.evidence.push(Evidence::Route { netns: "host".into(), detail: format!("lookup {src_s}: {text}") }),
        None => f.evidence.push(Evidence::Route { netns: "host".into(), detail: format!("lookup {src_s}: no route back") }),
    }
    let all_strict = facts.sysctls.iter().any(|s| s.name == "net.ipv4.conf.all.rp_filter" && s.value.trim() == "1");
    let mut cmds = vec![format!("sudo sysctl -w net.ipv4.conf.{ingress}.rp_filter=2")];
    if all_strict {
        cmds.push("sudo sysctl -w net.ipv4.conf.all.rp_filter=2   # the kernel uses the larger of all and the interface".into());
    }
    cmds.push(format!("echo 'net.ipv4.conf.{ingress}.rp_filter = 2' | sudo tee /etc/sysctl.d/90-hostreach-rpfilter.conf"));
    let loose = Fix::new(
        format!("If the asymmetric routing is intended, make the filter loose on {ingress} (2: the source must be reachable by some interface), persistently"),
        cmds,
    );
    match &back {
        // A route that sends the container's own address away from its bridge is a mistake: replies would
        // follow it too. Removing it is the fix; a loose filter alone would not bring the replies back.
        Some((r, text)) if back_dev.as_deref() != Some(ingress.as_str()) && r.destination.is_some() => {
            f.fix.push(Fix::new(
                format!("Remove the route that sends traffic for {src_s} away from {ingress} ({text}): the replies would follow it too"),
                [format!("sudo ip route del {}/{}{}", r.destination.unwrap(), r.prefix_len, back_dev.as_deref().map(|d| format!(" dev {d}")).unwrap_or_default())],
            ));
            f.fix.push(loose);
        }
        _ => f.fix.push(loose),
    }
    Some(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shim_address_skips_taken_ones() {
        let gw: IpAddr = "10.77.0.1".parse().unwrap();
        let taken = [gw, "10.77.0.254".parse().unwrap()];
        assert_eq!(shim_address("10.77.0.0/24", &taken), Some("10.77.0.253".parse().unwrap()));
        assert_eq!(shim_address("10.77.0.0/24", &[]), Some("10.77.0.254".parse().unwrap()));
        assert_eq!(shim_address("fd00::/64", &[]), None);
    }
}
