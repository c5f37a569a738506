//! hostreach's rules: facts and probe results in, a verdict with findings, evidence and fixes out.
//! No I/O: everything here runs the same on live facts and on a saved bundle.
//!
//! One module per family: [`socket`] (who listens where), [`path`] (the wire), [`fixes`] (the commands).
//! [`diagnose`] puts them together in the order the packet meets them.

pub mod discover;
pub mod fixes;
pub mod mtu;
pub mod path;
pub mod pressure;
pub mod socket;
pub mod wirecheck;
pub mod wirepath;

use fixes::Place;
use hostreach_model::target::{is_host_alias, is_loopback};
use hostreach_model::{
    Code, ContainerReport, DropEvent, Evidence, Facts, Finding, Hop, NetworkMode, ProbeOutcome, ResolutionSource,
    Report, SCHEMA, Severity, TargetHost, TargetReport, TraceStatus, Verdict,
};
use socket::Listening;
use std::net::IpAddr;

/// Drop reasons that mean a firewall (netfilter) threw the packet away.
const NETFILTER_REASONS: &[&str] = &["NETFILTER_DROP"];
/// Drop reasons that mean "no route".
const NO_ROUTE_REASONS: &[&str] = &["IP_INNOROUTES", "IP_OUTNOROUTES"];

/// Where `host` (the keyword) points for this subject: its network's gateway; loopback in host mode;
/// the default route's gateway for a namespace Docker does not manage.
pub fn host_keyword_address(facts: &Facts) -> Option<(IpAddr, String)> {
    if let Some(c) = facts.subject.container() {
        match c.network_mode {
            NetworkMode::Host => return Some((IpAddr::from([127, 0, 0, 1]), "host network mode: the host is 127.0.0.1".into())),
            NetworkMode::None => return None,
            _ => {}
        }
        let preferred = c.networks.iter().find(|n| n.name == c.network_mode_raw).or_else(|| c.networks.first());
        if let Some(n) = preferred.filter(|n| n.gateway.is_some()) {
            return Some((n.gateway.unwrap(), format!("gateway of Docker network {}", n.name)));
        }
        if let Some(n) = c.networks.iter().find(|n| n.gateway.is_some()) {
            return Some((n.gateway.unwrap(), format!("gateway of Docker network {}", n.name)));
        }
    }
    let sn = facts.subject_net.as_ref()?;
    sn.routes
        .iter()
        .filter(|r| r.destination.is_none() && r.table == 254)
        .find_map(|r| r.gateway)
        .map(|g| (g, "the default route's gateway".into()))
}

/// Where `--add-host NAME:host-gateway` points: the daemon's `host-gateway-ip`, else the address of
/// the default bridge (docker0), whatever network the container is on (moby PR 40007).
pub fn host_gateway(facts: &Facts) -> Option<IpAddr> {
    let settings = facts.daemon.as_ref().and_then(|d| d.settings.as_ref());
    if let Some(ip) = settings.and_then(|s| s.host_gateway_ip.as_deref()).and_then(|s| s.parse().ok()) {
        return Some(ip);
    }
    let hn = facts.host_net.as_ref()?;
    let docker0 = hn.link_by_name("docker0")?;
    hn.addrs_of(docker0.index).find(|a| a.address.is_ipv4()).map(|a| a.address)
}

/// Attributed drops of the probe's own packets, then the rest recorded during the probe.
fn probe_drops(facts: &Facts) -> (Vec<&DropEvent>, Vec<&DropEvent>) {
    facts.drops.events.iter().partition(|e| e.attributed)
}

struct Ctx<'a> {
    facts: &'a Facts,
    addr: Option<IpAddr>,
    port: u16,
    proto: hostreach_model::Proto,
    place: Place,
    mode: Option<NetworkMode>,
    own_netns: bool,
}

