//! The findings: each reads the merged project (and the host facts, when there are some) and
//! says where the problem is written, what actually happens, and the exact lines that fix it.

use crate::finding::{LintCode, LintEvidence, LintFinding, LintNote};
use crate::host::HostFacts;
use crate::load::Project;
use crate::scan::{self, HOST_ALIAS, HostClass, HostRef, RefKind};
use crate::yaml::{Entry, Node, Pos, Value};
use hostreach_model::{Fix, Severity};
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

const MTU_OPT: &str = "com.docker.network.driver.mtu";
const HOST_GATEWAY_LINE: &str = "\"host.docker.internal:host-gateway\"";

/// How a service is attached to networks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetMode {
    /// On compose (user-defined) networks: its own `networks:`, or the project's `default`.
    Compose(Vec<String>),
    /// `network_mode: bridge` (or `default`): Docker's default bridge, docker0.
    DefaultBridge,
    Host,
    None,
    /// `network_mode: service:NAME`: the network namespace of another service.
    Service(String),
    /// `network_mode: container:NAME`.
    Container(String),
}

/// Where a scanned value sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ctx {
    Environment,
    EnvFile,
    Command,
    Healthcheck,
    Label,
    ExtraHosts,
}

/// One string of a service that lint reads, with where it is written.
#[derive(Debug, Clone)]
struct Val<'a> {
    ctx: Ctx,
    /// The compose key, e.g. `services.web.environment.DATABASE_URL`.
    key: String,
    /// The variable name (environment, env_file) or extra_hosts host name.
    name: Option<String>,
    text: String,
    pos: Pos,
    node: Option<&'a Node>,
}

struct Svc<'a> {
    name: &'a str,
    entry: &'a Entry,
    node: &'a Node,
    mode: NetMode,
}

pub fn lint(p: &Project, facts: &HostFacts, notes: &mut Vec<LintNote>) -> Vec<LintFinding> {
    let services: Vec<Svc> = p
        .services()
        .map(|(name, entry)| Svc {
            name,
            entry,
            node: &entry.value,
            mode: net_mode(&entry.value),
        })
        .collect();
    let mut out = Vec::new();
    for s in &services {
        let vals = values(p, s);
        host_alias(p, s, &services, &vals, &mut out);
        hardcoded_gateway(p, s, &services, &vals, facts, &mut out);
        container_loopback(p, s, &services, &vals, &mut out);
        host_network_mode(p, s, &vals, &mut out);
    }
    mtu_unset(p, &services, facts, notes, &mut out);
    // one finding per place and code
    let mut seen = BTreeSet::new();
    out.retain(|f: &LintFinding| {
        seen.insert((
            f.code,
            f.file.clone(),
            f.line,
            f.service.clone(),
            f.network.clone(),
            f.summary.clone(),
        ))
    });
    let order = |f: &LintFinding| {
        (
            p.sources
                .iter()
                .position(|s| s.path == f.file)
                .unwrap_or(usize::MAX),
            f.line,
            f.code,
        )
    };
    out.sort_by_key(|a| order(a));
    out
}

fn net_mode(s: &Node) -> NetMode {
    if let Some(m) = s.get("network_mode").and_then(Node::as_str) {
        let m = m.trim();
        return match m {
            "host" => NetMode::Host,
            "none" => NetMode::None,
            "bridge" | "default" => NetMode::DefaultBridge,
            _ => {
                if let Some(x) = m.strip_prefix("service:") {
                    NetMode::Service(x.to_string())
                } else if let Some(x) = m.strip_prefix("container:") {
                    NetMode::Container(x.to_string())
                } else {
                    NetMode::Compose(vec![m.to_string()])
                }
            }
        };
    }
    match s.get("networks").and_then(Node::as_map) {
        Some(m) if !m.is_empty() => NetMode::Compose(m.iter().map(|e| e.key.clone()).collect()),
        _ => NetMode::Compose(vec!["default".into()]),
    }
}

fn values<'a>(p: &'a Project, s: &Svc<'a>) -> Vec<Val<'a>> {
    let mut v = Vec::new();
    let base = format!("services.{}", s.name);
    let env_keys: BTreeSet<&str> = s
        .node
        .get("environment")
        .and_then(Node::as_map)
        .unwrap_or(&[])
        .iter()
        .map(|e| e.key.as_str())
        .collect();
    if let Some(env) = s.node.get("environment").and_then(Node::as_map) {
        for e in env {
            if let Some(t) = e.value.scalar_text() {
                v.push(Val {
                    ctx: Ctx::Environment,
                    key: format!("{base}.environment.{}", e.key),
                    name: Some(e.key.clone()),
                    text: t,
                    pos: e.value.pos,
                    node: Some(&e.value),
                });
            }
        }
    }
    for ef in p
        .service_env_files
        .get(s.name)
        .map(Vec::as_slice)
        .unwrap_or(&[])
    {
        for en in &ef.entries {
            if env_keys.contains(en.key.as_str()) {
                continue; // `environment:` wins over env_file
            }
            if let Some(t) = &en.value {
                let pos = Pos::at_line(ef.source, en.line);
                v.push(Val {
                    ctx: Ctx::EnvFile,
                    key: format!("{base}.env_file {}", en.key),
                    name: Some(en.key.clone()),
                    text: t.clone(),
                    pos,
                    node: None,
                });
            }
        }
    }
    for (key, ctx) in [("command", Ctx::Command), ("entrypoint", Ctx::Command)] {
        if let Some(n) = s.node.get(key) {
            push_strings(n, &format!("{base}.{key}"), ctx, &mut v);
        }
    }
    if let Some(t) = s.node.get("healthcheck").and_then(|h| h.get("test")) {
        push_strings(
            t,
            &format!("{base}.healthcheck.test"),
            Ctx::Healthcheck,
            &mut v,
        );
    }
    if let Some(l) = s.node.get("labels").and_then(Node::as_map) {
        for e in l {
            if let Some(t) = e.value.scalar_text() {
                v.push(Val {
                    ctx: Ctx::Label,
                    key: format!("{base}.labels.{}", e.key),
                    name: Some(e.key.clone()),
                    text: t,
                    pos: e.value.pos,
                    node: Some(&e.value),
                });
            }
        }
    }
    if let Some(h) = s.node.get("extra_hosts").and_then(Node::as_map) {
        for e in h {
            if let Some(t) = e.value.scalar_text() {
                v.push(Val {
                    ctx: Ctx::ExtraHosts,
                    key: format!("{base}.extra_hosts.{}", e.key),
                    name: Some(e.key.clone()),
                    text: t,
                    pos: e.value.pos,
                    node: Some(&e.value),
                });
            }
        }
    }
    v
}

