//! Shortages rather than walls (issue 5): no free ephemeral port towards the destination, an accept
//! queue that overflows, a full conntrack table. Each is a verdict when it explains the failed probe,
//! and a warning when it is above 80% of its limit, even when the probe succeeded.

use crate::fixes::Place;
use crate::fmt_ep;
use crate::socket;
use hostreach_model::{
    Code, DropEvent, Evidence, Facts, Finding, Fix, Hop, PressureFacts, ProbeOutcome, Proto, Severity, SocketFact,
};
use std::net::IpAddr;

/// What the pressure rules need to know besides the facts.
pub struct Input<'a> {
    pub facts: &'a Facts,
    pub addr: IpAddr,
    pub port: u16,
    pub proto: Proto,
    pub place: &'a Place,
    /// The probe's evidence line, when a probe ran.
    pub probe: Option<Evidence>,
}

/// Above this share of a limit, a resource is reported as a warning.
const WARN_RATIO: f64 = 0.8;

/// Functions whose NETFILTER_DROP means a rule decided (iptables, nftables, ebtables, arptables).
const RULE_LOCATIONS: &[&str] = &["nft_do_chain", "ipt_do_table", "ip6t_do_table", "ebt_do_table", "arpt_do_table", "nft_"];

/// Is this drop location a rule evaluation (as opposed to conntrack, or nf_hook_slow acting on a
/// verdict that conntrack returned)?
pub fn is_rule_location(location: &str) -> bool {
    RULE_LOCATIONS.iter().any(|p| location.starts_with(p))
}

/// The host's namespace facts.
pub fn host(facts: &Facts) -> Option<&PressureFacts> {
    facts.pressure.iter().find(|p| p.namespace == "host")
}

/// The subject's namespace facts (the host's in host network mode).
pub fn subject(facts: &Facts) -> Option<&PressureFacts> {
    facts.pressure.iter().find(|p| p.namespace == "subject").or_else(|| host(facts).filter(|h| h.subject_too))
}

fn ns_label(p: &PressureFacts) -> &'static str {
    if p.namespace == "subject" { "container" } else { "host" }
}

fn pct(used: u64, limit: u64) -> u64 {
    (used * 100).checked_div(limit).unwrap_or(100)
}

fn over(used: u64, limit: u64) -> bool {
    limit > 0 && used as f64 >= WARN_RATIO * limit as f64
}

fn sysctl(p: &PressureFacts, name: &str, value: String) -> Evidence {
    Evidence::Sysctl { name: name.into(), value, namespace: ns_label(p).into() }
}

fn finding(code: Code, severity: Severity, hop: Option<Hop>, summary: String) -> Finding {
    Finding { code, severity, summary, hop, evidence: vec![], fix: vec![] }
}

// ------------------------------------------------------------------------------------------
// Ephemeral ports

/// The ephemeral ports in use towards the destination, in the subject's namespace.
#[derive(Debug, Clone, PartialEq)]
pub struct PortUse {
    /// Sockets connected to the destination from a port of the ephemeral range.
    pub in_use: u64,
    /// Of which in TIME_WAIT.
    pub time_wait: u64,
    /// Connected to it from ports outside the range (an explicit bind): they take no ephemeral port.
    pub outside_range: u64,
    /// ip_local_port_range minus ip_local_reserved_ports.
    pub usable: u64,
    pub range: [u16; 2],
    pub reserved: Vec<[u16; 2]>,
    pub tw_reuse: Option<u8>,
}

/// Counts the sockets towards the destination, leaving out the probe's own.
pub fn port_use(p: &PressureFacts, probe_port: Option<u16>) -> Option<PortUse> {
    let socks = p.to_target.as_ref()?;
    let range = p.port_range?;
    let usable = u64::from(p.usable_ports()?);
    let mine = |s: &&SocketFact| Some(s.local_port) != probe_port;
    let (inside, outside): (Vec<&SocketFact>, Vec<&SocketFact>) =
        socks.iter().filter(mine).partition(|s| p.is_ephemeral(s.local_port));
    // One local port may carry several sockets to the same destination only across states that
    // cannot coexist; count ports, not sockets.
    let mut ports: Vec<u16> = inside.iter().map(|s| s.local_port).collect();
    ports.sort_unstable();
    ports.dedup();
    Some(PortUse {
        in_use: ports.len() as u64,
        time_wait: inside.iter().filter(|s| s.state == "TIME_WAIT").count() as u64,
        outside_range: outside.len() as u64,
        usable,
        range,
        reserved: p.reserved_ports.clone(),
        tw_reuse: p.tcp_tw_reuse,
    })
}

fn reserved_text(r: &[[u16; 2]]) -> String {
    if r.is_empty() {
        return "none reserved".into();
    }
    let parts: Vec<String> = r.iter().map(|[a, b]| if a == b { a.to_string() } else { format!("{a}-{b}") }).collect();
    format!("reserved {}", parts.join(","))
}

fn port_evidence(p: &PressureFacts, u: &PortUse, dest: &str) -> Vec<Evidence> {
    let mut ev = vec![Evidence::Pressure {
        resource: "ephemeral-ports".into(),
        namespace: ns_label(p).into(),
        used: u.in_use,
        limit: Some(u.usable),
        detail: format!(
            "{} of {} usable local ports in use towards {dest} ({} in TIME_WAIT; ip_local_port_range {}-{}, {})",
            u.in_use,
            u.usable,
            u.time_wait,
            u.range[0],
            u.range[1],
            reserved_text(&u.reserved)
        ),
    }];
    ev.push(Evidence::Pressure {
        resource: "time-wait".into(),
        namespace: ns_label(p).into(),
        used: u.time_wait,
        limit: Some(u.in_use),
        detail: format!("{} of the {} ports towards {dest} are in TIME_WAIT", u.time_wait, u.in_use),
    });
    ev.push(sysctl(p, "net.ipv4.ip_local_port_range", format!("{} {}", u.range[0], u.range[1])));
    ev.push(sysctl(
        p,
        "net.ipv4.ip_local_reserved_ports",
        u.reserved.iter().map(|[a, b]| if a == b { a.to_string() } else { format!("{a}-{b}") }).collect::<Vec<_>>().join(","),
    ));
    if let Some(r) = u.tw_reuse {
        ev.push(sysctl(p, "net.ipv4.tcp_tw_reuse", r.to_string()));
    }
    ev
}