/// Runs every rule over the facts and returns the report `hostreach doctor` prints.
pub fn diagnose(facts: &Facts) -> Report {
    let target = facts.target.clone().expect("diagnose needs a target");
    let addr = facts.resolution.as_ref().and_then(|r| r.address);
    let container = facts.subject.container();
    let mode = container.map(|c| c.network_mode);
    let own_netns = match (&facts.subject_net, &facts.host_net) {
        (Some(s), Some(h)) if s.inode.is_some() && h.inode.is_some() => s.inode != h.inode,
        _ => mode != Some(NetworkMode::Host),
    };
    let w = path::wire(facts, addr.as_ref());
    let net = container.and_then(|c| c.networks.iter().find(|n| n.name == c.network_mode_raw).or_else(|| c.networks.first()));
    let place = Place {
        container: container.map(|c| c.name.clone()),
        gateway: w.bridge_addr.or_else(|| net.and_then(|n| n.gateway)).or_else(|| host_keyword_address(facts).map(|h| h.0)),
        subnet: net.and_then(|n| n.subnet.clone()),
        bridge: w.bridge.map(|b| b.name.clone()).or_else(|| net.and_then(|n| n.bridge.clone())),
        network: net.map(|n| n.name.clone()),
        host_gateway: host_gateway(facts),
        docker_iptables_off: facts.daemon.as_ref().and_then(|d| d.settings.as_ref()).and_then(|s| s.iptables) == Some(false),
    };
    let cx = Ctx { facts, addr, port: target.port, proto: target.proto, place, mode, own_netns };

    let (primary, failed_hop, unknown_from) = decide(&cx, &target);
    let mut findings = vec![primary];
    findings.extend(secondary(&cx, &findings[0]));
    // Shortages above 80% of their limit (issue 5), even when the probe succeeded.
    if let Some(a) = addr {
        let w = pressure::warnings(&pressure_input(&cx, a), findings[0].code);
        findings.extend(w);
    }
    // The MTU search's verdict, when it ran (a black hole outranks a handshake that "worked").
    mtu::apply(facts, &mut findings);

    let verdict = Verdict { code: findings[0].code, summary: findings[0].summary.clone(), hop: findings[0].hop };
    let path = path::hops(facts, addr.as_ref(), target.port, failed_hop, unknown_from);
    Report {
        schema: SCHEMA.to_string(),
        verdict,
        target: TargetReport {
            input: target.input.clone(),
            address: addr,
            port: target.port,
            proto: target.proto,
            name: target.name().map(str::to_string),
        },
        container: container.map(|c| ContainerReport {
            id: c.id.clone(),
            name: c.name.clone(),
            pid: c.pid,
            network_mode: c.network_mode,
            network: cx.place.network.clone(),
        }),
        path,
        findings,
        skipped: facts.skipped.clone(),
        daemon: facts.daemon.clone(),
        discovered_from: None,
    }
}

fn finding(code: Code, severity: Severity, hop: Option<Hop>, summary: String) -> Finding {
    Finding { code, severity, summary, hop, evidence: vec![], fix: vec![] }
}