fn push_strings<'a>(n: &'a Node, key: &str, ctx: Ctx, out: &mut Vec<Val<'a>>) {
    match &n.value {
        Value::Seq(items) => {
            for (i, it) in items.iter().enumerate() {
                if let Some(t) = it.scalar_text() {
                    out.push(Val {
                        ctx,
                        key: format!("{key}[{i}]"),
                        name: None,
                        text: t,
                        pos: it.pos,
                        node: Some(it),
                    });
                }
            }
        }
        _ => {
            if let Some(t) = n.scalar_text() {
                out.push(Val {
                    ctx,
                    key: key.to_string(),
                    name: None,
                    text: t,
                    pos: n.pos,
                    node: Some(n),
                });
            }
        }
    }
}

// ------------------------------------------------------------------------------------------
// Helpers for evidence and fixes

fn line_of(p: &Project, v: &Val, needle: &str) -> usize {
    p.source(v.pos)
        .map(|s| s.line_of(v.pos, needle))
        .unwrap_or(v.pos.line)
}

fn compose_evidence(p: &Project, v: &Val, line: usize) -> LintEvidence {
    let text = p
        .source(v.pos)
        .and_then(|s| s.line_text(line))
        .map(|l| l.trim().to_string())
        .unwrap_or_else(|| v.text.clone());
    LintEvidence::Compose {
        file: p.path(v.pos).to_string(),
        line,
        key: v.key.clone(),
        text,
    }
}

/// Variables that interpolation put into the value, as evidence.
fn variable_evidence(v: &Val, needle: &str) -> Vec<LintEvidence> {
    let Some(i) = v.node.and_then(|n| n.interp.as_ref()) else {
        return Vec::new();
    };
    i.vars
        .iter()
        .filter(|u| {
            u.value.as_deref().is_some_and(|x| {
                x.to_ascii_lowercase()
                    .contains(&needle.to_ascii_lowercase())
            }) || u.default_used
        })
        .map(|u| LintEvidence::Variable {
            name: u.name.clone(),
            value: u.value.clone(),
            source: if u.default_used {
                format!("the default in {}", i.raw)
            } else {
                u.source.to_string()
            },
        })
        .collect()
}

/// Spaces before the keys of a service (from the source), and before its list items.
fn child_indent(p: &Project, s: &Svc) -> String {
    // a key written under the service itself (not one merged in from an anchor elsewhere)
    let own = |kp: &Pos| {
        kp.file == s.entry.key_pos.file
            && kp.line > s.entry.key_pos.line
            && kp.col > s.entry.key_pos.col
    };
    let col = s
        .node
        .as_map()
        .and_then(|m| m.iter().map(|e| e.key_pos).find(own))
        .map(|kp| kp.col)
        .unwrap_or(s.entry.key_pos.col + 2);
    let _ = p;
    " ".repeat(col.saturating_sub(1))
}

/// The lines that map host.docker.internal for service `s` (whose extra_hosts they go in).
fn extra_hosts_fix(p: &Project, s: &Svc) -> Vec<String> {
    let ind = child_indent(p, s);
    match s.node.entry("extra_hosts") {
        Some(e) if matches!(e.value.value, Value::Map(_)) && is_block_list(p, e) => {
            vec![format!("{ind}  - {HOST_GATEWAY_LINE}")]
        }
        Some(e)
            if p.source(e.key_pos)
                .and_then(|src| src.line_text(e.key_pos.line))
                .is_some_and(|l| l.trim_end().ends_with(':')) =>
        {
            // a block mapping
            vec![format!("{ind}  host.docker.internal: host-gateway")]
        }
        Some(_) => vec![
            format!("{ind}extra_hosts:"),
            format!("{ind}  - {HOST_GATEWAY_LINE}"),
        ],
        None => vec![
            format!("{ind}extra_hosts:"),
            format!("{ind}  - {HOST_GATEWAY_LINE}"),
        ],
    }
}

fn is_block_list(p: &Project, e: &Entry) -> bool {
    let Some(first) = e.value.as_map().and_then(|m| m.first()) else {
        return false;
    };
    p.source(first.key_pos)
        .and_then(|s| s.line_text(first.key_pos.line))
        .is_some_and(|l| l.trim_start().starts_with("- "))
}

fn where_extra_hosts(p: &Project, s: &Svc) -> String {
    match s.node.entry("extra_hosts") {
        Some(e) => format!(
            "under `extra_hosts:` of service {} ({} line {})",
            s.name,
            p.path(e.key_pos),
            e.key_pos.line
        ),
        None => format!(
            "under service {} ({} line {})",
            s.name,
            p.path(s.entry.key_pos),
            s.entry.key_pos.line
        ),
    }
}

fn maps_host_alias(s: &Node) -> bool {
    s.get("extra_hosts")
        .and_then(Node::as_map)
        .is_some_and(|m| m.iter().any(|e| e.key.eq_ignore_ascii_case(HOST_ALIAS)))
}

