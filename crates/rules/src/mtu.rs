//! MTU: the MTUs along the path compared, and the verdicts of the DF search.
//!
//! - `MTU_MISMATCH` (warning): the container sends packets larger than the path carries, and an ICMP
//!   "fragmentation needed" comes back, so PMTU discovery lowers the size and traffic works (slower start).
//! - `MTU_BLACKHOLE` (error): packets above some size are lost and no "fragmentation needed" comes back:
//!   the handshake works, large transfers hang.
//!
//! The fixes set the container network's MTU where Docker takes it: daemon.json `mtu` covers only the
//! default bridge; user-defined networks (compose networks included) need the driver option
//! `com.docker.network.driver.mtu` (moby#35683).

use hostreach_model::{
    Code, Evidence, Facts, Finding, Fix, Hop, MtuComparison, MtuOutcome, MtuSearch, NetworkMode, Severity,
};
use std::net::IpAddr;

/// Should doctor run the MTU search? Only when the path shows a hop with a smaller MTU than the
/// container's, or a tunnel: doctor stays fast otherwise (`--mtu` forces it). Returns why.
pub fn should_search(facts: &Facts, dst: &IpAddr) -> Option<String> {
    let (_, cmp, _) = crate::wirepath::hops_towards(facts, Some(dst));
    let c = cmp?;
    if c.mismatch {
        return Some(format!(
            "{} has MTU {}, below the container's {}",
            c.smallest_at.as_deref().unwrap_or("a hop"),
            c.smallest.unwrap_or(0),
            c.container.unwrap_or(0)
        ));
    }
    c.tunnel.map(|t| format!("a {t} tunnel is on the way"))
}

/// Evidence about an MTU, without numbers.
pub fn mtu_ev(detail: String) -> Evidence {
    Evidence::Mtu { detail, path_mtu: None, probes: None }
}