/// The verdict's finding, the hop that failed, and the hop from which the evidence runs out.
fn decide(cx: &Ctx, target: &hostreach_model::Target) -> (Finding, Option<Hop>, Option<Hop>) {
    let facts = cx.facts;
    let port = cx.port;
    let proto = cx.proto;

    // 1. No network at all.
    if cx.mode == Some(NetworkMode::None) {
        let name = cx.place.container();
        let mut f = finding(
            Code::NetworkNone,
            Severity::Error,
            Some(Hop::ContainerEth0),
            format!("container {name} has network mode none: it has only a loopback interface and cannot reach the host"),
        );
        f.evidence.push(Evidence::Docker { field: "HostConfig.NetworkMode".into(), value: "none".into() });
        if let Some(sn) = &facts.subject_net {
            let names: Vec<&str> = sn.links.iter().map(|l| l.name.as_str()).collect();
            f.evidence.push(Evidence::Route { netns: "container".into(), detail: format!("interfaces: {}", names.join(", ")) });
        }
        f.fix = fixes::network_none(&name);
        return (f, Some(Hop::ContainerEth0), None);
    }

    // 2. The name does not resolve.
    if let Some(res) = &facts.resolution
        && res.source == ResolutionSource::Unresolved
    {
        let name = res.name.clone().unwrap_or_default();
        let alias = is_host_alias(&name);
        let code = if alias { Code::HostAliasUnresolved } else { Code::NameUnresolved };
        let summary = if alias {
            format!("{name} does not resolve in the container: nothing maps it to the host (no hosts entry, and DNS does not know it)")
        } else {
            format!("{name} does not resolve in the container")
        };
        let mut f = finding(code, Severity::Error, Some(Hop::ContainerResolver), summary);
        let hosts_path = container_hosts_path(facts);
        f.evidence.push(Evidence::Hosts {
            path: hosts_path,
            line: None,
            entry: None,
            detail: format!("no line names {name}"),
        });
        if let Some(c) = facts.subject.container() {
            f.evidence.push(Evidence::Docker {
                field: "HostConfig.ExtraHosts".into(),
                value: if c.extra_hosts.is_empty() { "[]".into() } else { c.extra_hosts.join(", ") },
            });
        }
        for q in &res.dns_queries {
            f.evidence.push(Evidence::Dns {
                server: q.server.to_string(),
                qtype: q.qtype.clone(),
                outcome: q.outcome.clone(),
                answers: q.answers.iter().map(|a| a.to_string()).collect(),
            });
        }
        if res.dns_queries.is_empty() {
            f.evidence.push(Evidence::Missing { what: "dns".into(), why: "no DNS query could be sent".into() });
        }
        let peer = (!alias).then(|| facts.peers.iter().find(|p| p.name.eq_ignore_ascii_case(&name))).flatten();
        f.fix = if alias {
            fixes::host_alias(&name, &cx.place)
        } else if let (Some(peer), Some(c)) = (peer, facts.subject.container()) {
            // It is another container's name: containers find each other by name only through
            // Docker's embedded DNS (127.0.0.11), which user-defined networks have and the default
            // bridge does not.
            let mine: Vec<&str> = c.networks.iter().map(|n| n.name.as_str()).collect();
            let shared: Vec<&String> = peer.networks.iter().filter(|n| mine.contains(&n.as_str()) && n.as_str() != "bridge").collect();
            f.evidence.push(Evidence::Docker { field: format!("container {}", peer.name), value: format!("running, on networks: {}", peer.networks.join(", ")) });
            f.summary = if shared.is_empty() {
                format!("{name} is a container, but {} shares no user-defined network with it: on the default bridge containers cannot resolve each other's names (no embedded DNS at 127.0.0.11)", c.name)
            } else {
                format!("{name} is a container on the same network, yet its name does not resolve in {}", c.name)
            };
            fixes::peer_network(&c.name, &peer.name)
        } else {
            let servers: Vec<IpAddr> = res.dns_queries.iter().map(|q| q.server).collect();
            let mut uniq = servers.clone();
            uniq.dedup();
            fixes::name_unresolved(&name, &uniq)
        };
        return (f, Some(Hop::ContainerResolver), None);
    }

    let Some(addr) = cx.addr else {
        let f = finding(Code::Unknown, Severity::Error, None, "the target has no address to probe".into());
        return (f, None, None);
    };
    let probe = facts.probe.as_ref();
    let (ours, others) = probe_drops(facts);

    // 3. It works.
    if let Some(p) = probe
        && p.outcome == ProbeOutcome::Connected
    {
        let mut f = finding(
            Code::Ok,
            Severity::Info,
            None,
            match proto {
                hostreach_model::Proto::Tcp => format!("the container reaches {} ({}): the TCP handshake completed", fmt_ep(&addr, port), target.input),
                hostreach_model::Proto::Udp => format!("the container reaches {}: the service answered the UDP datagram", fmt_ep(&addr, port)),
            },
        );
        f.evidence.push(probe_evidence(cx));
        for s in socket::listeners_on(&facts.host_sockets, proto, port).into_iter().filter(|s| socket::accepts(s, &addr)) {
            f.evidence.push(Evidence::socket(s));
        }
        return (f, None, None);
    }

    // 4. The target is the container's own loopback.
    if is_loopback(&addr) && cx.own_netns {
        let mut f = finding(
            Code::ContainerLoopback,
            Severity::Error,
            Some(Hop::ContainerLoopback),
            format!(
                "{} is the container's own loopback: inside its network namespace {} never reaches the host",
                target.input,
                fmt_ep(&addr, port)
            ),
        );
        if let Some(res) = &facts.resolution
            && let ResolutionSource::HostsFile { path, entry } = &res.source
        {
            f.evidence.push(Evidence::Hosts {
                path: path.clone(),
                line: Some(entry.line),
                entry: Some(format!("{} {}", entry.address, entry.names.join(" "))),
                detail: format!("{} resolves to loopback", res.name.clone().unwrap_or_default()),
            });
        }
        if probe.is_some() {
            f.evidence.push(probe_evidence(cx));
        }
        let alias_mapped = facts
            .subject
            .container()
            .is_some_and(|c| !hostreach_model::parse::hosts_lookup(&c.hosts, "host.docker.internal").is_empty());
        f.fix = fixes::container_loopback(&cx.place, port, alias_mapped);
        return (f, Some(Hop::ContainerLoopback), None);
    }

    let host_owns = facts.host_net.as_ref().is_some_and(|h| h.owns(&addr)) || is_loopback(&addr);
    let netfilter: Vec<&DropEvent> = ours.iter().copied().filter(|e| NETFILTER_REASONS.contains(&e.reason.as_str())).collect();
    let no_socket = ours.iter().any(|e| e.reason == "NO_SOCKET");
    let outcome = probe.map(|p| p.outcome);
    let answered_no = matches!(outcome, Some(ProbeOutcome::Refused) | Some(ProbeOutcome::Unreachable));

    // 4b. The wire itself: a macvlan child targeting its own host; reverse-path filtering.
    if let Some(f) = wirecheck::macvlan_finding(facts, &addr, probe.map(|_| probe_evidence(cx))) {
        return (f, Some(Hop::ContainerEth0), None);
    }
    let rp_pool: Vec<&DropEvent> = if ours.is_empty() && outcome == Some(ProbeOutcome::NoAnswer) { others.clone() } else { ours.clone() };
    if let Some(f) = wirecheck::rp_filter_finding(facts, &rp_pool, probe.map(|_| probe_evidence(cx)), outcome == Some(ProbeOutcome::NoAnswer)) {
        return (f, Some(Hop::Bridge), None);
    }

    // 4c. Shortages (issue 5): no free local port (EADDRNOTAVAIL); conntrack refusing new flows
    // (a NETFILTER_DROP no rule made, while a table is at its limit): never a FIREWALL_DROP.
    if let Some(f) = pressure::ephemeral_verdict(&pressure_input(cx, addr)) {
        return (f, Some(Hop::ContainerEth0), None);
    }
    if let Some(f) = pressure::conntrack_verdict(&pressure_input(cx, addr), &ours) {
        let hop = f.hop;
        return (f, hop, None);
    }

    // 5. The kernel says a firewall dropped the probe's packet.
    if !netfilter.is_empty() {
        let reject = answered_no;
        let code = if reject { Code::FirewallReject } else { Code::FirewallDrop };
        let summary = if reject {
            format!(
                "a firewall rule on the host's {} path rejects {} from the container ({} came back)",
                if host_owns { "INPUT" } else { "FORWARD" },
                fmt_ep(&addr, port),
                if outcome == Some(ProbeOutcome::Refused) { "a reset or ICMP port-unreachable" } else { "an ICMP unreachable" }
            )
        } else {
            format!(
                "a firewall rule on the host's {} path silently drops {} from the container (the kernel reported NETFILTER_DROP for the probe's packet)",
                if host_owns { "INPUT" } else { "FORWARD" },
                fmt_ep(&addr, port)
            )
        };
        let mut f = finding(code, Severity::Error, Some(Hop::HostInput), summary);
        f.evidence.push(probe_evidence(cx));
        for d in &netfilter {
            f.evidence.push(Evidence::drop(d));
        }
        push_deciding_rule(cx, &mut f);
        for s in socket::listeners_on(&facts.host_sockets, proto, port).into_iter().filter(|s| socket::accepts(s, &addr)) {
            f.evidence.push(Evidence::socket(s));
        }
        f.fix = firewall_fixes(cx);
        return (f, Some(Hop::HostInput), None);
    }

    // 6. No route.
    let no_route_drop: Vec<&DropEvent> = ours.iter().copied().filter(|e| NO_ROUTE_REASONS.contains(&e.reason.as_str())).collect();
    if outcome == Some(ProbeOutcome::NoRoute) || !no_route_drop.is_empty() {
        // The container's own table decides first; with a usable route there, the host is the one without.
        let sub_ok = facts.subject_net.as_ref().is_some_and(|n| path::route_lookup(n, &addr).is_some_and(|r| !wirepath::is_dead_route(r)));
        let at = if sub_ok && !host_owns { Hop::HostRoute } else { Hop::ContainerEth0 };
        let mut f = wirepath::no_route_finding(facts, &addr, at);
        let mut ev = vec![probe_evidence(cx)];
        ev.extend(no_route_drop.into_iter().map(Evidence::drop));
        f.evidence.splice(0..0, ev);
        return (f, Some(Hop::ContainerEth0), None);
    }

    // 7. The socket table, for a host-owned address.
    if host_owns {
        let listening = socket::classify(&facts.host_sockets, proto, &addr, port);
        let refused_like = no_socket || answered_no || probe.is_none();
        let sockets_known = !facts.skipped.iter().any(|s| s.what == "host-sockets");
        if refused_like && sockets_known {
            match &listening {
                Listening::Nothing => {
                    let mut f = finding(
                        Code::ServiceNotListening,
                        Severity::Error,
                        Some(Hop::HostSocket),
                        format!("nothing listens on {proto} port {port} on any host address"),
                    );
                    push_probe_and_drops(cx, &mut f, &ours);
                    f.evidence.push(Evidence::Missing {
                        what: "socket".into(),
                        why: format!("the host's socket table (sock_diag) has no {proto} listener on port {port}"),
                    });
                    let mut ports: Vec<u16> = facts
                        .host_sockets
                        .iter()
                        .filter(|s| s.proto == proto && s.is_listener())
                        .map(|s| s.local_port)
                        .collect();
                    ports.sort_unstable();
                    ports.dedup();
                    ports.truncate(12);
                    f.fix = fixes::not_listening(port, proto, &ports);
                    return (f, Some(Hop::HostSocket), None);
                }
                Listening::LoopbackOnly(ls) => {
                    let svc = socket::service_of(ls, port, target.scheme.as_deref());
                    let mut f = finding(
                        Code::LoopbackOnlyBind,
                        Severity::Error,
                        Some(Hop::HostSocket),
                        format!(
                            "{} listens only on {} (loopback); the container's packets arrive at {} and find no socket",
                            who(ls),
                            fixes::endpoints(ls),
                            fmt_ep(&addr, port)
                        ),
                    );
                    push_probe_and_drops(cx, &mut f, &ours);
                    for s in ls {
                        f.evidence.push(Evidence::socket(s));
                    }
                    f.fix = fixes::loopback_bind(svc, ls, &cx.place, port, proto);
                    return (f, Some(Hop::HostSocket), None);
                }
                Listening::OtherAddresses(ls) => {
                    let mut f = finding(
                        Code::BoundToOtherAddress,
                        Severity::Error,
                        Some(Hop::HostSocket),
                        format!(
                            "{} listens on {}, not on {}: the container's packets find no socket",
                            who(ls),
                            fixes::endpoints(ls),
                            fmt_ep(&addr, port)
                        ),
                    );
                    push_probe_and_drops(cx, &mut f, &ours);
                    for s in ls {
                        f.evidence.push(Evidence::socket(s));
                    }
                    let hn = facts.host_net.as_ref();
                    let reachable: Vec<IpAddr> = ls
                        .iter()
                        .map(|s| s.local_address)
                        .filter(|a| !is_loopback(a) && !hostreach_model::target::is_unspecified(a))
                        .filter(|a| a.is_ipv4() == addr.is_ipv4())
                        .collect();
                    for a in &reachable {
                        if let Some(l) = hn.and_then(|h| h.owner_of(a)) {
                            f.evidence.push(Evidence::Address { address: a.to_string(), interface: l.name.clone() });
                        }
                    }
                    f.fix = fixes::other_address(ls, &cx.place, port, &reachable);
                    return (f, Some(Hop::HostSocket), None);
                }
                Listening::Accepts(ls) if probe.is_some() && answered_no => {
                    // A listener takes this address, yet the answer was no: something in between said it.
                    let mut f = finding(
                        Code::FirewallReject,
                        Severity::Error,
                        Some(Hop::HostInput),
                        format!(
                            "{} listens on {}, yet the connection from the container was refused: a firewall rule rejects it",
                            who(ls),
                            fixes::endpoints(ls)
                        ),
                    );
                    push_probe_and_drops(cx, &mut f, &ours);
                    for s in ls {
                        f.evidence.push(Evidence::socket(s));
                    }
                    push_deciding_rule(cx, &mut f);
                    f.fix = firewall_fixes(cx);
                    return (f, Some(Hop::HostInput), None);
                }
                Listening::Accepts(_) => {}
            }
        }
    }

    // 8. UDP without an error from a host that has a listener: as good as UDP gets.
    if outcome == Some(ProbeOutcome::UdpNoError) {
        let ls: Vec<_> = socket::listeners_on(&facts.host_sockets, proto, port).into_iter().filter(|s| socket::accepts(s, &addr)).collect();
        if !ls.is_empty() && host_owns {
            let mut f = finding(
                Code::Ok,
                Severity::Info,
                None,
                format!("the datagram to {} raised no error and {} listens there (UDP gives no handshake to confirm delivery)", fmt_ep(&addr, port), who(&ls)),
            );
            f.evidence.push(probe_evidence(cx));
            push_drop_status(cx, &mut f);
            for s in ls {
                f.evidence.push(Evidence::socket(s));
            }
            return (f, None, None);
        }
    }

    // 8b. No answer from a listener whose accept queue is full (issue 5).
    if host_owns && let Some(f) = pressure::backlog_verdict(&pressure_input(cx, addr), &ours) {
        return (f, Some(Hop::HostSocket), None);
    }

    // 9. Nothing explains it: say what was seen and what is missing; never guess.
    let summary = match outcome {
        Some(ProbeOutcome::NoAnswer) => format!("{} did not answer within {} ms and the kernel reported no drop of the probe's packet", fmt_ep(&addr, port), probe.map(|p| p.timeout_ms).unwrap_or(0)),
        Some(ProbeOutcome::AddressNotAvailable) => "the container could not pick a local address or port for the connection (EADDRNOTAVAIL)".into(),
        Some(o) => format!("the probe to {} ended with {:?} and nothing collected explains it", fmt_ep(&addr, port), o),
        None => format!("the probe to {} could not run and the facts collected do not show a cause", fmt_ep(&addr, port)),
    };
    let code = if outcome == Some(ProbeOutcome::AddressNotAvailable) { Code::EphemeralPortsExhausted } else { Code::Unknown };
    let mut f = finding(code, Severity::Error, None, summary);
    if probe.is_some() {
        f.evidence.push(probe_evidence(cx));
    }
    push_drop_status(cx, &mut f);
    for d in ours.iter().chain(others.iter()).take(8) {
        f.evidence.push(Evidence::drop(d));
    }
    for s in socket::listeners_on(&facts.host_sockets, proto, port) {
        f.evidence.push(Evidence::socket(s));
    }
    if !host_owns {
        f.evidence.push(Evidence::Route {
            netns: "host".into(),
            detail: format!("the host does not own {addr}: the packet is forwarded, beyond this host's sockets"),
        });
    }
    (f, None, Some(Hop::ContainerEth0))
}