/// The written line with `from` (at byte `at` of the line, or its first occurrence) replaced.
fn replaced_line(p: &Project, v: &Val, line: usize, from: &str, to: &str) -> Option<String> {
    let text = p.source(v.pos)?.line_text(line)?;
    let lower = text.to_ascii_lowercase();
    let i = lower.find(&from.to_ascii_lowercase())?;
    Some(format!("{}{}{}", &text[..i], to, &text[i + from.len()..]))
}

/// The fix that rewrites the value: the compose line itself, or the env-file line of the
/// variable the value came from.
fn rewrite_fix(p: &Project, v: &Val, line: usize, from: &str, to: &str, why: &str) -> Option<Fix> {
    if let Some(new) = replaced_line(p, v, line, from, to) {
        return Some(Fix::new(
            format!("{why}: in {} line {}, write", p.path(v.pos), line),
            [new],
        ));
    }
    // the literal came from a variable: fix it where it is set
    let i = v.node.and_then(|n| n.interp.as_ref())?;
    let u = i.vars.iter().find(|u| {
        u.value
            .as_deref()
            .is_some_and(|x| x.to_ascii_lowercase().contains(&from.to_ascii_lowercase()))
    })?;
    let value = u.value.as_ref()?;
    let lower = value.to_ascii_lowercase();
    let at = lower.find(&from.to_ascii_lowercase())?;
    let new_value = format!("{}{}{}", &value[..at], to, &value[at + from.len()..]);
    Some(Fix::new(
        format!("{why}: the value comes from {} ({}); set", u.name, u.source),
        [format!("{}={}", u.name, new_value)],
    ))
}

fn netns_group<'a>(s: &Svc, all: &'a [Svc<'a>]) -> Vec<&'a Svc<'a>> {
    // the service whose namespace `s` lives in, and every service living in the same one
    let owner = match &s.mode {
        NetMode::Service(x) => x.as_str(),
        _ => s.name,
    };
    all.iter()
        .filter(|o| o.name != s.name)
        .filter(|o| o.name == owner || matches!(&o.mode, NetMode::Service(x) if x == owner))
        .collect()
}

/// Container ports a service is known to serve: `ports` targets, `expose`, and the usual port
/// of well-known images.
fn served_ports(s: &Node) -> BTreeSet<u16> {
    let mut out = BTreeSet::new();
    for key in ["ports", "expose"] {
        for it in s.get(key).and_then(Node::as_seq).unwrap_or(&[]) {
            match &it.value {
                Value::Map(_) => {
                    if let Some(t) = it
                        .get("target")
                        .and_then(Node::scalar_text)
                        .and_then(|t| t.parse().ok())
                    {
                        out.insert(t);
                    }
                }
                _ => {
                    if let Some(t) = it.scalar_text() {
                        // [ip:][published:]target[/proto], ranges ignored
                        let no_proto = t.split('/').next().unwrap_or("");
                        if let Some(target) =
                            no_proto.rsplit(':').next().and_then(|x| x.parse().ok())
                        {
                            out.insert(target);
                        }
                    }
                }
            }
        }
    }
    if let Some(img) = s.get("image").and_then(Node::as_str) {
        let name = img
            .rsplit('/')
            .next()
            .unwrap_or(img)
            .split([':', '@'])
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        let known: &[(&str, u16)] = &[
            ("postgres", 5432),
            ("postgis", 5432),
            ("timescaledb", 5432),
            ("mysql", 3306),
            ("mariadb", 3306),
            ("percona", 3306),
            ("redis", 6379),
            ("valkey", 6379),
            ("keydb", 6379),
            ("mongo", 27017),
            ("rabbitmq", 5672),
            ("memcached", 11211),
            ("nats", 4222),
            ("elasticsearch", 9200),
            ("opensearch", 9200),
            ("minio", 9000),
        ];
        for (k, port) in known {
            if name.starts_with(k) {
                out.insert(*port);
            }
        }
    }
    out
}

fn networks_of(s: &Svc) -> Vec<String> {
    match &s.mode {
        NetMode::Compose(n) => n.clone(),
        _ => Vec::new(),
    }
}

// ------------------------------------------------------------------------------------------
// HOST_ALIAS_NOT_MAPPED

fn host_alias(p: &Project, s: &Svc, all: &[Svc], vals: &[Val], out: &mut Vec<LintFinding>) {
    let uses: Vec<(&Val, HostRef)> = vals
        .iter()
        .filter(|v| v.ctx != Ctx::ExtraHosts)
        .flat_map(|v| {
            scan::scan(&v.text)
                .into_iter()
                .filter(|r| r.class == HostClass::HostAlias)
                .map(move |r| (v, r))
        })
        .collect();
    let Some((first, _)) = uses.first() else {
        return;
    };
    // whose /etc/hosts the service uses
    let (holder, holder_name): (Option<&Svc>, String) = match &s.mode {
        NetMode::Service(x) => (all.iter().find(|o| o.name == x), x.clone()),
        NetMode::Container(x) => (None, format!("container {x}")),
        _ => (Some(s), s.name.to_string()),
    };
    if holder.is_some_and(|h| maps_host_alias(h.node)) {
        return;
    }
    if matches!(s.mode, NetMode::Container(_)) {
        // its /etc/hosts is the other container's: lint cannot see it
        return;
    }
    let line = line_of(p, first, HOST_ALIAS);
    let mut evidence: Vec<LintEvidence> = uses
        .iter()
        .map(|(v, _)| compose_evidence(p, v, line_of(p, v, HOST_ALIAS)))
        .collect();
    for (v, _) in &uses {
        evidence.extend(variable_evidence(v, HOST_ALIAS));
    }
    evidence.push(LintEvidence::Network {
        detail: match &holder {
            Some(h) if h.name != s.name => format!("{} shares the network namespace and /etc/hosts of service {}, which has no extra_hosts entry for {HOST_ALIAS}", s.name, h.name),
            _ => format!("service {} has no extra_hosts entry for {HOST_ALIAS}", s.name),
        },
    });
    let mut fix = Vec::new();
    if let Some(h) = holder {
        fix.push(Fix::new(
            format!(
                "map the name to the host's gateway: add {}",
                where_extra_hosts(p, h)
            ),
            extra_hosts_fix(p, h),
        ));
    }
    let via = if holder_name != s.name {
        format!(" (through service {holder_name}, whose network namespace it shares)")
    } else {
        String::new()
    };
    // labels are read by other programs (a proxy, a scraper), which may resolve the name elsewhere
    let severity = if uses.iter().all(|(v, _)| v.ctx == Ctx::Label) {
        Severity::Warning
    } else {
        Severity::Error
    };
    out.push(LintFinding {
        code: LintCode::HostAliasNotMapped,
        severity,
        file: p.path(first.pos).to_string(),
        line,
        service: Some(s.name.to_string()),
        network: None,
        key: first.key.clone(),
        summary: format!(
            "service {} uses {HOST_ALIAS}, which a Linux Docker engine does not define: the name does not resolve in the container{via} unless extra_hosts maps it to host-gateway",
            s.name
        ),
        evidence,
        fix,
    });
}