/// The sysctl fix for a namespaced setting: sysctl.d for the host's own namespace, `docker run
/// --sysctl` and compose `sysctls:` for a container's.
fn sysctl_fixes(in_container: bool, container: &str, settings: &[(&str, String)], why: &str, file: &str) -> Vec<Fix> {
    let mut out = Vec::new();
    if in_container {
        let flags: Vec<String> = settings.iter().map(|(k, v)| format!("--sysctl {k}=\"{v}\"")).collect();
        out.push(Fix::new(
            format!("{why}: these settings belong to the container's own network namespace; recreate {container} with them"),
            [format!("docker run {} ...   # the same options and image as {container}", flags.join(" "))],
        ));
        let mut lines = vec!["    sysctls:".to_string()];
        lines.extend(settings.iter().map(|(k, v)| format!("      {k}: \"{v}\"")));
        out.push(Fix::new("The same in docker-compose.yml, under the service", lines));
    } else {
        let mut lines: Vec<String> = settings.iter().map(|(k, v)| format!("{k} = {v}")).collect();
        lines.insert(0, format!("# /etc/sysctl.d/{file}"));
        lines.push("sudo sysctl --system".into());
        out.push(Fix::new(format!("{why} on the host (persistent), then load it"), lines));
    }
    out
}

/// EADDRNOTAVAIL on connect(): no free local port towards the destination.
pub fn ephemeral_verdict(i: &Input) -> Option<Finding> {
    let probe = i.facts.probe.as_ref()?;
    if probe.outcome != ProbeOutcome::AddressNotAvailable {
        return None;
    }
    let dest = fmt_ep(&i.addr, i.port);
    let sub = subject(i.facts);
    let usage = sub.and_then(|p| port_use(p, probe.source.map(|s| s.port())));
    let where_ = if sub.is_some_and(|p| p.namespace == "subject") { "the container" } else { "this namespace" };
    let summary = match &usage {
        Some(u) if u.in_use >= u.usable => format!(
            "no free local port in {where_} for a new connection to {dest}: {} of {} usable ephemeral ports are in use towards it ({} in TIME_WAIT), and connect() failed with EADDRNOTAVAIL",
            u.in_use, u.usable, u.time_wait
        ),
        // Linux's connect() scans (range size & ~1) ports per attempt, from a perturbed offset, so
        // with an odd-sized ip_local_port_range one port is skipped on each attempt: the last free
        // one may be missed (seen on 6.18 in the lab). A one-port range is tried as it is.
        Some(u) if u.in_use + 1 == u.usable && { let n = (u32::from(u.range[1]) + 1).saturating_sub(u32::from(u.range[0])); n >= 3 && n % 2 == 1 } => format!(
            "connect() to {dest} failed with EADDRNOTAVAIL: {} of {} usable ephemeral ports are in use towards it, and the range {}-{} has an odd number of ports; Linux tries only an even number of them per connect() (one port is skipped on each attempt), so the last free port is not always found",
            u.in_use, u.usable, u.range[0], u.range[1]
        ),
        Some(u) => format!(
            "connect() to {dest} failed with EADDRNOTAVAIL (no free local port): {} of {} usable ephemeral ports are in use towards it; the rest are held by other sockets bound in the range (listeners, explicit binds)",
            u.in_use, u.usable
        ),
        None => format!("connect() to {dest} failed with EADDRNOTAVAIL: the kernel found no free local port (the port usage could not be read)"),
    };
    let mut f = finding(Code::EphemeralPortsExhausted, Severity::Error, Some(Hop::ContainerEth0), summary);
    f.evidence.extend(i.probe.clone());
    match (sub, &usage) {
        (Some(p), Some(u)) => {
            f.evidence.extend(port_evidence(p, u, &dest));
            f.fix = port_fixes(i, p, u);
        }
        (Some(p), None) => f.evidence.push(Evidence::Missing {
            what: "ephemeral-ports".into(),
            why: if p.missing.is_empty() { "no socket list towards the target".into() } else { p.missing.join("; ") },
        }),
        (None, _) => f.evidence.push(Evidence::Missing {
            what: "ephemeral-ports".into(),
            why: "the subject's namespace could not be read (needs root)".into(),
        }),
    }
    Some(f)
}

fn port_fixes(i: &Input, p: &PressureFacts, u: &PortUse) -> Vec<Fix> {
    let in_container = p.namespace == "subject";
    let container = i.place.container();
    let width = u32::from(u.range[1]).saturating_sub(u32::from(u.range[0])) + 1;
    let wider = if width < 28232 { "32768 60999" } else { "1024 65535" };
    let mut settings: Vec<(&str, String)> = vec![("net.ipv4.ip_local_port_range", wider.to_string())];
    let tw_heavy = u.time_wait * 2 >= u.in_use && u.time_wait > 0;
    if tw_heavy && u.tw_reuse != Some(1) {
        settings.push(("net.ipv4.tcp_tw_reuse", "1".into()));
    }
    let mut fixes = sysctl_fixes(
        in_container,
        &container,
        &settings,
        &format!("Widen the ephemeral port range to {wider}{}", if settings.len() > 1 { " and let new connections reuse ports in TIME_WAIT" } else { "" }),
        "60-ephemeral-ports.conf",
    );
    if !u.reserved.is_empty() {
        fixes.push(Fix::new(
            format!(
                "Or give back ports reserved in net.ipv4.ip_local_reserved_ports ({}) if those reservations are not needed",
                reserved_text(&u.reserved)
            ),
            Vec::<String>::new(),
        ));
    }
    fixes.push(Fix::new(
        format!(
            "And in the application: reuse connections to {} (a connection pool, HTTP keep-alive) instead of opening one per request; every closed connection holds its port in TIME_WAIT for 60 s",
            fmt_ep(&i.addr, i.port)
        ),
        Vec::<String>::new(),
    ));
    fixes
}

// ------------------------------------------------------------------------------------------
// Accept queue

/// A listener's accept queue: sock_diag reports the queue length (rqueue) and the backlog
/// (wqueue) of a LISTEN socket. The kernel queues up to backlog + 1 connections.
fn queue_full(s: &SocketFact) -> bool {
    s.recv_q > s.send_q
}