/// Findings beside the verdict.
fn secondary(cx: &Ctx, primary: &Finding) -> Vec<Finding> {
    let facts = cx.facts;
    let mut out = Vec::new();
    if cx.mode == Some(NetworkMode::Host) {
        let mut f = finding(
            Code::HostNetworkMode,
            Severity::Info,
            None,
            "the container shares the host's network namespace (network mode host): it reaches 127.0.0.1 directly, but has no network isolation: it can bind any host port and sees every host interface".into(),
        );
        f.evidence.push(Evidence::Docker { field: "HostConfig.NetworkMode".into(), value: "host".into() });
        f.fix.push(hostreach_model::Fix::new(
            "To restore isolation, run it on a bridge network and reach the host by host.docker.internal",
            ["docker run --network bridge --add-host host.docker.internal:host-gateway ...".to_string()],
        ));
        out.push(f);
    }
    // A container-loopback target whose host service is also loopback-only needs both fixes.
    if primary.code == Code::ContainerLoopback
        && let Some(gw) = cx.place.gateway
        && let Listening::LoopbackOnly(ls) = socket::classify(&facts.host_sockets, cx.proto, &gw, cx.port)
    {
        let mut f = finding(
            Code::AlsoLoopbackOnly,
            Severity::Warning,
            Some(Hop::HostSocket),
            format!(
                "on the host, {} listens only on {}: after pointing the container at {}, the service must also listen there",
                who(&ls),
                fixes::endpoints(&ls),
                fmt_ep(&gw, cx.port)
            ),
        );
        for s in &ls {
            f.evidence.push(Evidence::socket(s));
        }
        let svc = socket::service_of(&ls, cx.port, facts.target.as_ref().and_then(|t| t.scheme.as_deref()));
        f.fix = fixes::loopback_bind(svc, &ls, &cx.place, cx.port, cx.proto);
        out.push(f);
    }
    if let TraceStatus::Unavailable(why) = &facts.drops.status
        && primary.code != Code::Ok
        && facts.probe.is_some()
    {
        let mut f = finding(
            Code::DropReasonsUnavailable,
            Severity::Warning,
            None,
            "the kernel's drop reasons could not be recorded, so this verdict rests on the probe and the socket table alone".into(),
        );
        f.evidence.push(Evidence::Missing { what: "drop-reasons".into(), why: why.clone() });
        out.push(f);
    }
    out
}