// ------------------------------------------------------------------------------------------
// HARDCODED_GATEWAY

/// Docker's default bridge and the gateways of its default address pools (172.17-31.0.1).
fn default_pool_gateway(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            o[0] == 172 && (17..=31).contains(&o[1]) && o[2] == 0 && o[3] == 1
        }
        IpAddr::V6(_) => false,
    }
}

/// Gateways fixed by the project's own `ipam` config: (network, gateway).
fn ipam_gateways(p: &Project) -> Vec<(String, IpAddr)> {
    let mut out = Vec::new();
    for e in p.root.get("networks").and_then(Node::as_map).unwrap_or(&[]) {
        for c in e
            .value
            .get("ipam")
            .and_then(|i| i.get("config"))
            .and_then(Node::as_seq)
            .unwrap_or(&[])
        {
            let gw = c
                .get("gateway")
                .and_then(Node::as_str)
                .and_then(|g| g.parse().ok())
                .or_else(|| {
                    let subnet = c.get("subnet").and_then(Node::as_str)?;
                    let (net, _) = subnet.split_once('/')?;
                    let v4: Ipv4Addr = net.parse().ok()?;
                    Some(IpAddr::V4(Ipv4Addr::from(u32::from(v4) + 1)))
                });
            if let Some(g) = gw {
                out.push((e.key.clone(), g));
            }
        }
    }
    out
}

fn hardcoded_gateway(
    p: &Project,
    s: &Svc,
    all: &[Svc],
    vals: &[Val],
    facts: &HostFacts,
    out: &mut Vec<LintFinding>,
) {
    let ipam = ipam_gateways(p);
    for v in vals {
        for r in scan::scan(&v.text) {
            let HostClass::Ip(ip) = r.class else { continue };
            let owner = facts.owner(&ip);
            let owner_is_bridge = owner.is_some_and(|l| l.kind.as_deref() == Some("bridge"));
            let project_net = ipam.iter().find(|(_, g)| *g == ip).map(|(n, _)| n.clone());
            if let Some(n) = &project_net
                && networks_of(s).contains(n)
            {
                continue; // the gateway of its own network, fixed by this project's ipam config
            }
            if !(owner_is_bridge || default_pool_gateway(&ip) || project_net.is_some()) {
                continue;
            }
            let line = line_of(p, v, &r.host);
            let mut evidence = vec![compose_evidence(p, v, line)];
            evidence.extend(variable_evidence(v, &r.host));
            let (severity, what) =
                gateway_meaning(s, &ip, facts, &mut evidence, project_net.as_deref());
            let mut fix = Vec::new();
            let port = r.port_or_default();
            if v.ctx == Ctx::ExtraHosts {
                let name = v.name.clone().unwrap_or_default();
                let ind = child_indent(p, s);
                let new = replaced_line(p, v, line, &r.host, "host-gateway")
                    .unwrap_or_else(|| format!("{ind}  - \"{name}:host-gateway\""));
                fix.push(Fix::new(
                    format!(
                        "let Docker fill in the gateway: in {} line {line}, write",
                        p.path(v.pos)
                    ),
                    [new],
                ));
            } else {
                if let Some(f) = rewrite_fix(
                    p,
                    v,
                    line,
                    &r.host,
                    HOST_ALIAS,
                    "name the host instead of its address",
                ) {
                    fix.push(f);
                }
                let holder = match &s.mode {
                    NetMode::Service(x) => all.iter().find(|o| o.name == x),
                    _ => Some(s),
                };
                if let Some(h) = holder
                    && !maps_host_alias(h.node)
                    && !matches!(s.mode, NetMode::Container(_))
                {
                    fix.push(Fix::new(
                        format!("and map that name: add {}", where_extra_hosts(p, h)),
                        extra_hosts_fix(p, h),
                    ));
                }
            }
            if matches!(s.mode, NetMode::Compose(_)) && owner.is_some_and(|l| l.name == "docker0") {
                let port_s = port.map(|p| p.to_string()).unwrap_or_else(|| "PORT".into());
                fix.push(Fix::new(
                    "host-gateway is docker0's address too, so the packets still arrive on the compose network's bridge (br-<id>), not docker0: a host firewall rule or service scoped to docker0 must also admit that bridge",
                    [
                        format!("ufw allow in on br-$(docker network inspect -f '{{{{.Id}}}}' <project>_{} | cut -c1-12) to any port {port_s} proto tcp", networks_of(s).first().cloned().unwrap_or_else(|| "default".into())),
                    ],
                ));
            }
            out.push(LintFinding {
                code: LintCode::HardcodedGateway,
                severity,
                file: p.path(v.pos).to_string(),
                line,
                service: Some(s.name.to_string()),
                network: None,
                key: v.key.clone(),
                summary: format!("service {} hardcodes {}: {what}", s.name, r.host),
                evidence,
                fix,
            });
        }
    }
}

