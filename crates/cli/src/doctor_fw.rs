//! doctor's firewall step: when the probe points at the firewall (the kernel dropped the probe's
//! packet in netfilter, or a listener takes the address and the answer was still no), read this
//! host's live rules, let hostreach-firewall name the rule that decides the probe's packet, then send
//! the probe once more and read the rules again: the deciding rule's counter must have moved.
//! Everything here only reads; the rules are never changed.

use hostreach_collect::netns::Netns;
use hostreach_collect::probe::{self, ProbeSpec};
use hostreach_firewall::docker::{BackendSource, DaemonAnswer};
use hostreach_firewall::{Context, Packet, PathKind, Proto as FwProto, Rulesets, explain_with};
use hostreach_model::{DockerFirewallBackend, Facts, FirewallFacts, Fix, ProbeOutcome, Proto, Skipped};
use std::time::Duration;

/// Does the probe point at the firewall?
fn firewall_suspected(facts: &Facts) -> bool {
    let Some(p) = &facts.probe else { return false };
    let netfilter = facts.drops.events.iter().any(|e| e.attributed && e.reason == "NETFILTER_DROP");
    let refused_with_listener = matches!(p.outcome, ProbeOutcome::Refused | ProbeOutcome::Unreachable)
        && facts
            .host_sockets
            .iter()
            .any(|s| s.proto == p.proto && s.local_port == p.destination.port() && s.is_listener() && hostreach_rules::socket::accepts(s, &p.destination.ip()));
    netfilter || refused_with_listener
}

/// The ingress interface of the probe's packet on the host: the bridge of the container's network.
fn ingress(facts: &Facts) -> Option<String> {
    let dst = facts.probe.as_ref().map(|p| p.destination.ip());
    let w = hostreach_rules::path::wire(facts, dst.as_ref());
    w.bridge.map(|b| b.name.clone()).or_else(|| w.host_veth.map(|v| v.name.clone())).or_else(|| {
        facts.subject.container().and_then(|c| c.networks.iter().find_map(|n| n.bridge.clone()))
    })
}

fn read_rules() -> Result<(Rulesets, Option<String>), String> {
    let live = hostreach_collect::firewall::read_live().map_err(|e| e.to_string())?;
    if live.is_empty() {
        return Err(live.gaps().unwrap_or_else(|| "no firewall rules could be read".into()));
    }
    let rs = Rulesets::from_texts(
        live.iptables.iter().map(|c| (c.tool.as_str(), c.text.as_str())),
        live.nft_json.as_ref().map(|c| (c.tool.as_str(), c.text.as_str())),
    )
    .map_err(|e| format!("the live rules could not be parsed: {e}"))?;
    Ok((rs, live.gaps()))
}

/// Runs the step and records its answer in `facts.firewall` (or why not in `facts.skipped`).
pub fn step(facts: &mut Facts, netns: Option<&Netns>, timeout: Duration, trace: bool) {
    if !firewall_suspected(facts) {
        return;
    }
    let probe = facts.probe.clone().expect("suspected implies a probe");
    let Some(iif) = ingress(facts) else {
        facts.skipped.push(Skipped { what: "deciding-rule".into(), why: "the host-side interface of the container is unknown".into() });
        return;
    };
    let Some(src) = probe.source else {
        facts.skipped.push(Skipped { what: "deciding-rule".into(), why: "the probe's source address is unknown".into() });
        return;
    };
    let (rules, gaps) = match read_rules() {
        Ok(r) => r,
        Err(why) => {
            facts.skipped.push(Skipped { what: "deciding-rule".into(), why });
            return;
        }
    };
    let host_owns = facts.host_net.as_ref().is_some_and(|h| h.owns(&probe.destination.ip()));
    let path = if host_owns || probe.destination.ip().is_loopback() { PathKind::Input } else { PathKind::Forward };
    let proto = match probe.proto {
        Proto::Tcp => FwProto::Tcp,
        Proto::Udp => FwProto::Udp,
    };
    let mut pkt = Packet::new(iif, src.ip(), probe.destination.ip(), proto, Some(probe.destination.port()), path);
    pkt.local_addresses = facts.host_net.as_ref().map(|h| h.addresses.iter().map(|a| a.address).collect());
    // Forwarded (to another container, or beyond the host): the host's route names the egress
    // interface, so `-o`/`oifname` matches can be evaluated (a container on the same bridge: the bridge).
    if path == PathKind::Forward
        && let Some(h) = facts.host_net.as_ref()
    {
        pkt.oif = hostreach_rules::path::route_lookup(h, &probe.destination.ip())
            .and_then(|r| r.oif)
            .and_then(|i| h.link(i))
            .map(|l| l.name.clone());
    }
    pkt.src_network = facts.subject.container().and_then(|c| c.networks.first()).and_then(|n| n.subnet.clone());
    // What else is known: the daemon's answer (its firewall backend; None before Docker 28.1) and UFW's files.
    let cx = Context {
        ufw: Some(crate::firewall_cmd::ufw_config(hostreach_collect::ufw::read_live())),
        docker: facts.daemon.as_ref().map(|d| DaemonAnswer { version: d.version.clone(), firewall_backend: d.firewall_backend.clone() }),
        live: true,
    };
    let before = explain_with(&rules, &pkt, &cx);

    // Send the probe again and see whether the deciding rule counted it.
    let mut counter_delta = None;
    if let Some((p0, _)) = before.counters
        && matches!(before.decision, hostreach_firewall::Decision::Drop | hostreach_firewall::Decision::Reject)
    {
        // The rule counts the SYN as it is sent (veth transmit runs the host's hooks in the sender's
        // context), so a short untraced probe is enough; no second tracefs instance is needed.
        let _ = (timeout, trace);
        let spec = ProbeSpec { destination: probe.destination, proto: probe.proto, timeout: Duration::from_millis(50), trace: false };
        if probe::run(netns, spec).is_ok()
            && let Ok((rules2, _)) = read_rules()
        {
            let after = explain_with(&rules2, &pkt, &cx);
            if after.rule == before.rule
                && let Some((p1, _)) = after.counters
            {
                counter_delta = Some(p1.saturating_sub(p0));
            }
        }
    }
    let mut notes = before.notes.clone();
    if let Some(g) = gaps {
        notes.push(format!("partial answer: {g}"));
    }
    facts.firewall = Some(FirewallFacts {
        decision: before.decision.as_str().to_string(),
        backend: before.backend.map(|b| b.as_str().to_string()),
        table: before.table.clone(),
        chain: before.chain.clone(),
        rule: before.rule.clone(),
        manager: before.manager.as_str().to_string(),
        certain: before.certain,
        counter_delta,
        fixes: before.fixes.iter().filter(|f| f.verified).map(|f| Fix { summary: f.summary.clone(), commands: f.commands.clone() }).collect(),
        notes,
        docker_firewall_backend: before.docker_firewall_backend.as_ref().map(|b| DockerFirewallBackend {
            driver: b.driver.clone(),
            source: match b.source {
                BackendSource::Daemon => "daemon".into(),
                BackendSource::Inferred => "inferred".into(),
            },
            summary: b.summary.clone(),
        }),
    });
}