fn pressure_input<'a>(cx: &'a Ctx, addr: IpAddr) -> pressure::Input<'a> {
    pressure::Input {
        facts: cx.facts,
        addr,
        port: cx.port,
        proto: cx.proto,
        place: &cx.place,
        probe: cx.facts.probe.as_ref().map(|_| probe_evidence(cx)),
    }
}

/// The rule that decides the probe's packet, from the live rules (doctor's firewall step), with its
/// counter's movement while the probe was sent again; or why it is not known.
fn push_deciding_rule(cx: &Ctx, f: &mut Finding) {
    match &cx.facts.firewall {
        Some(fw) if fw.decision == "drop" || fw.decision == "reject" => {
            f.evidence.push(Evidence::Rule {
                backend: fw.backend.clone().unwrap_or_else(|| "?".into()),
                table: fw.table.clone().unwrap_or_default(),
                chain: fw.chain.clone().unwrap_or_default(),
                rule: fw.rule.clone(),
                manager: Some(fw.manager.clone()),
                counter_delta: fw.counter_delta,
                certain: Some(fw.certain),
            });
            if let Some(b) = &fw.docker_firewall_backend {
                f.evidence.push(Evidence::Docker { field: "firewall_backend".into(), value: b.summary.clone() });
            }
            if fw.counter_delta == Some(0) {
                f.evidence.push(Evidence::Missing {
                    what: "counter".into(),
                    why: "the deciding rule's counter did not move when the probe was sent again: another rule or component may drop it".into(),
                });
            }
        }
        Some(fw) => f.evidence.push(Evidence::Missing {
            what: "deciding-rule".into(),
            why: format!(
                "the live rules {} this packet ({}), yet the kernel dropped it in netfilter: something the rules walk does not see decided (conntrack, a set, a rule added since)",
                fw.decision, fw.rule
            ),
        }),
        None => f.evidence.push(Evidence::Missing {
            what: "deciding-rule".into(),
            why: cx
                .facts
                .skipped
                .iter()
                .find(|s| s.what == "deciding-rule")
                .map(|s| s.why.clone())
                .unwrap_or_else(|| "the live rules were not read".into()),
        }),
    }
}