/// What the literal address actually does for this service on this host.
fn gateway_meaning(
    s: &Svc,
    ip: &IpAddr,
    facts: &HostFacts,
    evidence: &mut Vec<LintEvidence>,
    project_net: Option<&str>,
) -> (Severity, String) {
    let nets = networks_of(s);
    let attach = match &s.mode {
        NetMode::Compose(n) => format!(
            "on compose network{} {}",
            if n.len() > 1 { "s" } else { "" },
            n.join(", ")
        ),
        NetMode::DefaultBridge => "on Docker's default bridge (docker0)".into(),
        NetMode::Host => "in the host's network namespace".into(),
        NetMode::None => "without a network".into(),
        NetMode::Service(x) => format!("in the network namespace of service {x}"),
        NetMode::Container(x) => format!("in the network namespace of container {x}"),
    };
    evidence.push(LintEvidence::Network {
        detail: format!("service {} runs {attach}", s.name),
    });
    if let Some(n) = project_net {
        return (
            Severity::Warning,
            format!(
                "it is the gateway of this project's network {n}, which the service is not on: it reaches the host only because the host owns that address; it is not the way out of the service's own network"
            ),
        );
    }
    if let NetMode::None = s.mode {
        return (
            Severity::Error,
            "the service has no network: no address is reachable".into(),
        );
    }
    let Some(_) = &facts.net else {
        evidence.push(LintEvidence::Missing {
            what: "host addresses".into(),
            why: facts
                .unavailable
                .clone()
                .unwrap_or_else(|| "not read".into()),
        });
        return (
            Severity::Warning,
            format!(
                "a Docker bridge gateway written as a literal. It reaches the host only while some bridge on the host owns {ip} (docker0 by default); on a compose network the packets arrive on br-<id>, so a service or firewall scoped to docker0 refuses them, and on a host whose docker0 is absent or has another address (bip, Docker Desktop, rootless, Podman) nothing answers. Host facts were not read, so which applies here is not known"
            ),
        );
    };
    match facts.owner(ip) {
        Some(link) => {
            evidence.push(LintEvidence::Address {
                address: ip.to_string(),
                interface: link.name.clone(),
                interface_kind: link.kind.clone(),
            });
            match &s.mode {
                NetMode::DefaultBridge if link.name == "docker0" => (
                    Severity::Warning,
                    "it is docker0's address on this host, the service's own gateway: it works here, and breaks on any host where docker0 has another address (bip, default-address-pools, Docker Desktop, rootless, Podman)".to_string(),
                ),
                NetMode::Host => (
                    Severity::Info,
                    format!(
                        "the service shares the host's network namespace, where {ip} is {}'s own address: it works, as 127.0.0.1 would",
                        link.name
                    ),
                ),
                NetMode::Compose(_)
                | NetMode::Service(_)
                | NetMode::Container(_)
                | NetMode::DefaultBridge => (
                    Severity::Warning,
                    format!(
                        "on this host {ip} belongs to {} — not the service's own gateway ({}). The packet is still delivered locally (PREROUTING, INPUT), arriving on the service's bridge rather than {}: it reaches a host service listening on 0.0.0.0 or on {ip}, and fails when the service or a firewall rule is scoped to {} (e.g. `-i {}`, `ufw allow in on {}`), or on a host where {} has another address",
                        link.name,
                        if nets.is_empty() {
                            "another namespace's".to_string()
                        } else {
                            format!("br-<id> of {}", nets.join(", "))
                        },
                        link.name,
                        link.name,
                        link.name,
                        link.name,
                        link.name
                    ),
                ),
                NetMode::None => unreachable!(),
            }
        }
        None => {
            evidence.push(LintEvidence::NotLocal {
                address: ip.to_string(),
            });
            (
                Severity::Error,
                format!(
                    "no interface of this host owns {ip} ({}): the packets leave by the default route, if any, and the connection times out or reaches another machine",
                    if *ip == IpAddr::V4(Ipv4Addr::new(172, 17, 0, 1)) {
                        "docker0 is absent or has another address"
                    } else {
                        "no Docker bridge has it: the network it was the gateway of is gone or got another subnet"
                    }
                ),
            )
        }
    }
}

// ------------------------------------------------------------------------------------------
// CONTAINER_LOOPBACK

/// Variable names that name the service's own address (a bind, a public URL), not a peer.
fn self_or_bind_key(name: &str) -> bool {
    let k = name.to_ascii_uppercase();
    if k.contains("PROXY") && !k.contains("NO_PROXY") {
        return false;
    }
    const WORDS: &[&str] = &[
        "LISTEN",
        "BIND",
        "PUBLIC",
        "EXTERNAL",
        "CALLBACK",
        "REDIRECT",
        "ORIGIN",
        "CORS",
        "ALLOWED",
        "NO_PROXY",
        "TRUSTED",
        "ADVERTISE",
    ];
    const PREFIXES: &[&str] = &[
        "SERVER_",
        "APP_",
        "WEB_",
        "HTTP_",
        "NEXT_PUBLIC_",
        "VITE_",
        "REACT_APP_",
        "PUBLIC_",
    ];
    let own_url = matches!(k.as_str(), "BASE_URL" | "SITE_URL" | "ROOT_URL")
        || k.ends_with("_BASE_URL")
        || k.ends_with("_SITE_URL")
        || k.ends_with("_ROOT_URL");
    own_url
        || WORDS.iter().any(|w| k.contains(w))
        || PREFIXES.iter().any(|p| k.starts_with(p))
        || matches!(
            k.as_str(),
            "HOST" | "HOSTNAME" | "ADDR" | "ADDRESS" | "IP" | "PORT"
        )
}