fn queue_evidence(s: &SocketFact) -> Evidence {
    Evidence::Pressure {
        resource: "accept-queue".into(),
        namespace: "host".into(),
        used: u64::from(s.recv_q),
        limit: Some(u64::from(s.send_q)),
        detail: format!(
            "accept queue of {} {}: {} waiting to be accepted, backlog {}{}",
            s.local_endpoint(),
            s.process.as_ref().map(|p| format!("({} pid {})", p.name, p.pid)).unwrap_or_default(),
            s.recv_q,
            s.send_q,
            if queue_full(s) { " (full: the kernel drops new SYNs)" } else { "" }
        ),
    }
}

fn overflow_evidence(h: &PressureFacts) -> Vec<Evidence> {
    let mut ev = Vec::new();
    if let Some(d) = h.moved(|c| c.listen_overflows) {
        ev.push(Evidence::Pressure {
            resource: "listen-overflows".into(),
            namespace: "host".into(),
            used: d,
            limit: None,
            detail: format!(
                "TcpExt ListenOverflows moved by {d} during the probe ({} -> {}); ListenDrops by {}",
                h.before.as_ref().and_then(|c| c.listen_overflows).unwrap_or(0),
                h.counters.listen_overflows.unwrap_or(0),
                h.moved(|c| c.listen_drops).unwrap_or(0)
            ),
        });
    }
    if let Some(s) = h.somaxconn {
        ev.push(sysctl(h, "net.core.somaxconn", s.to_string()));
    }
    ev
}

/// The probe got no answer from a host listener whose accept queue is full.
pub fn backlog_verdict(i: &Input, ours: &[&DropEvent]) -> Option<Finding> {
    let probe = i.facts.probe.as_ref()?;
    if i.proto != Proto::Tcp || !matches!(probe.outcome, ProbeOutcome::NoAnswer) {
        return None;
    }
    let ls: Vec<&SocketFact> =
        socket::listeners_on(&i.facts.host_sockets, i.proto, i.port).into_iter().filter(|s| socket::accepts(s, &i.addr)).collect();
    let overflow_drop: Vec<&DropEvent> = ours.iter().copied().filter(|d| d.reason == "TCP_LISTEN_OVERFLOW").collect();
    let h = host(i.facts);
    let moved = h.and_then(|h| h.moved(|c| c.listen_overflows)).unwrap_or(0);
    let full: Vec<&SocketFact> = ls.iter().copied().filter(|s| queue_full(s)).collect();
    let nearly: Vec<&SocketFact> = ls.iter().copied().filter(|s| s.recv_q > 0 && over(u64::from(s.recv_q), u64::from(s.send_q))).collect();
    let explains = !full.is_empty() || !overflow_drop.is_empty() || (moved > 0 && !nearly.is_empty());
    if !explains {
        return None;
    }
    let shown: Vec<&SocketFact> = if !full.is_empty() { full } else if !nearly.is_empty() { nearly } else { ls.clone() };
    let s = shown.first().copied();
    let summary = match s {
        Some(s) => format!(
            "{} on {} does not accept connections fast enough: its accept queue holds {} with a backlog of {}, so the kernel drops new SYNs (the container's probe got no answer{})",
            s.process.as_ref().map(|p| format!("{} (pid {})", p.name, p.pid)).unwrap_or_else(|| "the service".into()),
            s.local_endpoint(),
            s.recv_q,
            s.send_q,
            if moved > 0 { format!("; ListenOverflows moved by {moved} meanwhile") } else { String::new() }
        ),
        None => format!("the kernel dropped the probe's handshake to {} because the listener's accept queue overflowed (TCP_LISTEN_OVERFLOW)", fmt_ep(&i.addr, i.port)),
    };
    let mut f = finding(Code::ListenBacklogOverflow, Severity::Error, Some(Hop::HostSocket), summary);
    f.evidence.extend(i.probe.clone());
    for s in &shown {
        f.evidence.push(Evidence::socket(s));
        f.evidence.push(queue_evidence(s));
    }
    for d in overflow_drop {
        f.evidence.push(Evidence::drop(d));
    }
    if let Some(h) = h {
        f.evidence.extend(overflow_evidence(h));
    }
    f.fix = backlog_fixes(s, h.and_then(|h| h.somaxconn));
    Some(f)
}

/// The application's own backlog setting, by process: exact where known, generic otherwise.
fn app_backlog_fix(s: Option<&SocketFact>, n: u32) -> Fix {
    let p = s.and_then(|s| s.process.as_ref());
    let name = p.map(|p| p.name.to_ascii_lowercase()).unwrap_or_default();
    let cmd = p.and_then(|p| p.cmdline.clone()).unwrap_or_default().to_ascii_lowercase();
    let port = s.map(|s| s.local_port).unwrap_or(0);
    let has = |w: &str| name.starts_with(w) || cmd.contains(w);
    if has("nginx") {
        Fix::new("Raise nginx's backlog on that listen directive, then reload", [format!("listen {port} backlog={n};"), "sudo nginx -s reload".into()])
    } else if has("redis") {
        Fix::new("Raise Redis's backlog (redis.conf), then restart it", [format!("tcp-backlog {n}")])
    } else if has("mysqld") || has("mariadbd") {
        Fix::new("Raise MySQL/MariaDB's back_log ([mysqld] section), then restart it", ["[mysqld]".into(), format!("back_log = {n}")])
    } else if has("postgres") || name == "postmaster" {
        Fix::new(
            "PostgreSQL has no backlog setting of its own: the kernel cap (net.core.somaxconn) and a server that keeps up with accept() are what count",
            Vec::<String>::new(),
        )
    } else if has("gunicorn") {
        Fix::new("Raise gunicorn's backlog", [format!("gunicorn --backlog {n} ...")])
    } else if has("uvicorn") {
        Fix::new("Raise uvicorn's backlog", [format!("uvicorn --backlog {n} ...")])
    } else if has("socat") {
        Fix::new("Give socat's listening address a larger backlog", [format!("socat TCP-LISTEN:{port},backlog={n},fork ...")])
    } else if has("python") {
        Fix::new("Pass a larger backlog to listen() in the service's code", [format!("sock.listen({n})")])
    } else if has("node") {
        Fix::new("Pass a larger backlog to server.listen() in the service's code", [format!("server.listen({{ port: {port}, backlog: {n} }})")])
    } else {
        Fix::new(
            format!("Raise the backlog the service passes to listen() (its configuration's backlog setting) to {n}"),
            Vec::<String>::new(),
        )
    }
}