/// Fixes for a firewall verdict: the manager's own, verified by walking the packet again with them
/// applied, then the generic INPUT-rule advice.
fn firewall_fixes(cx: &Ctx) -> Vec<hostreach_model::Fix> {
    let mut generic = fixes::firewall(&cx.place, cx.port, cx.proto);
    // Docker's nftables backend has no DOCKER-USER chain: advise nothing about it, say where the rule goes.
    let reported = cx.facts.daemon.as_ref().and_then(|d| d.firewall_backend.as_deref()).is_some_and(|b| b.starts_with("nftables"));
    let inferred = cx.facts.firewall.as_ref().and_then(|fw| fw.docker_firewall_backend.as_ref()).is_some_and(|b| b.is_nftables());
    if reported || inferred {
        for g in generic.iter_mut().filter(|g| g.commands.is_empty() && g.summary.contains("DOCKER-USER")) {
            *g = fixes::docker_nftables_note(reported);
        }
    }
    match cx.facts.firewall.as_ref().map(|fw| fw.fixes.clone()).filter(|f| !f.is_empty()) {
        // The manager's own fixes, proven on a copy of the rules; plus why DOCKER-USER is not the place.
        Some(mut own) => {
            // The note on DOCKER-USER is about local delivery; on the forwarding path it would mislead.
            let input = cx.addr.is_some_and(|a| cx.facts.host_net.as_ref().is_some_and(|h| h.owns(&a)) || is_loopback(&a));
            if input {
                own.extend(generic.into_iter().filter(|f| f.commands.is_empty()));
            }
            own
        }
        None => generic,
    }
}