/// Variable names that name a peer to connect to.
fn peer_key(name: &str) -> bool {
    let k = name.to_ascii_uppercase();
    const SUFFIXES: &[&str] = &[
        "_HOST",
        "_HOSTNAME",
        "_HOSTS",
        "_SERVER",
        "_SERVERS",
        "_ADDR",
        "_ADDRESS",
        "_URL",
        "_URI",
        "_DSN",
        "_ENDPOINT",
        "_BROKERS",
        "_NODES",
        "_CONNECTION",
        "_CONNECTION_STRING",
    ];
    SUFFIXES.iter().any(|s| k.ends_with(s))
        || matches!(
            k.as_str(),
            "DATABASE_URL"
                | "REDIS_URL"
                | "AMQP_URL"
                | "MONGO_URL"
                | "DSN"
                | "PGHOST"
                | "MYSQL_HOST"
        )
}

fn container_loopback(p: &Project, s: &Svc, all: &[Svc], vals: &[Val], out: &mut Vec<LintFinding>) {
    if matches!(s.mode, NetMode::Host | NetMode::None) {
        return;
    }
    let own = served_ports(s.node);
    let group = netns_group(s, all);
    for v in vals {
        if !matches!(v.ctx, Ctx::Environment | Ctx::EnvFile | Ctx::Command) {
            continue;
        }
        if v.name.as_deref().is_some_and(self_or_bind_key) {
            continue;
        }
        for r in scan::scan(&v.text) {
            if r.class != HostClass::Loopback {
                continue;
            }
            let connection = match r.kind {
                RefKind::Url => r
                    .scheme
                    .as_deref()
                    .is_some_and(|sc| !matches!(sc, "file" | "unix")),
                RefKind::HostPort | RefKind::Bare => {
                    matches!(v.ctx, Ctx::Environment | Ctx::EnvFile)
                        && v.name.as_deref().is_some_and(peer_key)
                }
            };
            if !connection {
                continue;
            }
            let port = r.port_or_default().or_else(|| sibling_port(vals, v));
            if port.is_some_and(|pt| own.contains(&pt)) {
                continue; // the service's own port: it talks to itself
            }
            let providers_in_ns: Vec<&&Svc> = group
                .iter()
                .filter(|o| port.is_some_and(|pt| served_ports(o.node).contains(&pt)))
                .collect();
            if !providers_in_ns.is_empty() {
                continue; // a sidecar in the same namespace serves it
            }
            let http = r
                .scheme
                .as_deref()
                .is_some_and(|sc| sc.starts_with("http") || sc.starts_with("ws"));
            let line = line_of(p, v, &r.host);
            let mut evidence = vec![compose_evidence(p, v, line)];
            evidence.extend(variable_evidence(v, &r.host));
            let port_s = port.map(|x| format!(" port {x}")).unwrap_or_default();
            let (severity, mut summary) = if !group.is_empty() {
                let names: Vec<&str> = group.iter().map(|o| o.name).collect();
                evidence.push(LintEvidence::Network {
                    detail: format!(
                        "{} shares its network namespace with {}",
                        s.name,
                        names.join(", ")
                    ),
                });
                (
                    Severity::Info,
                    format!(
                        "service {} connects to {}{port_s}, which is its shared network namespace: it works only if {} listens there — none of them declares that port",
                        s.name,
                        r.host,
                        names.join(" or ")
                    ),
                )
            } else {
                (
                    if http {
                        Severity::Warning
                    } else {
                        Severity::Error
                    },
                    format!(
                        "service {} connects to {}{port_s}, which inside the container is the container itself, not the host or another service: nothing there listens unless the container serves it",
                        s.name, r.host
                    ),
                )
            };
            if http && group.is_empty() {
                summary.push_str(
                    " (if this URL is for a browser rather than for the container, ignore this)",
                );
            }
            evidence.push(LintEvidence::Network {
                detail: match &s.mode {
                    NetMode::Service(x) => format!("network_mode: service:{x}"),
                    NetMode::Container(x) => format!("network_mode: container:{x}"),
                    NetMode::DefaultBridge => {
                        "network_mode: bridge (its own network namespace)".into()
                    }
                    _ => format!("its own network namespace on {}", networks_of(s).join(", ")),
                },
            });
            let mut fix = Vec::new();
            // a project service that serves the port
            let provider = port.and_then(|pt| {
                all.iter()
                    .find(|o| o.name != s.name && served_ports(o.node).contains(&pt))
            });
            match provider {
                Some(o) => {
                    if let Some(f) = rewrite_fix(
                        p,
                        v,
                        line,
                        &r.host,
                        o.name,
                        &format!("point it at service {} by name", o.name),
                    ) {
                        fix.push(f);
                    }
                    let shared = networks_of(s).iter().any(|n| networks_of(o).contains(n));
                    if !shared
                        && matches!(s.mode, NetMode::Compose(_))
                        && matches!(o.mode, NetMode::Compose(_))
                    {
                        let ind = child_indent(p, s);
                        let net = networks_of(o)
                            .first()
                            .cloned()
                            .unwrap_or_else(|| "default".into());
                        let mut lines = Vec::new();
                        match s.node.entry("networks") {
                            Some(e) => {
                                lines.push(format!("{ind}  - {net}"));
                                fix.push(Fix::new(
                                    format!("and put {} on a network of {}: add under `networks:` ({} line {})", s.name, o.name, p.path(e.key_pos), e.key_pos.line),
                                    lines,
                                ));
                            }
                            None => {
                                // the implicit `default` must stay, or the service leaves it
                                lines.extend([
                                    format!("{ind}networks:"),
                                    format!("{ind}  - default"),
                                    format!("{ind}  - {net}"),
                                ]);
                                fix.push(Fix::new(
                                    format!(
                                        "and put {} on a network of {}: add under service {}",
                                        s.name, o.name, s.name
                                    ),
                                    lines,
                                ));
                            }
                        }
                    }
                }
                None => {
                    if let Some(f) = rewrite_fix(
                        p,
                        v,
                        line,
                        &r.host,
                        HOST_ALIAS,
                        "if it runs on the host, name the host",
                    ) {
                        fix.push(f);
                    }
                    let holder = match &s.mode {
                        NetMode::Service(x) => all.iter().find(|o| o.name == x),
                        NetMode::Container(_) => None,
                        _ => Some(s),
                    };
                    if let Some(h) = holder
                        && !maps_host_alias(h.node)
                    {
                        fix.push(Fix::new(
                            format!("and map that name: add {}", where_extra_hosts(p, h)),
                            extra_hosts_fix(p, h),
                        ));
                    }
                    if let Some(pt) = port {
                        fix.push(Fix::new(
                            "the host service must listen on an address the container reaches (0.0.0.0 or the bridge's), not only 127.0.0.1: check it with",
                            [format!("hostreach doctor --container <{}'s container> --to host:{pt}", s.name)],
                        ));
                    }
                }
            }
            out.push(LintFinding {
                code: LintCode::ContainerLoopback,
                severity,
                file: p.path(v.pos).to_string(),
                line,
                service: Some(s.name.to_string()),
                network: None,
                key: v.key.clone(),
                summary,
                evidence,
                fix,
            });
        }
    }
}