fn backlog_fixes(s: Option<&SocketFact>, somaxconn: Option<u32>) -> Vec<Fix> {
    let backlog = s.map(|s| s.send_q).unwrap_or(128);
    let n = (backlog.saturating_mul(4)).max(1024).next_power_of_two().min(65535);
    let mut fixes = Vec::new();
    let capped_by_kernel = somaxconn.is_some_and(|m| backlog >= m);
    // The effective backlog is min(the application's, somaxconn): below somaxconn, the
    // application's own setting is the limit.
    fixes.push(app_backlog_fix(s, n));
    if capped_by_kernel || somaxconn.is_some_and(|m| m < n) {
        fixes.push(Fix::new(
            format!(
                "net.core.somaxconn{} caps every backlog in the host's namespace: raise it as well (persistent), then load it and restart the service",
                somaxconn.map(|m| format!(" ({m})")).unwrap_or_default()
            ),
            ["# /etc/sysctl.d/60-somaxconn.conf".to_string(), format!("net.core.somaxconn = {n}"), "sudo sysctl --system".into()],
        ));
    }
    fixes.push(Fix::new(
        "A queue that stays full means the service does not call accept() fast enough (busy or stuck workers): a larger backlog only absorbs bursts",
        Vec::<String>::new(),
    ));
    fixes
}

// ------------------------------------------------------------------------------------------
// Conntrack

fn ct_full(p: &PressureFacts) -> bool {
    let max = p.conntrack_max.unwrap_or(0);
    if max == 0 {
        return false;
    }
    let count = p.counters.conntrack_count.unwrap_or(0).max(p.before.as_ref().and_then(|b| b.conntrack_count).unwrap_or(0));
    count >= max
}

fn ct_evidence(p: &PressureFacts) -> Vec<Evidence> {
    let count = p.counters.conntrack_count.unwrap_or(0);
    let max = p.conntrack_max.unwrap_or(0);
    let mut ev = vec![Evidence::Pressure {
        resource: "conntrack".into(),
        namespace: ns_label(p).into(),
        used: count,
        limit: Some(max),
        detail: format!("nf_conntrack_count {count} of nf_conntrack_max {max} ({}%)", pct(count, max)),
    }];
    let moved = |f: fn(&hostreach_model::PressureCounters) -> Option<u64>| p.moved(f);
    if let (Some(d), Some(e), Some(i)) = (moved(|c| c.conntrack_drop), moved(|c| c.conntrack_early_drop), moved(|c| c.conntrack_insert_failed)) {
        ev.push(Evidence::Pressure {
            resource: "conntrack-drops".into(),
            namespace: ns_label(p).into(),
            used: d,
            limit: None,
            detail: format!(
                "during the probe: drop +{d}, early_drop +{e}, insert_failed +{i} (/proc/net/stat/nf_conntrack; totals {} / {} / {})",
                p.counters.conntrack_drop.unwrap_or(0),
                p.counters.conntrack_early_drop.unwrap_or(0),
                p.counters.conntrack_insert_failed.unwrap_or(0)
            ),
        });
    }
    ev.push(sysctl(p, "net.netfilter.nf_conntrack_max", max.to_string()));
    ev
}

fn ct_fixes(p: &PressureFacts) -> Vec<Fix> {
    let max = p.conntrack_max.unwrap_or(65536);
    let n = max.saturating_mul(2).max(65536);
    let mut fixes = vec![Fix::new(
        format!(
            "Raise nf_conntrack_max (persistent), then load it. It is one limit for the whole machine and can only be set from its initial network namespace{}: `docker run --sysctl` and compose `sysctls:` cannot set it",
            if p.conntrack_max_writable == Some(false) { " (read-only where hostreach ran)" } else { "" }
        ),
        ["# /etc/sysctl.d/60-conntrack.conf".to_string(), format!("net.netfilter.nf_conntrack_max = {n}"), "sudo sysctl --system".into()],
    )];
    fixes.push(Fix::new(
        "Find what fills the table (many short flows, long UDP timeouts) and watch the drop counters",
        ["sudo conntrack -C".to_string(), "sudo conntrack -S".into()],
    ));
    fixes
}

/// A NETFILTER_DROP that no rule decided, while a conntrack table is at its limit (or its drop
/// counter moved): conntrack refused the new flow. Never a FIREWALL_DROP.
pub fn conntrack_verdict(i: &Input, ours: &[&DropEvent]) -> Option<Finding> {
    let probe = i.facts.probe.as_ref()?;
    if probe.outcome == ProbeOutcome::Connected {
        return None;
    }
    let nf: Vec<&DropEvent> = ours.iter().copied().filter(|d| d.reason == "NETFILTER_DROP").collect();
    let rule_drop = nf.iter().any(|d| is_rule_location(&d.location));
    let ct_drop: Vec<&DropEvent> = nf.iter().copied().filter(|d| !is_rule_location(&d.location)).collect();
    if rule_drop {
        return None;
    }
    let full_ns: Vec<&PressureFacts> = i
        .facts
        .pressure
        .iter()
        .filter(|p| ct_full(p) || p.moved(|c| c.conntrack_drop).is_some_and(|d| d > 0))
        .collect();
    let p = *full_ns.first()?;
    // Either the kernel reported the drop outside a rule, or (no attributed drop) the table is
    // full and its drop counter moved while the probe went unanswered.
    let counter_moved = p.moved(|c| c.conntrack_drop).is_some_and(|d| d > 0);
    if ct_drop.is_empty() && !(ours.is_empty() && probe.outcome == ProbeOutcome::NoAnswer && counter_moved && ct_full(p)) {
        return None;
    }
    let count = p.counters.conntrack_count.unwrap_or(0);
    let max = p.conntrack_max.unwrap_or(0);
    let hop = if p.namespace == "subject" { Hop::ContainerEth0 } else { Hop::HostInput };
    let summary = format!(
        "the {} conntrack table is full ({count} of {max} entries): the kernel drops new flows, so the probe to {} was dropped by conntrack, not by a firewall rule",
        ns_label(p),
        fmt_ep(&i.addr, i.port)
    );
    let mut f = finding(Code::ConntrackFull, Severity::Error, Some(hop), summary);
    f.evidence.extend(i.probe.clone());
    for d in &ct_drop {
        f.evidence.push(Evidence::drop(d));
    }
    f.evidence.extend(ct_evidence(p));
    f.fix = ct_fixes(p);
    Some(f)
}

// ------------------------------------------------------------------------------------------
// Warnings