fn push_probe_and_drops(cx: &Ctx, f: &mut Finding, ours: &[&DropEvent]) {
    if cx.facts.probe.is_some() {
        f.evidence.push(probe_evidence(cx));
    }
    for d in ours {
        f.evidence.push(Evidence::drop(d));
    }
    if ours.is_empty() {
        push_drop_status(cx, f);
    }
}

fn push_drop_status(cx: &Ctx, f: &mut Finding) {
    match &cx.facts.drops.status {
        TraceStatus::Unavailable(why) => f.evidence.push(Evidence::Missing { what: "drop-reasons".into(), why: why.clone() }),
        TraceStatus::NotRun if cx.facts.probe.is_some() => {
            f.evidence.push(Evidence::Missing { what: "drop-reasons".into(), why: "tracing was not requested".into() })
        }
        _ => {}
    }
}

fn probe_evidence(cx: &Ctx) -> Evidence {
    let p = cx.facts.probe.as_ref().expect("probe evidence without a probe");
    let netns = if cx.own_netns { "container" } else { "host" };
    Evidence::Probe {
        proto: p.proto,
        source: p.source.map(|s| s.to_string()),
        destination: p.destination.to_string(),
        outcome: p.outcome,
        error: p.error.clone().or_else(|| {
            p.concluded_by_drop.then(|| "stopped early: the kernel reported dropping the probe's packet".to_string())
        }),
        elapsed_ms: p.elapsed_ms,
        netns: netns.into(),
    }
}

fn who(ls: &[&hostreach_model::SocketFact]) -> String {
    ls.iter()
        .find_map(|s| s.process.as_ref())
        .map(|p| format!("{} (pid {})", p.name, p.pid))
        .unwrap_or_else(|| "the service".into())
}

/// `172.17.0.1:5432`, `[fd00::1]:5432`.
pub(crate) fn fmt_ep(a: &IpAddr, port: u16) -> String {
    std::net::SocketAddr::new(*a, port).to_string()
}

fn container_hosts_path(facts: &Facts) -> String {
    match facts.subject.pid() {
        Some(pid) => format!("/proc/{pid}/root/etc/hosts"),
        None => "/etc/hosts".into(),
    }
}

/// Is the target one the subject reaches through the `host` keyword?
pub fn is_host_keyword(t: &hostreach_model::Target) -> bool {
    t.host == TargetHost::Host
}

#[cfg(test)]
mod tests;