/// `DB_HOST=localhost` with `DB_PORT=5432` next to it: the port.
fn sibling_port(vals: &[Val], v: &Val) -> Option<u16> {
    let name = v.name.as_deref()?.to_ascii_uppercase();
    let stem = ["_HOSTNAME", "_HOST", "_SERVER", "_ADDR", "_ADDRESS"]
        .iter()
        .find_map(|s| name.strip_suffix(s))?;
    let want = format!("{stem}_PORT");
    vals.iter()
        .filter(|o| matches!(o.ctx, Ctx::Environment | Ctx::EnvFile))
        .find(|o| {
            o.name
                .as_deref()
                .is_some_and(|n| n.eq_ignore_ascii_case(&want))
        })
        .and_then(|o| o.text.trim().parse().ok())
}

// ------------------------------------------------------------------------------------------
// HOST_NETWORK_MODE

fn host_network_mode(p: &Project, s: &Svc, vals: &[Val], out: &mut Vec<LintFinding>) {
    if s.mode != NetMode::Host {
        return;
    }
    let Some(nm) = s.node.entry("network_mode") else {
        return;
    };
    let line = nm.value.pos.line;
    let mut evidence = vec![LintEvidence::Compose {
        file: p.path(nm.value.pos).to_string(),
        line,
        key: format!("services.{}.network_mode", s.name),
        text: p
            .source(nm.value.pos)
            .and_then(|src| src.line_text(line))
            .map(|l| l.trim().to_string())
            .unwrap_or_else(|| "network_mode: host".into()),
    }];
    let mut costs = vec![
        "no network isolation: it sees every host interface and every service listening on the host's loopback, and can bind any host port".to_string(),
        "other services cannot reach it by service name, and it cannot use the project's embedded DNS (127.0.0.11)".to_string(),
    ];
    let mut severity = Severity::Info;
    if let Some(ports) = s.node.entry("ports") {
        severity = Severity::Warning;
        costs.push("its `ports:` are ignored (nothing is published in host mode)".into());
        evidence.push(LintEvidence::Compose {
            file: p.path(ports.key_pos).to_string(),
            line: ports.key_pos.line,
            key: format!("services.{}.ports", s.name),
            text: "ports:".into(),
        });
    }
    let ind = child_indent(p, s);
    let mut lines = vec![format!("# remove line {line}: network_mode: host")];
    let ports = served_ports(s.node);
    if !ports.is_empty() && s.node.get("ports").is_none() {
        lines.push(format!("{ind}ports:"));
        for pt in &ports {
            lines.push(format!("{ind}  - \"{pt}:{pt}\""));
        }
    }
    let loopback_uses = vals.iter().any(|v| {
        scan::scan(&v.text)
            .iter()
            .any(|r| r.class == HostClass::Loopback)
    });
    if loopback_uses || !maps_host_alias(s.node) {
        lines.push(format!("{ind}extra_hosts:"));
        lines.push(format!("{ind}  - {HOST_GATEWAY_LINE}"));
    }
    let mut fix = vec![Fix::new(
        format!(
            "give it its own network namespace: in {}, under service {}",
            p.path(s.entry.key_pos),
            s.name
        ),
        lines,
    )];
    if loopback_uses {
        fix.push(Fix::new(
            "then replace localhost/127.0.0.1 in its settings by host.docker.internal (host services) or a service name (project services)",
            Vec::<String>::new(),
        ));
    }
    out.push(LintFinding {
        code: LintCode::HostNetworkMode,
        severity,
        file: p.path(nm.value.pos).to_string(),
        line,
        service: Some(s.name.to_string()),
        network: None,
        key: format!("services.{}.network_mode", s.name),
        summary: format!(
            "service {} shares the host's network namespace (network_mode: host): {}",
            s.name,
            costs.join("; ")
        ),
        evidence,
        fix,
    });
}

// ------------------------------------------------------------------------------------------
// MTU_UNSET