fn size_line(s: &MtuSearch) -> String {
    s.attempts
        .iter()
        .map(|a| {
            let o = match a.outcome {
                MtuOutcome::Passed => "reply".to_string(),
                MtuOutcome::FragNeeded => format!("frag-needed mtu {}", a.mtu.unwrap_or(0)),
                MtuOutcome::Lost => "lost".into(),
                MtuOutcome::LocalError => "refused locally".into(),
                MtuOutcome::Unreachable => "unreachable".into(),
            };
            format!("{} {o}", a.size)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn search_evidence(s: &MtuSearch) -> Vec<Evidence> {
    let mut ev = Vec::new();
    let dst = s.destination.map(|d| d.to_string()).unwrap_or_default();
    ev.push(mtu_ev(format!(
            "the container's interface MTU {} (the largest packet it sends)",
            s.interface_mtu.map(|m| m.to_string()).unwrap_or_else(|| "?".into())
        )));
    ev.push(mtu_ev(format!("{} ICMP echo probes with DF set to {dst} (IP packet sizes): {}", s.probes(), size_line(s))));
    let found = match (s.path_mtu, s.largest_passing) {
        (Some(m), _) => format!("path MTU to {dst}: {m} bytes (the largest packet that passes; one byte more does not), found in {} probes", s.probes()),
        (None, Some(l)) => format!("packets of {l} bytes pass to {dst}; the exact limit was not pinned in {} probes", s.probes()),
        (None, None) => format!("no size got an answer from {dst} in {} probes", s.probes()),
    };
    ev.push(Evidence::Mtu { detail: found, path_mtu: s.path_mtu, probes: Some(s.probes() as u32) });
    match (s.frag_needed_mtu, s.frag_needed_from) {
        (Some(m), from) => ev.push(mtu_ev(format!("an ICMP fragmentation-needed came back{}, naming MTU {m}", from.map(|f| format!(" from {f}")).unwrap_or_default()))),
        (None, _) if s.attempts.iter().any(|a| a.outcome == MtuOutcome::Lost) => ev.push(mtu_ev("no ICMP fragmentation-needed came back for any lost size".into())),
        _ => {}
    }
    if let Some(t) = &s.tcp {
        let what = if !t.connected {
            format!("TCP to {}: no connection ({})", t.destination, t.error.as_deref().unwrap_or("?"))
        } else if t.complete {
            format!(
                "TCP to {}: {} bytes sent in full-sized segments, all acknowledged in {} ms; the kernel's path MTU for it {} (MSS {} → {}), {} retransmissions",
                t.destination,
                t.bytes_sent,
                t.elapsed_ms,
                t.pmtu.map(|m| m.to_string()).unwrap_or_else(|| "?".into()),
                t.mss_start.unwrap_or(0),
                t.mss_end.unwrap_or(0),
                t.retransmits
            )
        } else {
            format!(
                "TCP to {}: the handshake completed, but of {} bytes sent only {} were acknowledged in {} ms ({} retransmissions, path MTU {} for the kernel)",
                t.destination,
                t.bytes_sent,
                t.bytes_acked,
                t.elapsed_ms,
                t.retransmits,
                t.pmtu.map(|m| m.to_string()).unwrap_or_else(|| "?".into())
            )
        };
        ev.push(mtu_ev(what));
    }
    ev
}

/// What the fixes need: which network the container is on and how it was made.
struct Where {
    container: String,
    network: Option<String>,
    mode: Option<NetworkMode>,
}

fn where_of(facts: &Facts) -> Where {
    let c = facts.subject.container();
    let net = c.and_then(|c| c.networks.iter().find(|n| n.name == c.network_mode_raw).or_else(|| c.networks.first()));
    Where {
        container: c.map(|c| c.name.clone()).unwrap_or_else(|| "CONTAINER".into()),
        network: net.map(|n| n.name.clone()),
        mode: c.map(|c| c.network_mode),
    }
}

/// Set the container network's MTU to `mtu`, where Docker takes it.
pub fn mtu_fixes(facts: &Facts, mtu: u32) -> Vec<Fix> {
    let w = where_of(facts);
    let mut fixes = Vec::new();
    let user_net = matches!(w.mode, Some(NetworkMode::UserBridge) | Some(NetworkMode::Macvlan) | Some(NetworkMode::Ipvlan) | Some(NetworkMode::Overlay));
    let daemon = Fix::new(
        format!("Default bridge (docker0): set the daemon's MTU to {mtu} in /etc/docker/daemon.json, restart Docker, then recreate the containers (a veth takes its MTU when it is created)"),
        [format!("{{ \"mtu\": {mtu} }}"), "sudo systemctl restart docker".to_string()],
    );
    let net = w.network.clone().filter(|_| user_net).unwrap_or_else(|| "NETWORK".into());
    let user = Fix::new(
        format!(
            "User-defined networks (every compose network): daemon.json's \"mtu\" does not reach them (moby#35683); give the network the driver option com.docker.network.driver.mtu={mtu}; a network's MTU cannot be changed, so recreate it and reattach {}",
            w.container
        ),
        [
            format!("docker network create -o com.docker.network.driver.mtu={mtu} {net}"),
            "# docker-compose.yml".to_string(),
            "networks:".to_string(),
            "  default:".to_string(),
            "    driver_opts:".to_string(),
            format!("      com.docker.network.driver.mtu: \"{mtu}\""),
        ],
    );
    if user_net {
        fixes.push(user);
        fixes.push(daemon);
    } else {
        fixes.push(daemon);
        fixes.push(user);
    }
    fixes
}

/// The path's smaller MTU, from the links alone (`hostreach path`): a warning until the search says more.
pub fn path_mismatch_finding(facts: &Facts, c: &MtuComparison, dst: &IpAddr) -> Finding {
    let smallest = c.smallest.unwrap_or(0);
    let mut f = Finding {
        code: Code::MtuMismatch,
        severity: Severity::Warning,
        summary: format!(
            "the container sends packets of up to {} bytes, but {} carries only {smallest}{}: large packets to {dst} rely on PMTU discovery (ICMP fragmentation-needed); `hostreach doctor --mtu` tests whether it works",
            c.container.unwrap_or(0),
            c.smallest_at.as_deref().unwrap_or("a hop on the path"),
            c.tunnel.as_deref().map(|t| format!(" (a {t} tunnel)")).unwrap_or_default()
        ),
        hop: Some(if c.tunnel.is_some() { Hop::Tunnel } else { Hop::HostEgress }),
        evidence: vec![
            mtu_ev(format!("container interface MTU {}", c.container.unwrap_or(0))),
            mtu_ev(format!("{} MTU {smallest}", c.smallest_at.as_deref().unwrap_or("?"))),
        ],
        fix: vec![],
    };
    f.fix = mtu_fixes(facts, smallest);
    f
}

/// The finding the MTU search supports, if any.
pub fn search_finding(facts: &Facts) -> Option<Finding> {
    let s = facts.mtu.as_ref()?;
    let top = s.interface_mtu?;
    let dst = s.destination.map(|d| d.to_string()).unwrap_or_else(|| "the target".into());
    let tcp_stalled = s.tcp.as_ref().is_some_and(|t| t.connected && !t.complete && t.bytes_sent > 0);
    let passing = s.largest_passing;
    let found = s.path_mtu.or(passing);
    match found {
        Some(p) if p >= top && !tcp_stalled => None,
        Some(p) => {
            let mtu = s.path_mtu.unwrap_or(p);
            let mut f = if s.frag_needed_mtu.is_some() && !tcp_stalled {
                Finding {
                    code: Code::MtuMismatch,
                    severity: Severity::Warning,
                    summary: format!(
                        "the path to {dst} carries at most {mtu}-byte packets, less than the container's MTU {top}; an ICMP fragmentation-needed comes back, so PMTU discovery shrinks the packets and traffic works, after a lost first large packet"
                    ),
                    hop: None,
                    evidence: vec![],
                    fix: vec![],
                }
            } else {
                Finding {
                    code: Code::MtuBlackhole,
                    severity: Severity::Error,
                    summary: format!(
                        "packets larger than {mtu} bytes to {dst} are lost and no ICMP fragmentation-needed comes back (an MTU black hole): the handshake works, large transfers hang"
                    ),
                    hop: None,
                    evidence: vec![],
                    fix: vec![],
                }
            };
            f.evidence = search_evidence(s);
            f.fix = mtu_fixes(facts, mtu);
            if f.code == Code::MtuBlackhole {
                let w = where_of(facts);
                f.fix.push(Fix::new(
                    "Or let TCP find the size itself: enable MTU probing in the container (it recovers from black holes)",
                    [format!("docker run --sysctl net.ipv4.tcp_mtu_probing=1 ... (for {})", w.container)],
                ));
                f.fix.push(Fix::new(
                    "And on the box that drops ICMP type 3 code 4 (fragmentation needed), let it through: PMTU discovery needs it".to_string(),
                    ["iptables -I OUTPUT -p icmp --icmp-type fragmentation-needed -j ACCEPT".to_string(), "iptables -I FORWARD -p icmp --icmp-type fragmentation-needed -j ACCEPT".to_string()],
                ));
            }
            Some(f)
        }
        None if tcp_stalled => {
            let mut f = Finding {
                code: Code::MtuBlackhole,
                severity: Severity::Error,
                summary: format!("TCP to {dst} connects but full-sized segments are never acknowledged, and the target answers no ICMP echo to measure the size: an MTU black hole is the likely cause"),
                hop: None,
                evidence: search_evidence(s),
                fix: vec![],
            };
            if let Some(e) = &s.error {
                f.evidence.push(Evidence::Missing { what: "mtu-size".into(), why: e.clone() });
            }
            Some(f)
        }
        None => None,
    }
}

/// Adds the MTU search's finding to doctor's findings. An MTU black hole becomes the verdict when the
/// probe otherwise "worked" (the handshake passes, large packets do not); a mismatch is a warning beside it.
pub fn apply(facts: &Facts, findings: &mut Vec<Finding>) {
    if let Some(f) = search_finding(facts) {
        if f.code == Code::MtuBlackhole && findings.first().is_some_and(|p| matches!(p.code, Code::Ok | Code::Unknown)) {
            findings.insert(0, f);
        } else {
            findings.push(f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hostreach_model::{MtuAttempt, TcpTransfer};

    fn attempt(size: u32, outcome: MtuOutcome, mtu: Option<u32>) -> MtuAttempt {
        MtuAttempt { size, outcome, mtu, from: None, elapsed_us: 100 }
    }

    fn search(path: u32, icmp: bool) -> MtuSearch {
        let mut s = MtuSearch { destination: Some("10.9.0.2".parse().unwrap()), method: "icmp-echo".into(), interface_mtu: Some(1500), ..Default::default() };
        if icmp {
            s.attempts = vec![attempt(1500, MtuOutcome::FragNeeded, Some(path)), attempt(path, MtuOutcome::Passed, None), attempt(path + 1, MtuOutcome::FragNeeded, Some(path))];
            s.frag_needed_mtu = Some(path);
        } else {
            s.attempts = vec![attempt(1500, MtuOutcome::Lost, None), attempt(576, MtuOutcome::Passed, None), attempt(path, MtuOutcome::Passed, None), attempt(path + 1, MtuOutcome::Lost, None)];
        }
        s.largest_passing = Some(path);
        s.smallest_failing = Some(path + 1);
        s.path_mtu = Some(path);
        s
    }

    fn facts_with(s: MtuSearch) -> Facts {
        Facts { mtu: Some(s), ..Default::default() }
    }

    #[test]
    fn frag_needed_is_a_mismatch_warning() {
        let f = search_finding(&facts_with(search(1400, true))).unwrap();
        assert_eq!(f.code, Code::MtuMismatch);
        assert_eq!(f.severity, Severity::Warning);
        assert!(f.summary.contains("at most 1400-byte"), "{}", f.summary);
        let cmds: Vec<&String> = f.fix.iter().flat_map(|x| &x.commands).collect();
        assert!(cmds.iter().any(|c| c.as_str() == "{ \"mtu\": 1400 }"), "{cmds:?}");
        assert!(cmds.iter().any(|c| c.contains("com.docker.network.driver.mtu=1400")), "{cmds:?}");
        assert!(f.fix.iter().any(|x| x.summary.contains("moby#35683")));
    }

    #[test]
    fn silence_is_a_black_hole() {
        let f = search_finding(&facts_with(search(1400, false))).unwrap();
        assert_eq!(f.code, Code::MtuBlackhole);
        assert!(f.evidence.iter().any(|e| matches!(e, Evidence::Mtu { detail, .. } if detail.contains("no ICMP fragmentation-needed"))));
    }

    #[test]
    fn full_size_is_no_finding() {
        let mut s = search(1500, true);
        s.attempts = vec![attempt(1500, MtuOutcome::Passed, None)];
        s.frag_needed_mtu = None;
        assert!(search_finding(&facts_with(s)).is_none());
    }

    #[test]
    fn black_hole_becomes_the_verdict_over_ok() {
        let facts = facts_with(search(1400, false));
        let ok = Finding { code: Code::Ok, severity: Severity::Info, summary: "ok".into(), hop: None, evidence: vec![], fix: vec![] };
        let mut fs = vec![ok.clone()];
        apply(&facts, &mut fs);
        assert_eq!(fs[0].code, Code::MtuBlackhole);
        assert_eq!(fs[1].code, Code::Ok);
        let mut fs = vec![ok];
        apply(&facts_with(search(1400, true)), &mut fs);
        assert_eq!(fs[0].code, Code::Ok);
        assert_eq!(fs[1].code, Code::MtuMismatch);
    }

    #[test]
    fn stalled_tcp_without_echo_is_a_black_hole() {
        let mut s = MtuSearch { destination: Some("10.9.0.2".parse().unwrap()), interface_mtu: Some(1500), error: Some("no echo".into()), ..Default::default() };
        s.tcp = Some(TcpTransfer {
            destination: "10.9.0.2:80".parse().unwrap(),
            connected: true,
            bytes_sent: 65536,
            bytes_acked: 0,
            complete: false,
            pmtu: Some(1500),
            mss_start: Some(1448),
            mss_end: Some(1448),
            retransmits: 3,
            elapsed_ms: 1500,
            error: None,
        });
        assert_eq!(search_finding(&facts_with(s)).unwrap().code, Code::MtuBlackhole);
    }
}