/// Every resource above 80% of its limit, as warnings (leaving out the verdict's own code).
pub fn warnings(i: &Input, verdict: Code) -> Vec<Finding> {
    let mut out = Vec::new();
    let dest = fmt_ep(&i.addr, i.port);
    if verdict != Code::EphemeralPortsExhausted
        && let Some(p) = subject(i.facts)
        && let Some(u) = port_use(p, i.facts.probe.as_ref().and_then(|pr| pr.source).map(|s| s.port()))
        && over(u.in_use, u.usable)
    {
        let mut f = finding(
            Code::EphemeralPortsExhausted,
            Severity::Warning,
            Some(Hop::ContainerEth0),
            format!(
                "{} of {} usable ephemeral ports ({}%) of the {} are in use towards {dest}: new connections will soon fail with EADDRNOTAVAIL",
                u.in_use,
                u.usable,
                pct(u.in_use, u.usable),
                ns_label(p)
            ),
        );
        f.evidence.extend(port_evidence(p, &u, &dest));
        f.fix = port_fixes(i, p, &u);
        out.push(f);
    }
    if verdict != Code::ListenBacklogOverflow && i.proto == Proto::Tcp {
        let ls: Vec<&SocketFact> = socket::listeners_on(&i.facts.host_sockets, i.proto, i.port)
            .into_iter()
            .filter(|s| socket::accepts(s, &i.addr) && s.recv_q > 0 && over(u64::from(s.recv_q), u64::from(s.send_q)))
            .collect();
        if let Some(s) = ls.first() {
            let mut f = finding(
                Code::ListenBacklogOverflow,
                Severity::Warning,
                Some(Hop::HostSocket),
                format!(
                    "the accept queue of {} holds {} of its backlog {}: under a little more load the kernel will drop new connections",
                    s.local_endpoint(),
                    s.recv_q,
                    s.send_q
                ),
            );
            f.evidence.push(Evidence::socket(s));
            f.evidence.push(queue_evidence(s));
            if let Some(h) = host(i.facts) {
                f.evidence.extend(overflow_evidence(h));
            }
            f.fix = backlog_fixes(Some(s), host(i.facts).and_then(|h| h.somaxconn));
            out.push(f);
        }
    }
    if verdict != Code::ConntrackFull {
        for p in &i.facts.pressure {
            let (Some(count), Some(max)) = (p.counters.conntrack_count, p.conntrack_max) else { continue };
            if !over(count, max) {
                continue;
            }
            let mut f = finding(
                Code::ConntrackFull,
                Severity::Warning,
                Some(if p.namespace == "subject" { Hop::ContainerEth0 } else { Hop::HostInput }),
                format!("the {} conntrack table holds {count} of {max} entries ({}%): when it is full, new flows are dropped", ns_label(p), pct(count, max)),
            );
            f.evidence.extend(ct_evidence(p));
            f.fix = ct_fixes(p);
            out.push(f);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::diagnose;
    use hostreach_model::*;
    use std::net::IpAddr;

    const GW: &str = "172.17.0.1";

    fn base(outcome: ProbeOutcome) -> Facts {
        let gw: IpAddr = GW.parse().unwrap();
        Facts {
            subject: Subject::Pid { pid: 1000, name: Some("app".into()) },
            host_net: Some(NetnsFacts {
                inode: Some(1),
                addresses: vec![AddrFact { index: 3, address: gw, prefix_len: 16 }],
                ..Default::default()
            }),
            subject_net: Some(NetnsFacts { inode: Some(2), ..Default::default() }),
            target: Some(Target::parse("172.17.0.1:5432", Proto::Tcp).unwrap()),
            resolution: Some(Resolution {
                name: None,
                address: Some(gw),
                addresses: vec![gw],
                source: ResolutionSource::Literal,
                dns_queries: vec![],
            }),
            probe: Some(ProbeResult {
                proto: Proto::Tcp,
                destination: "172.17.0.1:5432".parse().unwrap(),
                source: None,
                outcome,
                errno: None,
                error: None,
                elapsed_ms: 3,
                timeout_ms: 2000,
                concluded_by_drop: false,
                tid: Some(99),
            }),
            drops: DropTrace { status: TraceStatus::Recorded, events: vec![] },
            ..Default::default()
        }
    }

    fn conn(local_port: u16, state: &str) -> SocketFact {
        SocketFact {
            proto: Proto::Tcp,
            local_address: "172.17.0.2".parse().unwrap(),
            local_port,
            remote_address: Some(GW.parse().unwrap()),
            remote_port: Some(5432),
            state: state.to_string().into(),
            v6only: None,
            bound_device: None,
            inode: 1,
            uid: 0,
            recv_q: 0,
            send_q: 0,
            process: None,
        }
    }

    fn listener(recv_q: u32, send_q: u32, name: &str) -> SocketFact {
        SocketFact {
            local_address: "0.0.0.0".parse().unwrap(),
            local_port: 5432,
            remote_address: None,
            remote_port: None,
            state: "LISTEN".into(),
            recv_q,
            send_q,
            process: Some(std::sync::Arc::new(ProcessRef { pid: 77, name: name.into(), cmdline: Some(name.into()) })),
            ..conn(5432, "LISTEN")
        }
    }

    fn ns(namespace: &str) -> PressureFacts {
        PressureFacts {
            namespace: namespace.into(),
            port_range: Some([32768, 60999]),
            tcp_tw_reuse: Some(2),
            somaxconn: Some(4096),
            conntrack_max: Some(262144),
            conntrack_max_writable: Some(false),
            before: Some(PressureCounters::default()),
            counters: PressureCounters::default(),
            to_target: if namespace == "subject" { Some(vec![]) } else { None },
            ..Default::default()
        }
    }

    fn drop_at(loc: &str) -> DropEvent {
        crate::tests::drop_ev("NETFILTER_DROP", loc, true)
    }

    fn pressure_ev<'a>(f: &'a Finding, resource: &str) -> (u64, Option<u64>, &'a str) {
        f.evidence
            .iter()
            .find_map(|e| match e {
                Evidence::Pressure { resource: r, used, limit, detail, .. } if r == resource => Some((*used, *limit, detail.as_str())),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no {resource} evidence: {f:#?}"))
    }

    fn commands(f: &Finding) -> Vec<String> {
        f.fix.iter().flat_map(|x| x.commands.clone()).collect()
    }

    #[test]
    fn eaddrnotavail_with_one_port_left_in_an_odd_sized_range_says_why() {
        // 5 ports, 4 in use: connect() tries only 4 per attempt and may skip the free one.
        let mut f = base(ProbeOutcome::AddressNotAvailable);
        let mut sub = ns("subject");
        sub.port_range = Some([40000, 40004]);
        sub.to_target = Some((40000..40004).map(|p| conn(p, "ESTABLISHED")).collect());
        f.pressure = vec![ns("host"), sub.clone()];
        let r = diagnose(&f);
        assert_eq!(r.verdict.code, Code::EphemeralPortsExhausted, "{r:#?}");
        assert!(r.verdict.summary.contains("4 of 5 usable") && r.verdict.summary.contains("odd number of ports"), "{}", r.verdict.summary);
        // The same with an even-sized range: the free port is always found, so something else holds it.
        sub.port_range = Some([40000, 40005]);
        sub.to_target = Some((40000..40005).map(|p| conn(p, "ESTABLISHED")).collect());
        f.pressure = vec![ns("host"), sub];
        let r = diagnose(&f);
        assert!(r.verdict.summary.contains("held by other sockets") && !r.verdict.summary.contains("odd"), "{}", r.verdict.summary);
        // A one-port range is always tried: no skipped port to blame.
        let mut sub = ns("subject");
        sub.port_range = Some([40000, 40000]);
        sub.to_target = Some(vec![]);
        f.pressure = vec![ns("host"), sub];
        let r = diagnose(&f);
        assert!(!r.verdict.summary.contains("odd"), "{}", r.verdict.summary);
    }

    #[test]
    fn eaddrnotavail_with_every_port_in_use_is_exhaustion_with_the_numbers() {
        let mut f = base(ProbeOutcome::AddressNotAvailable);
        let mut sub = ns("subject");
        sub.port_range = Some([40000, 40003]);
        sub.to_target = Some(vec![conn(40000, "ESTABLISHED"), conn(40001, "ESTABLISHED"), conn(40002, "TIME_WAIT"), conn(40003, "ESTABLISHED"), conn(5000, "ESTABLISHED")]);
        f.pressure = vec![ns("host"), sub];
        let r = diagnose(&f);
        assert_eq!(r.verdict.code, Code::EphemeralPortsExhausted, "{r:#?}");
        assert!(r.verdict.summary.contains("4 of 4 usable"), "{}", r.verdict.summary);
        let v = &r.findings[0];
        assert_eq!(pressure_ev(v, "ephemeral-ports").0, 4);
        assert_eq!(pressure_ev(v, "ephemeral-ports").1, Some(4));
        assert_eq!(pressure_ev(v, "time-wait").0, 1);
        let cmds = commands(v);
        assert!(cmds.iter().any(|c| c.contains("--sysctl net.ipv4.ip_local_port_range=\"32768 60999\"")), "{cmds:?}");
        assert!(cmds.iter().any(|c| c.contains("net.ipv4.ip_local_port_range: \"32768 60999\"")), "{cmds:?}");
        assert!(!cmds.iter().any(|c| c.contains("tcp_tw_reuse")), "TIME_WAIT is not the bulk: {cmds:?}");
        // No duplicate warning for the verdict's own resource.
        assert_eq!(r.findings.iter().filter(|x| x.code == Code::EphemeralPortsExhausted).count(), 1);
    }

    #[test]
    fn time_wait_heavy_exhaustion_suggests_tw_reuse_and_host_namespace_uses_sysctl_d() {
        let mut f = base(ProbeOutcome::AddressNotAvailable);
        let mut host = ns("host");
        host.subject_too = true;
        host.port_range = Some([40000, 40005]);
        host.reserved_ports = vec![[40004, 40005]];
        host.to_target = Some((40000..40004).map(|p| conn(p, "TIME_WAIT")).collect());
        f.pressure = vec![host];
        let r = diagnose(&f);
        assert_eq!(r.verdict.code, Code::EphemeralPortsExhausted);
        assert!(r.verdict.summary.contains("4 of 4 usable") && r.verdict.summary.contains("4 in TIME_WAIT"), "{}", r.verdict.summary);
        let cmds = commands(&r.findings[0]);
        assert!(cmds.contains(&"net.ipv4.tcp_tw_reuse = 1".to_string()), "{cmds:?}");
        assert!(cmds.contains(&"sudo sysctl --system".to_string()), "{cmds:?}");
        assert!(!cmds.iter().any(|c| c.starts_with("docker run")), "no docker fix for the host's own namespace: {cmds:?}");
    }

    #[test]
    fn full_accept_queue_with_overflows_moving_is_the_backlog_verdict() {
        let mut f = base(ProbeOutcome::NoAnswer);
        f.host_sockets = vec![listener(2, 1, "python3")];
        let mut host = ns("host");
        host.before = Some(PressureCounters { listen_overflows: Some(10), listen_drops: Some(10), ..Default::default() });
        host.counters = PressureCounters { listen_overflows: Some(13), listen_drops: Some(13), ..Default::default() };
        f.pressure = vec![host, ns("subject")];
        let r = diagnose(&f);
        assert_eq!(r.verdict.code, Code::ListenBacklogOverflow, "{r:#?}");
        assert_eq!(r.verdict.hop, Some(Hop::HostSocket));
        let v = &r.findings[0];
        assert_eq!(pressure_ev(v, "accept-queue").0, 2);
        assert_eq!(pressure_ev(v, "accept-queue").1, Some(1));
        assert_eq!(pressure_ev(v, "listen-overflows").0, 3);
        let cmds = commands(v);
        assert!(cmds.contains(&"sock.listen(1024)".to_string()), "{cmds:?}");
        assert!(!cmds.iter().any(|c| c.contains("somaxconn")), "somaxconn 4096 is not the limit: {cmds:?}");
        // nginx gets its own directive, and a somaxconn below the suggestion is raised too.
        f.host_sockets = vec![listener(129, 128, "nginx")];
        f.pressure[0].somaxconn = Some(128);
        let r = diagnose(&f);
        let cmds = commands(&r.findings[0]);
        assert!(cmds.contains(&"listen 5432 backlog=1024;".to_string()), "{cmds:?}");
        assert!(cmds.contains(&"net.core.somaxconn = 1024".to_string()), "{cmds:?}");
    }

    #[test]
    fn a_timeout_without_a_full_queue_stays_unknown() {
        let mut f = base(ProbeOutcome::NoAnswer);
        f.host_sockets = vec![listener(0, 128, "python3")];
        f.pressure = vec![ns("host"), ns("subject")];
        assert_eq!(diagnose(&f).verdict.code, Code::Unknown);
    }

    #[test]
    fn conntrack_drop_outside_a_rule_with_a_full_table_is_not_a_firewall() {
        let mut f = base(ProbeOutcome::NoAnswer);
        f.probe.as_mut().unwrap().concluded_by_drop = true;
        f.host_sockets = vec![listener(0, 128, "python3")];
        f.drops.events = vec![drop_at("nf_hook_slow+0xa1/0xf0")];
        let mut host = ns("host");
        host.conntrack_max = Some(500);
        host.before = Some(PressureCounters { conntrack_count: Some(500), conntrack_drop: Some(7), ..Default::default() });
        host.counters = PressureCounters { conntrack_count: Some(500), conntrack_drop: Some(9), conntrack_early_drop: Some(0), conntrack_insert_failed: Some(0), ..Default::default() };
        f.pressure = vec![host.clone(), ns("subject")];
        let r = diagnose(&f);
        assert_eq!(r.verdict.code, Code::ConntrackFull, "{r:#?}");
        assert_eq!(r.verdict.hop, Some(Hop::HostInput));
        assert_eq!(pressure_ev(&r.findings[0], "conntrack"), (500, Some(500), "nf_conntrack_count 500 of nf_conntrack_max 500 (100%)"));
        let cmds = commands(&r.findings[0]);
        assert!(cmds.contains(&"net.netfilter.nf_conntrack_max = 65536".to_string()), "{cmds:?}");
        assert!(r.findings[0].fix[0].summary.contains("cannot set it"), "{:?}", r.findings[0].fix);

        // A rule's drop stays a firewall drop, full table or not.
        f.drops.events = vec![drop_at("nft_do_chain+0x3c2/0x6a0")];
        assert_eq!(diagnose(&f).verdict.code, Code::FirewallDrop);

        // The same non-rule drop with a table far from its limit and no counter moving: not conntrack.
        f.drops.events = vec![drop_at("nf_hook_slow+0xa1/0xf0")];
        let mut calm = host.clone();
        calm.before = Some(PressureCounters { conntrack_count: Some(10), conntrack_drop: Some(0), ..Default::default() });
        calm.counters = PressureCounters { conntrack_count: Some(10), conntrack_drop: Some(0), ..Default::default() };
        f.pressure = vec![calm, ns("subject")];
        assert_eq!(diagnose(&f).verdict.code, Code::FirewallDrop);

        // No drop attributed (tracing unavailable), but the full table's drop counter moved.
        f.drops = DropTrace { status: TraceStatus::Unavailable("no tracefs".into()), events: vec![] };
        f.pressure = vec![host, ns("subject")];
        assert_eq!(diagnose(&f).verdict.code, Code::ConntrackFull);
    }

    #[test]
    fn above_eighty_percent_warns_even_when_the_probe_connects() {
        let mut f = base(ProbeOutcome::Connected);
        f.host_sockets = vec![listener(120, 128, "redis-server")];
        let mut host = ns("host");
        host.conntrack_max = Some(1000);
        host.counters.conntrack_count = Some(850);
        let mut sub = ns("subject");
        sub.port_range = Some([40000, 40009]);
        sub.to_target = Some((40000..40009).map(|p| conn(p, "ESTABLISHED")).collect());
        f.pressure = vec![host, sub];
        let r = diagnose(&f);
        assert_eq!(r.verdict.code, Code::Ok);
        let warn: Vec<(Code, Severity)> = r.findings[1..].iter().map(|x| (x.code, x.severity)).collect();
        for c in [Code::EphemeralPortsExhausted, Code::ListenBacklogOverflow, Code::ConntrackFull] {
            assert!(warn.contains(&(c, Severity::Warning)), "{c} missing: {warn:?}");
        }
        let ports = r.findings.iter().find(|x| x.code == Code::EphemeralPortsExhausted).unwrap();
        assert!(ports.summary.starts_with("9 of 10 usable ephemeral ports (90%)"), "{}", ports.summary);
        let redis = r.findings.iter().find(|x| x.code == Code::ListenBacklogOverflow).unwrap();
        assert!(commands(redis).contains(&"tcp-backlog 1024".to_string()));

        // Half-way: nothing to say.
        f.host_sockets = vec![listener(64, 128, "redis-server")];
        f.pressure[0].counters.conntrack_count = Some(500);
        f.pressure[1].to_target = Some((40000..40005).map(|p| conn(p, "ESTABLISHED")).collect());
        let r = diagnose(&f);
        assert_eq!(r.findings.len(), 1, "{:#?}", r.findings);
    }

    #[test]
    fn the_probes_own_socket_is_not_counted() {
        let mut p = super::PortUse { in_use: 0, time_wait: 0, outside_range: 0, usable: 0, range: [0, 0], reserved: vec![], tw_reuse: None };
        let mut sub = ns("subject");
        sub.port_range = Some([40000, 40003]);
        sub.to_target = Some(vec![conn(40000, "ESTABLISHED"), conn(40001, "SYN_SENT")]);
        if let Some(u) = super::port_use(&sub, Some(40001)) {
            p = u;
        }
        assert_eq!((p.in_use, p.usable), (1, 4));
    }
}

// ------------------------------------------------------------------------------------------
// `hostreach sockets`: the pressure summary of one namespace

/// The ephemeral ports of a namespace, from its socket table.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PortsSummary {
    pub range: [u16; 2],
    pub reserved: Vec<[u16; 2]>,
    /// The range minus the reserved ports.
    pub usable: u32,
    /// Distinct local ports of the range held by connected sockets (any destination).
    pub in_use: u32,
    /// Sockets in TIME_WAIT.
    pub time_wait: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_tw_reuse: Option<u8>,
    /// The destination with the most ports in use towards it: the limit applies per destination.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub busiest: Option<Busiest>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Busiest {
    pub destination: String,
    pub in_use: u32,
    pub percent: u64,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct QueueSummary {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub somaxconn: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen_overflows: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen_drops: Option<u64>,
    /// Listeners with connections waiting to be accepted.
    pub listeners_queued: u32,
    /// The fullest accept queue.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fullest: Option<Queue>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Queue {
    pub local: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process: Option<String>,
    pub queued: u32,
    pub backlog: u32,
    pub percent: u64,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ConntrackSummary {
    pub count: u64,
    pub max: u64,
    pub percent: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drop: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub early_drop: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insert_failed: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Summary {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ephemeral_ports: Option<PortsSummary>,
    pub accept_queues: QueueSummary,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conntrack: Option<ConntrackSummary>,
    /// One line per resource above 80% of its limit.
    pub warnings: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
}

/// The pressure of one namespace as `hostreach sockets` shows it, from its facts and its sockets.
pub fn summary(p: &PressureFacts, sockets: &[SocketFact]) -> Summary {
    let mut warnings = Vec::new();
    let ephemeral_ports = p.port_range.map(|range| {
        let usable = p.usable_ports().unwrap_or(0);
        let mut ports: Vec<u16> = Vec::new();
        let mut per_dest: std::collections::HashMap<(IpAddr, u16), u32> = std::collections::HashMap::new();
        let mut time_wait = 0u32;
        for s in sockets {
            if s.state == "TIME_WAIT" {
                time_wait += 1;
            }
            let (Some(ra), Some(rp)) = (s.remote_address, s.remote_port) else { continue };
            if s.state == "LISTEN" || rp == 0 || !p.is_ephemeral(s.local_port) {
                continue;
            }
            ports.push(s.local_port);
            *per_dest.entry((ra, rp)).or_default() += 1;
        }
        ports.sort_unstable();
        ports.dedup();
        let busiest = per_dest.into_iter().max_by_key(|(k, v)| (*v, std::cmp::Reverse(*k))).map(|((a, port), n)| Busiest {
            destination: fmt_ep(&a, port),
            in_use: n,
            percent: pct(u64::from(n), u64::from(usable)),
        });
        if let Some(b) = &busiest
            && over(u64::from(b.in_use), u64::from(usable))
        {
            warnings.push(format!(
                "EPHEMERAL_PORTS_EXHAUSTED: {} of {usable} usable ephemeral ports ({}%) in use towards {}",
                b.in_use, b.percent, b.destination
            ));
        }
        PortsSummary { range, reserved: p.reserved_ports.clone(), usable, in_use: ports.len() as u32, time_wait, tcp_tw_reuse: p.tcp_tw_reuse, busiest }
    });
    let listeners: Vec<&SocketFact> = sockets.iter().filter(|s| s.proto == Proto::Tcp && s.state == "LISTEN").collect();
    let fullest = listeners
        .iter()
        .filter(|s| s.recv_q > 0)
        .max_by_key(|s| (u64::from(s.recv_q) * 1000).checked_div(u64::from(s.send_q)).unwrap_or(u64::MAX))
        .map(|s| Queue {
            local: s.local_endpoint(),
            process: s.process.as_ref().map(|p| format!("{}/{}", p.name, p.pid)),
            queued: s.recv_q,
            backlog: s.send_q,
            percent: pct(u64::from(s.recv_q), u64::from(s.send_q)),
        });
    if let Some(q) = &fullest
        && over(u64::from(q.queued), u64::from(q.backlog))
    {
        warnings.push(format!("LISTEN_BACKLOG_OVERFLOW: the accept queue of {} holds {} of its backlog {}", q.local, q.queued, q.backlog));
    }
    let accept_queues = QueueSummary {
        somaxconn: p.somaxconn,
        listen_overflows: p.counters.listen_overflows,
        listen_drops: p.counters.listen_drops,
        listeners_queued: listeners.iter().filter(|s| s.recv_q > 0).count() as u32,
        fullest,
    };
    let conntrack = match (p.counters.conntrack_count, p.conntrack_max) {
        (Some(count), Some(max)) => {
            if over(count, max) {
                warnings.push(format!("CONNTRACK_FULL: the conntrack table holds {count} of {max} entries ({}%)", pct(count, max)));
            }
            Some(ConntrackSummary {
                count,
                max,
                percent: pct(count, max),
                drop: p.counters.conntrack_drop,
                early_drop: p.counters.conntrack_early_drop,
                insert_failed: p.counters.conntrack_insert_failed,
            })
        }
        _ => None,
    };
    Summary { ephemeral_ports, accept_queues, conntrack, warnings, missing: p.missing.clone() }
}

#[cfg(test)]
mod summary_tests {
    use super::*;

    fn s(local: u16, remote: Option<(&str, u16)>, state: &str, rq: u32, sq: u32) -> SocketFact {
        SocketFact {
            proto: Proto::Tcp,
            local_address: "10.0.0.1".parse().unwrap(),
            local_port: local,
            remote_address: remote.map(|r| r.0.parse().unwrap()),
            remote_port: remote.map(|r| r.1),
            state: state.to_string().into(),
            v6only: None,
            bound_device: None,
            inode: 0,
            uid: 0,
            recv_q: rq,
            send_q: sq,
            process: None,
        }
    }

    #[test]
    fn numbers_of_a_namespace() {
        let p = PressureFacts {
            namespace: "host".into(),
            port_range: Some([40000, 40009]),
            somaxconn: Some(4096),
            conntrack_max: Some(100),
            counters: hostreach_model::PressureCounters { conntrack_count: Some(90), listen_overflows: Some(3), ..Default::default() },
            ..Default::default()
        };
        let mut socks: Vec<SocketFact> = (40000..40009).map(|port| s(port, Some(("10.0.0.2", 80)), "ESTABLISHED", 0, 0)).collect();
        socks.push(s(40000, Some(("10.0.0.3", 80)), "TIME_WAIT", 0, 0));
        socks.push(s(80, None, "LISTEN", 5, 8));
        socks.push(s(81, None, "LISTEN", 0, 8));
        let sum = summary(&p, &socks);
        let e = sum.ephemeral_ports.as_ref().unwrap();
        assert_eq!((e.usable, e.in_use, e.time_wait), (10, 9, 1));
        assert_eq!(e.busiest, Some(Busiest { destination: "10.0.0.2:80".into(), in_use: 9, percent: 90 }));
        let q = sum.accept_queues.fullest.as_ref().unwrap();
        assert_eq!((q.queued, q.backlog, q.percent), (5, 8, 62));
        assert_eq!(sum.accept_queues.listeners_queued, 1);
        assert_eq!(sum.conntrack.as_ref().unwrap().percent, 90);
        assert_eq!(sum.warnings.len(), 2, "{:?}", sum.warnings);
    }
}