fn mtu_unset(
    p: &Project,
    all: &[Svc],
    facts: &HostFacts,
    notes: &mut Vec<LintNote>,
    out: &mut Vec<LintFinding>,
) {
    let Some(eg) = &facts.egress else {
        if all.iter().any(|s| matches!(s.mode, NetMode::Compose(_))) {
            notes.push(LintNote {
                file: None,
                line: None,
                message: format!(
                    "MTU_UNSET not checked: the host's egress MTU is unknown ({}); --egress-mtu N gives it",
                    facts.unavailable.clone().unwrap_or_else(|| if facts.net.is_some() { "no default route".into() } else { "host facts not read".into() })
                ),
            });
        }
        return;
    };
    if eg.mtu >= 1500 {
        return;
    }
    let declared = p.root.get("networks").and_then(Node::as_map).unwrap_or(&[]);
    // networks compose creates for this project, with the services on them
    let mut used: Vec<(String, Vec<&str>)> = Vec::new();
    for s in all {
        for n in networks_of(s) {
            match used.iter_mut().find(|(u, _)| *u == n) {
                Some((_, v)) => v.push(s.name),
                None => used.push((n, vec![s.name])),
            }
        }
    }
    for (net, users) in used {
        let decl = declared.iter().find(|e| e.key == net);
        let node = decl.map(|d| &d.value);
        if node
            .and_then(|n| n.get("external"))
            .is_some_and(|x| !matches!(x.value, Value::Bool(false)))
        {
            continue; // created elsewhere, with its own options
        }
        let driver = node
            .and_then(|n| n.get("driver"))
            .and_then(Node::as_str)
            .unwrap_or("bridge");
        if driver != "bridge" {
            continue;
        }
        if decl.is_none() && net != "default" {
            continue; // undeclared: compose itself refuses it
        }
        let opt = node
            .and_then(|n| n.get("driver_opts"))
            .and_then(|o| o.get(MTU_OPT));
        let set: Option<u32> = opt
            .and_then(Node::scalar_text)
            .and_then(|t| t.trim().parse().ok());
        if set.is_some_and(|m| m <= eg.mtu) {
            continue;
        }
        let (file, line, key_col) = match (decl, opt) {
            // the value that is too high, where it is written
            (Some(d), Some(o)) => (p.path(o.pos).to_string(), o.pos.line, d.key_pos.col),
            _ => match decl {
                Some(d) => (p.path(d.key_pos).to_string(), d.key_pos.line, d.key_pos.col),
                None => {
                    let s = all.iter().find(|s| s.name == users[0]).expect("a user");
                    (p.path(s.entry.key_pos).to_string(), s.entry.key_pos.line, 0)
                }
            },
        };
        let mut evidence = vec![LintEvidence::Egress {
            interface: eg.interface.clone(),
            mtu: eg.mtu,
            route_mtu: eg.route_mtu,
        }];
        evidence.push(LintEvidence::Network {
            detail: format!(
                "network {net} (driver bridge) is used by {}",
                users.join(", ")
            ),
        });
        if let Some(o) = opt {
            evidence.push(LintEvidence::Compose {
                file: p.path(o.pos).to_string(),
                line: o.pos.line,
                key: format!("networks.{net}.driver_opts.{MTU_OPT}"),
                text: p
                    .source(o.pos)
                    .and_then(|s| s.line_text(o.pos.line))
                    .map(|l| l.trim().to_string())
                    .unwrap_or_default(),
            });
        }
        let summary = match set {
            Some(m) => format!(
                "network {net} sets MTU {m}, above the host's egress MTU {} ({}): packets larger than {} that leave the host are dropped or fragmented, and connections with large transfers stall when no ICMP \"fragmentation needed\" comes back",
                eg.mtu, eg.interface, eg.mtu
            ),
            None => format!(
                "network {net} has no {MTU_OPT}, so its containers use 1500 while the host's egress MTU is {} ({}): packets larger than {} that leave the host are dropped or fragmented, and connections with large transfers stall when no ICMP \"fragmentation needed\" comes back. The daemon's `mtu` setting covers only the default bridge, not compose networks",
                eg.mtu, eg.interface, eg.mtu
            ),
        };
        let ind = if key_col > 0 {
            " ".repeat(key_col - 1)
        } else {
            "  ".into()
        };
        let lines: Vec<String> = match (decl, opt) {
            (_, Some(_)) => vec![format!("{ind}    {MTU_OPT}: \"{}\"", eg.mtu)],
            (Some(d), None) if d.value.get("driver_opts").is_some() => {
                vec![format!("{ind}    {MTU_OPT}: \"{}\"", eg.mtu)]
            }
            (Some(_), None) => vec![
                format!("{ind}  driver_opts:"),
                format!("{ind}    {MTU_OPT}: \"{}\"", eg.mtu),
            ],
            (None, None) if p.root.get("networks").is_some() => vec![
                format!("  {net}:"),
                "    driver_opts:".into(),
                format!("      {MTU_OPT}: \"{}\"", eg.mtu),
            ],
            (None, None) => vec![
                "networks:".into(),
                format!("  {net}:"),
                "    driver_opts:".into(),
                format!("      {MTU_OPT}: \"{}\"", eg.mtu),
            ],
        };
        let where_ = match (decl, p.root.entry("networks")) {
            (Some(d), _) => format!(
                "under network {net} ({} line {})",
                p.path(d.key_pos),
                d.key_pos.line
            ),
            (None, Some(top)) => format!(
                "under the top-level `networks:` ({} line {})",
                p.path(top.key_pos),
                top.key_pos.line
            ),
            (None, None) => format!(
                "at the top level of {}",
                p.files().first().cloned().unwrap_or_default()
            ),
        };
        let fix = vec![
            Fix::new(
                format!("set the network's MTU to the egress MTU: add {where_}"),
                lines,
            ),
            Fix::new(
                "then recreate the network (compose does not change an existing network)",
                ["docker compose down && docker compose up -d".to_string()],
            ),
        ];
        out.push(LintFinding {
            code: LintCode::MtuUnset,
            severity: Severity::Warning,
            file,
            line,
            service: None,
            network: Some(net.clone()),
            key: format!("networks.{net}"),
            summary,
            evidence,
            fix,
        });
    }
}
