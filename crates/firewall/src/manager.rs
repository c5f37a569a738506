//! Who manages the rules (UFW, firewalld, Docker's own chains, nobody) and the fix in their
//! language. Every fix that changes rules is inserted into the model (as inserts the walk sees, the
//! model is not copied) and the packet is walked again: a fix is `verified` only when that walk
//! accepts the packet.

use smallvec::smallvec;
use crate::eval::{self, Decider, Decision};
use crate::ir::{self, Backend, Field, Stmt, Table, Test, Val, Verdict};
use crate::packet::{Packet, PathKind};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Manager {
    Ufw,
    Firewalld,
    Docker,
    /// Rules written by hand or by a tool hostreach does not recognise.
    Plain,
}

impl Manager {
    pub fn as_str(self) -> &'static str {
        match self {
            Manager::Ufw => "ufw",
            Manager::Firewalld => "firewalld",
            Manager::Docker => "docker",
            Manager::Plain => "plain",
        }
    }
}

/// A manager found in the rules, with what gave it away.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Detected {
    pub manager: Manager,
    /// `20.10`, `28`, `29-nftables` for Docker.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub backend: Backend,
    pub evidence: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fix {
    pub summary: String,
    /// Exact commands, one per entry (lines starting with `#` are alternatives or remarks).
    pub commands: Vec<String>,
    /// Applied to a copy of the rules, the packet is then accepted.
    pub verified: bool,
}

impl Fix {
    fn new(summary: impl Into<String>, commands: Vec<String>) -> Fix {
        Fix { summary: summary.into(), commands, verified: false }
    }
}

/// Finds UFW, firewalld and Docker (by version) in the rules.
pub fn detect(tables: &[Table]) -> Vec<Detected> {
    let mut out: Vec<Detected> = Vec::new();
    let mut push = |d: Detected| {
        if !out.iter().any(|o| o.manager == d.manager && o.version == d.version) {
            out.push(d);
        }
    };
    for t in tables {
        let has = |n: &str| t.chain(n).is_some();
        if t.backend.is_iptables() {
            let ufw: Vec<&str> = t.chains.iter().map(|c| c.name.as_str()).filter(|n| n.starts_with("ufw-") || n.starts_with("ufw6-")).collect();
            if !ufw.is_empty() {
                push(Detected {
                    manager: Manager::Ufw,
                    version: None,
                    backend: t.backend,
                    evidence: format!("chains {}", ufw.iter().take(3).copied().collect::<Vec<_>>().join(", ")),
                });
            }
            if has("INPUT_ZONES") || has("INPUT_direct") || t.chains.iter().any(|c| c.name.starts_with("IN_") && c.name.ends_with("_allow")) {
                push(Detected { manager: Manager::Firewalld, version: None, backend: t.backend, evidence: "iptables chains INPUT_ZONES / IN_<zone>".into() });
            }
            if t.name == "filter" || t.name == "raw" {
                if has("DOCKER-FORWARD") || has("DOCKER-BRIDGE") || has("DOCKER-CT") {
                    push(Detected {
                        manager: Manager::Docker,
                        version: Some("28".into()),
                        backend: t.backend,
                        evidence: "chains DOCKER-FORWARD, DOCKER-BRIDGE, DOCKER-CT (Docker 28 and later)".into(),
                    });
                } else if has("DOCKER-ISOLATION-STAGE-1") {
                    push(Detected {
                        manager: Manager::Docker,
                        version: Some("20.10".into()),
                        backend: t.backend,
                        evidence: "chains DOCKER-ISOLATION-STAGE-1/2 (Docker 20.10 to 27)".into(),
                    });
                }
            }
        } else {
            if t.name == "firewalld" {
                push(Detected { manager: Manager::Firewalld, version: None, backend: t.backend, evidence: format!("table {} firewalld", t.family.as_str()) });
            }
            if t.name == "docker-bridges" {
                push(Detected {
                    manager: Manager::Docker,
                    version: Some("29-nftables".into()),
                    backend: t.backend,
                    evidence: format!("table {} docker-bridges (Docker 29 nftables firewall backend; no DOCKER-USER chain)", t.family.as_str()),
                });
            }
        }
    }
    out
}

/// Who owns the deciding rule.
pub fn owner(d: &Decider, detected: &[Detected]) -> Manager {
    let chain = d.chain.as_str();
    if chain.starts_with("ufw-") || chain.starts_with("ufw6-") {
        return Manager::Ufw;
    }
    if d.backend == Backend::Nftables && d.table == "firewalld" {
        return Manager::Firewalld;
    }
    if d.backend == Backend::Nftables && d.table == "docker-bridges" {
        return Manager::Docker;
    }
    if chain.starts_with("DOCKER") {
        return Manager::Docker;
    }
    if d.backend.is_iptables() && (chain.ends_with("_ZONES") || chain.starts_with("IN_") || chain.ends_with("_direct")) {
        return Manager::Firewalld;
    }
    if d.backend.is_iptables() && d.policy && d.table == "filter" {
        // UFW sets the INPUT/FORWARD policy (DEFAULT_INPUT_POLICY): the policy is its "deny incoming".
        if let Some(u) = detected.iter().find(|x| x.manager == Manager::Ufw)
            && u.backend == d.backend {
                return Manager::Ufw;
            }
    }
    if d.backend.is_iptables() && d.raw_docker_drop() {
        return Manager::Docker;
    }
    Manager::Plain
}

impl Decider {
    /// Docker 28's raw PREROUTING drops for unpublished ports carry no Docker chain name.
    fn raw_docker_drop(&self) -> bool {
        self.table == "raw" && self.chain == "PREROUTING" && !self.policy && self.rule.contains("-j DROP") && self.rule.contains(" -d ") && self.rule.contains("! -i ")
    }
}

fn proto_word(p: &Packet) -> &'static str {
    p.proto.as_str()
}

/// A rule accepting the packet's ingress interface, protocol and port.
fn accept_rule(p: &Packet, text: String, nft: bool) -> ir::Rule {
    let v6 = p.is_v6();
    let mut stmts = vec![Stmt::Test(Test::Match { key: smallvec![Field::Iif], neg: false, any: smallvec![smallvec![Val::Iface { name: p.iif.clone(), wildcard: false }]] })];
    stmts.push(Stmt::Test(Test::Match { key: smallvec![Field::L4Proto], neg: false, any: smallvec![smallvec![Val::num(p.proto.number(v6) as u64)]] }));
    if let (true, Some(port)) = (p.proto.has_ports(), p.dport) {
        stmts.push(Stmt::Test(Test::Match { key: smallvec![Field::Dport(Some(p.proto.number(v6)))], neg: false, any: smallvec![smallvec![Val::num(port as u64)]] }));
    }
    stmts.push(Stmt::Verdict(Verdict::Accept));
    let _ = nft;
    ir::Rule { stmts: stmts.into(), text: text.into(), line: None, handle: None, counters: None }
}

fn ipt_match(p: &Packet) -> String {
    // ip6tables' `-p icmp` is protocol 1, which an IPv6 ping is not.
    let proto = if p.is_v6() && p.proto == crate::Proto::Icmp { "ipv6-icmp" } else { proto_word(p) };
    let mut s = format!("-i {} -p {proto}", p.iif);
    if let (true, Some(port)) = (p.proto.has_ports(), p.dport) {
        s.push_str(&format!(" --dport {port}"));
    }
    s
}

fn nft_match(p: &Packet) -> String {
    let mut s = format!("iifname \"{}\"", p.iif);
    match (p.proto.has_ports(), p.dport) {
        (true, Some(port)) => s.push_str(&format!(" {} dport {port}", proto_word(p))),
        _ => s.push_str(&format!(" meta l4proto {}", if p.is_v6() && p.proto == crate::Proto::Icmp { "ipv6-icmp" } else { proto_word(p) })),
    }
    s
}

/// What else is known about the host, beyond its rules, that changes the fix.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hints {
    /// Docker runs its nftables backend (the daemon says so, or its docker-bridges tables do):
    /// there is no DOCKER-USER chain to advise.
    pub docker_nftables: bool,
    /// `IPV6` in /etc/default/ufw, when read.
    pub ufw_ipv6: Option<bool>,
}

/// A proposed change: the fix text, and where its rule goes in the model (table, chain, position).
struct Change {
    fix: Fix,
    insert: Option<(usize, String, usize, ir::Rule)>,
}

fn firewalld_zone(walk: &[eval::Step]) -> Option<String> {
    for s in walk {
        if s.table == "firewalld" || s.chain.starts_with("IN_") {
            let c = s.chain.as_str();
            let rest = c.strip_prefix("filter_IN_").or_else(|| c.strip_prefix("IN_"));
            if let Some(rest) = rest {
                let zone = ["_pre", "_log", "_deny", "_allow", "_post"].iter().fold(rest.to_string(), |z, suf| z.strip_suffix(suf).map(str::to_string).unwrap_or(z));
                if !zone.is_empty() {
                    return Some(zone);
                }
            }
        }
    }
    None
}

fn change_for(tables: &[Table], d: &Decider, owner: Manager, p: &Packet, walk: &[eval::Step], path: PathKind, hints: &Hints) -> Vec<Change> {
    let v6 = p.is_v6();
    let ipt = if v6 { "ip6tables" } else { "iptables" };
    let proto = proto_word(p);
    let port = p.dport.map(|x| x.to_string()).unwrap_or_else(|| "PORT".into());
    let ti = d.table_idx;
    let table = &tables[ti];
    let tflag = if d.table == "filter" { String::new() } else { format!("-t {} ", d.table) };
    let mut out = Vec::new();
    let plain_ipt = |pos: usize| -> Change {
        let text = format!("{tflag}-I {} {pos} {} -j ACCEPT", d.base_chain, ipt_match(p));
        let rule = accept_rule(p, text.clone(), false);
        Change {
            fix: Fix::new(
                format!(
                    "Accept {} port {port} from {} in {} {} ({}), before the rule that {}s it{}",
                    proto,
                    p.iif,
                    d.table,
                    d.base_chain,
                    d.backend,
                    if d.policy { "policy drop" } else { "drop" },
                    if path == PathKind::Input { "; container-to-host traffic is delivered locally, so INPUT decides" } else { "" }
                ),
                {
                    let mut cmds = vec![format!("sudo {ipt} {text}")];
                    if let Some(net) = &p.src_network {
                        cmds.push(format!("# or, for the whole network: sudo {ipt} {tflag}-I {} {pos} -s {net} {} -j ACCEPT", d.base_chain, ipt_match(p).split_once(" -p ").map(|(_, r)| format!("-p {r}")).unwrap_or_default()));
                    }
                    cmds
                },
            ),
            insert: Some((ti, d.base_chain.clone(), pos - 1, rule)),
        }
    };
    match (owner, path) {
        // UFW without IPv6 (IPV6=no): it keeps only loopback in ip6tables, and `ufw allow` writes no IPv6 rule.
        (Manager::Ufw, PathKind::Input) if v6 && !table.chains.iter().any(|c| c.name.starts_with("ufw6-")) => {
            out.push(Change {
                fix: Fix::new(
                    format!(
                        "UFW runs without IPv6 ({}): it accepts IPv6 on loopback only and its `allow` rules are IPv4 only. Turn IPv6 on in /etc/default/ufw, restart UFW (it then builds its ufw6-* chains from /etc/ufw/user6.rules), and allow the port",
                        if hints.ufw_ipv6 == Some(false) { "IPV6=no in /etc/default/ufw, and no ufw6-* chains in the IPv6 rules" } else { "no ufw6-* chains in the IPv6 rules: IPV6=no in /etc/default/ufw" }
                    ),
                    vec![
                        "sudo sed -i 's/^IPV6=.*/IPV6=yes/' /etc/default/ufw".to_string(),
                        "sudo ufw disable && sudo ufw enable".to_string(),
                        format!("sudo ufw allow in on {} to any port {port} proto {proto}", p.iif),
                    ],
                ),
                insert: None,
            });
        }
        // A `ufw deny`/`ufw reject` rule of the user's: `ufw allow` would be appended after it and never reached.
        (Manager::Ufw, PathKind::Input) if !d.policy && (d.chain == "ufw-user-input" || d.chain == "ufw6-user-input") => {
            let chain = d.chain.clone();
            out.push(Change {
                fix: Fix::new(
                    format!(
                        "A `ufw deny` or `ufw reject` rule (in {chain}, from /etc/ufw/user{}.rules) drops it in INPUT. UFW runs its rules in order and `ufw allow` appends after it: insert the allow before it, or delete that rule",
                        if v6 { "6" } else { "" }
                    ),
                    vec![
                        format!("sudo ufw insert 1 allow in on {} to any port {port} proto {proto}", p.iif),
                        "# or delete the rule that drops it: sudo ufw status numbered, then sudo ufw delete <its number>".to_string(),
                    ],
                ),
                insert: Some((ti, chain.clone(), 0, accept_rule(p, format!("-I {chain} 1 {} -j ACCEPT", ipt_match(p)), false))),
            });
        }
        (Manager::Ufw, PathKind::Input) => {
            let mut cmds = vec![format!("sudo ufw allow in on {} to any port {port} proto {proto}", p.iif)];
            if let Some(net) = &p.src_network {
                cmds.push(format!("# or, for the whole network: sudo ufw allow from {net} to any port {port} proto {proto}"));
            }
            let chain = if v6 { "ufw6-user-input" } else { "ufw-user-input" };
            let (cti, cname) = match table.chain(chain) {
                Some(_) => (ti, chain.to_string()),
                None => (ti, d.base_chain.clone()),
            };
            out.push(Change {
                fix: Fix::new(
                    format!(
                        "UFW's deny incoming drops it in INPUT: allow the port in on {} (an INPUT rule{}). `ufw route allow` and DEFAULT_FORWARD_POLICY only change FORWARD, which container-to-host packets never cross{}",
                        p.iif,
                        if v6 { "; for IPv6 UFW puts it in ufw6-user-input, from /etc/ufw/user6.rules" } else { "" },
                        if p.iif.starts_with("br-") { "; a compose network's br-<id> name changes when the network is recreated: pin it with com.docker.network.bridge.name or allow its subnet" } else { "" }
                    ),
                    cmds,
                ),
                insert: Some((cti, cname, 0, accept_rule(p, format!("-A {chain} {} -j ACCEPT", ipt_match(p)), false))),
            });
        }
        (Manager::Ufw, PathKind::Forward) => {
            let out_if = p.oif.clone().unwrap_or_else(|| "OUT-IFACE".into());
            out.push(Change {
                fix: Fix::new(
                    "UFW drops it in FORWARD: a route rule allows forwarded traffic",
                    vec![format!("sudo ufw route allow in on {} out on {out_if} to any port {port} proto {proto}", p.iif)],
                ),
                insert: table.chain("ufw-user-forward").map(|_| (ti, "ufw-user-forward".to_string(), 0, accept_rule(p, format!("-A ufw-user-forward {} -j ACCEPT", ipt_match(p)), false))),
            });
        }
        (Manager::Firewalld, _) => {
            let zone = firewalld_zone(walk);
            let zone_arg = zone.clone().unwrap_or_else(|| format!("$(firewall-cmd --get-zone-of-interface={})", p.iif));
            let mut summary = format!(
                "firewalld drops it in zone {}: open the port in that zone{}",
                zone.as_deref().unwrap_or("of the interface"),
                if zone.as_deref() != Some("docker") {
                    format!(" (Docker normally puts its bridges in zone `docker`, target ACCEPT; {} is not there)", p.iif)
                } else {
                    String::new()
                }
            );
            if path == PathKind::Forward {
                summary.push_str("; for forwarded traffic a policy (firewall-cmd --new-policy) decides");
            }
            let cmds = vec![
                format!("sudo firewall-cmd --zone={zone_arg} --add-port={port}/{proto} --permanent"),
                "sudo firewall-cmd --reload".to_string(),
                format!("# or trust the bridge: sudo firewall-cmd --zone=docker --change-interface={} --permanent", p.iif),
            ];
            let insert = zone.as_ref().and_then(|z| {
                let cname = [format!("filter_IN_{z}_allow"), format!("IN_{z}_allow")].into_iter().find(|c| table.chain(c).is_some())?;
                Some((ti, cname.clone(), 0, accept_rule(p, format!("add rule {} {} {cname} {} accept", table.family.as_str(), table.name, nft_match(p)), true)))
            });
            out.push(Change { fix: Fix::new(summary, cmds), insert });
        }
        (Manager::Docker, _) if d.raw_docker_drop() || (d.table == "raw" && d.chain == "PREROUTING") => {
            out.push(Change {
                fix: Fix::new(
                    "Docker 28+ drops packets for a container's unpublished port in raw PREROUTING, before nat and DOCKER-USER, so no DOCKER-USER rule can reopen it: publish the port (docker run -p / compose `ports:`), or choose the network's gateway mode (com.docker.network.bridge.gateway_mode_ipv4=nat-unprotected or routed)",
                    vec![format!("docker run -p {port}:{port}/{proto} ...")],
                ),
                insert: None,
            });
        }
        (Manager::Docker, _) if d.backend == Backend::Nftables => {
            out.push(Change {
                fix: Fix::new(
                    "Docker 29's nftables backend has no DOCKER-USER chain, and an accept in another table does not override its drop: mark the packet in a base chain of your own that runs first, and start dockerd with --bridge-accept-fwmark",
                    vec![
                        format!("sudo nft add table inet hostreach-allow"),
                        format!("sudo nft 'add chain inet hostreach-allow fwd {{ type filter hook forward priority filter - 1; }}'"),
                        format!("sudo nft add rule inet hostreach-allow fwd {} meta mark set 0x1", nft_match(p)),
                        "dockerd --bridge-accept-fwmark=0x1  (or \"bridge-accept-fwmark\": \"0x1\" in daemon.json)".to_string(),
                    ],
                ),
                insert: None,
            });
        }
        (_, PathKind::Forward) if d.backend.is_iptables() && d.table == "filter" && table.chain("DOCKER-USER").is_some() && !hints.docker_nftables => {
            let out_if = p.oif.as_ref().map(|o| format!(" -o {o}")).unwrap_or_default();
            let text = format!("-I DOCKER-USER -i {}{out_if} -p {proto}{} -j ACCEPT", p.iif, p.dport.map(|x| format!(" --dport {x}")).unwrap_or_default());
            out.push(Change {
                fix: Fix::new("Forwarded traffic: DOCKER-USER is the place for your own rules (Docker jumps to it first from FORWARD and never rewrites it)", vec![format!("sudo {ipt} {text}")]),
                insert: Some((ti, "DOCKER-USER".into(), 0, accept_rule(p, text, false))),
            });
        }
        (_, _) if d.backend.is_iptables() => {
            let pos = if d.chain == d.base_chain && !d.policy { d.rule_idx.map(|i| i + 1).unwrap_or(1) } else { 1 };
            out.push(plain_ipt(pos));
        }
        (_, _) => {
            let fam = table.family.as_str();
            let (cmd, pos) = match (d.chain == d.base_chain && !d.policy, d.handle) {
                (true, Some(h)) => (format!("sudo nft insert rule {fam} {} {} position {h} {} accept", table.name, d.base_chain, nft_match(p)), d.rule_idx.unwrap_or(0)),
                _ => (format!("sudo nft insert rule {fam} {} {} {} accept", table.name, d.base_chain, nft_match(p)), 0),
            };
            let mut cmds = vec![cmd.clone()];
            if let Some(net) = &p.src_network {
                let by_net = nft_match(p).replacen(&format!("iifname \"{}\"", p.iif), &format!("{} saddr {net}", if v6 { "ip6" } else { "ip" }), 1);
                cmds.push(format!("# or, for the whole network: {}", cmd.replacen(&nft_match(p), &by_net, 1)));
            }
            out.push(Change {
                fix: Fix::new(
                    format!(
                        "Accept {proto} port {port} from {} in {fam} {} {} (nftables), before the rule that drops it; an accept ends only its own base chain, so a drop in another base chain on the same hook still wins",
                        p.iif, table.name, d.base_chain
                    ),
                    cmds,
                ),
                insert: Some((ti, d.base_chain.clone(), pos, accept_rule(p, cmd, true))),
            });
        }
    }
    out
}

/// Fixes for a dropped or rejected packet, each verified by walking the packet again with it applied.
pub fn fixes(tables: &[Table], pkt: &Packet, outcome: &eval::Outcome, detected: &[Detected]) -> (Vec<Fix>, Vec<String>) {
    fixes_with(tables, pkt, outcome, detected, &Hints::default())
}

/// [`fixes`], knowing more about the host than its rules (Docker's backend, UFW's IPV6 setting).
pub fn fixes_with(tables: &[Table], pkt: &Packet, outcome: &eval::Outcome, detected: &[Detected], hints: &Hints) -> (Vec<Fix>, Vec<String>) {
    fixes_impl(tables, pkt, outcome, detected, hints, false)
}

/// [`fixes_with`] for an `outcome` that is `eval::walk(tables, pkt, &[])`: each fix is verified by
/// a walk that continues from where it first differs from the walk before it (the rules before the
/// fix's rule are not walked again).
pub(crate) fn fixes_continued(tables: &[Table], pkt: &Packet, outcome: &eval::Outcome, detected: &[Detected], hints: &Hints) -> (Vec<Fix>, Vec<String>) {
    fixes_impl(tables, pkt, outcome, detected, hints, true)
}

fn fixes_impl(tables: &[Table], pkt: &Packet, outcome: &eval::Outcome, detected: &[Detected], hints: &Hints, continued: bool) -> (Vec<Fix>, Vec<String>) {
    let mut fixes = Vec::new();
    let mut notes = Vec::new();
    if !matches!(outcome.decision, Decision::Drop | Decision::Reject) {
        return (fixes, notes);
    }
    let Some(first) = outcome.decider.clone() else { return (fixes, notes) };
    // The fixes so far, as rules inserted into the model (which is not copied).
    let mut patch: Vec<eval::Insert> = Vec::new();
    // The walk of the model with the fixes so far (None: `outcome`).
    let mut last: Option<eval::Outcome> = None;
    let mut d = first;
    for round in 0..4 {
        let prev = last.as_ref().unwrap_or(outcome);
        let own = owner(&d, detected);
        // Inserted rules add no chain: the fix is found in the model as it was.
        let changes = change_for(tables, &d, own, pkt, &prev.walk, prev.path, hints);
        let before = patch.len();
        let mut round_fixes = Vec::new();
        for c in changes {
            if let Some((ti, chain, pos, rule)) = c.insert
                && let Some(ci) = tables[ti].chain_idx(&chain) {
                    let pos = pos.min(eval::chain_len(tables, &patch, ti, ci));
                    patch.push(eval::Insert { ti, ci, pos, rule });
                }
            round_fixes.push(c.fix);
        }
        fixes.extend(round_fixes);
        if patch.len() == before {
            break;
        }
        let from = match &patch[before..] {
            [ins] if continued => eval::divergence(prev, ins),
            _ => eval::Divergence::Unknown,
        };
        let o = match from {
            eval::Divergence::Never => prev.clone(),
            eval::Divergence::At(si) => eval::walk_from(tables, &patch, pkt, &[], eval::Begin::Snap(prev, si)),
            eval::Divergence::Unknown => eval::walk_from(tables, &patch, pkt, &[], eval::Begin::Start),
        };
        match o.decision {
            Decision::Accept | Decision::Queue => {
                let n = fixes.len();
                for f in &mut fixes[..n] {
                    f.verified = true;
                }
                if round > 0 {
                    notes.push(format!("{} rules drop this packet: it needs all {} fixes", round + 1, round + 1));
                }
                break;
            }
            _ => {
                let Some(nd) = o.decider.clone() else { break };
                if round == 3 {
                    notes.push(format!("even with these fixes, {} {} {} still drops it: {}", nd.backend, nd.table, nd.chain, nd.rule));
                }
                d = nd;
                last = Some(o);
            }
        }
    }
    where_fixes_go(&mut fixes, &mut notes, outcome.path, hints);
    (fixes, notes)
}

/// What the fixes' summaries and the notes say about where the rules go: no DOCKER-USER with
/// Docker's nftables backend, none for container-to-host packets, and saving iptables/nft rules.
fn where_fixes_go(fixes: &mut [Fix], notes: &mut Vec<String>, path: PathKind, hints: &Hints) {
    if hints.docker_nftables && !fixes.is_empty() {
        for f in fixes.iter_mut() {
            if !f.summary.contains("DOCKER-USER") {
                f.summary.push_str("; Docker's firewall backend is nftables, which has no DOCKER-USER chain: this rule is the place");
            }
        }
        notes.push(format!(
            "Docker's firewall backend is nftables: there is no DOCKER-USER chain to put a rule in; {}",
            if path == PathKind::Input {
                "container-to-host packets are delivered locally (PREROUTING, INPUT): an accept in an input chain of your own nft table, or the host firewall's (UFW, firewalld), opens the port"
            } else {
                "Docker's own drops in table docker-bridges are not overridden by an accept elsewhere: mark the packet first and use --bridge-accept-fwmark"
            }
        ));
    } else if path == PathKind::Input && !fixes.is_empty() {
        notes.push(
            "Not a DOCKER-USER rule: Docker jumps to DOCKER-USER only from FORWARD, and container-to-host packets are delivered locally (PREROUTING, INPUT)".into(),
        );
    }
    if fixes.iter().any(|f| f.commands.iter().any(|c| c.starts_with("sudo iptables") || c.starts_with("sudo ip6tables") || c.starts_with("sudo nft"))) {
        notes.push("iptables and nft commands change the running rules only: save them where your system restores rules at boot".into());
    }
}

#[cfg(test)]
mod tests {
    //! The walks that continue from a snapshot, and the fixes walked on inserted rules, against
    //! whole walks of a copied model (what they replaced), on generated models.
    use super::*;
    use crate::eval::{Outcome, PointOutcome};
    use crate::ir::{Base, Chain, ChainKind, Family, Hook, NatKind, Policy};
    use crate::packet::{CtState, Proto};
    use proptest::prelude::*;

    const USER: &[&str] = &["u0", "u1", "DOCKER-USER", "ufw-user-input", "IN_public_allow", "ufw-user-forward"];

    fn m(key: Field, neg: bool, v: Val) -> Stmt {
        Stmt::Test(Test::Match { key: smallvec![key], neg, any: smallvec![smallvec![v]] })
    }

    fn test_stmt() -> impl Strategy<Value = Stmt> {
        prop_oneof![
            (any::<bool>(), prop::sample::select(vec!["docker0", "eth0", "docker"])).prop_map(|(n, i)| m(
                Field::Iif,
                n,
                Val::Iface { name: i.into(), wildcard: i == "docker" }
            )),
            any::<bool>().prop_map(|n| m(Field::Saddr, n, crate::ir::parse_net("172.17.0.0/16").unwrap())),
            (any::<bool>(), prop::sample::select(vec![22u64, 5432, 80])).prop_map(|(n, p)| m(Field::Dport(Some(6)), n, Val::num(p))),
            any::<bool>().prop_map(|n| m(Field::Sport(None), n, Val::num(40000))),
            any::<bool>().prop_map(|n| m(Field::Oif, n, Val::Iface { name: "docker0".into(), wildcard: false })),
            any::<bool>().prop_map(|n| m(Field::Mark, n, Val::Masked { value: 1, mask: 1 })),
            any::<bool>().prop_map(|n| m(Field::CtState, n, Val::Flags(ir::ct::NEW))),
            any::<bool>().prop_map(|n| m(Field::Daddr, n, crate::ir::parse_net("10.0.0.1").unwrap())),
            Just(Stmt::Test(Test::Unknown { what: "match-set x src".into(), reason: "ipset contents".into() })),
            Just(Stmt::Test(Test::Assume { what: "limit".into(), note: "a rate".into() })),
            Just(Stmt::SetMark { value: 1, mask: 0xffff_ffff }),
            Just(Stmt::Continue("LOG --log-prefix x".into())),
            Just(Stmt::UnknownAction("TPROXY".into())),
        ]
    }

    fn verdict(ci: usize, n: usize) -> impl Strategy<Value = Option<Stmt>> {
        // jumps only forward (no loops between chains)
        let later: Vec<String> = (ci + 1..n).map(|c| format!("c{c}")).collect();
        let target = if later.is_empty() { Just("nowhere".to_string()).boxed() } else { prop::sample::select(later).boxed() };
        prop::option::of(prop_oneof![
            Just(Stmt::Verdict(Verdict::Accept)),
            Just(Stmt::Verdict(Verdict::Drop)),
            Just(Stmt::Verdict(Verdict::Reject("tcp-reset".into()))),
            Just(Stmt::Verdict(Verdict::Return)),
            Just(Stmt::Verdict(Verdict::Queue)),
            Just(Stmt::Verdict(Verdict::Continue)),
            target.clone().prop_map(|t| Stmt::Verdict(Verdict::Jump(t))),
            target.clone().prop_map(|t| Stmt::Verdict(Verdict::Goto(t))),
            target.prop_map(|t| Stmt::Vmap {
                key: vec![Field::Sport(None)],
                entries: vec![(vec![Val::num(40000)], Verdict::Jump(t)), (vec![Val::num(1)], Verdict::Drop)],
            }),
            Just(Stmt::Vmap { key: vec![Field::Iif], entries: vec![(vec![Val::Iface { name: "docker0".into(), wildcard: false }], Verdict::Drop)] }),
            Just(Stmt::Nat(ir::Nat { kind: NatKind::Dnat, addr: Some("10.0.0.1".parse().unwrap()), port: Some(80) })),
        ])
    }

    /// A chain: its rules, and whether it is a base chain (hook, priority, policy drop, nat).
    type GenChain = (Vec<Vec<Stmt>>, Option<(Hook, i32, bool, bool)>);

    fn chain(ci: usize, n: usize) -> impl Strategy<Value = GenChain> {
        (
            prop::collection::vec((prop::collection::vec(test_stmt(), 0..3), verdict(ci, n)), 0..6),
            prop::option::weighted(if ci == 0 { 0.95 } else { 0.4 }, (
                prop::sample::select(vec![Hook::Prerouting, Hook::Input, Hook::Input, Hook::Forward, Hook::Forward, Hook::Postrouting]),
                prop::sample::select(vec![-100, 0, 10]),
                any::<bool>(),
                any::<bool>(),
            )),
        )
            .prop_map(|(rules, base)| {
                let rules = rules
                    .into_iter()
                    .map(|(mut tests, v)| {
                        tests.extend(v);
                        tests
                    })
                    .collect();
                (rules, base)
            })
    }

    fn table() -> impl Strategy<Value = Table> {
        (2usize..6)
            .prop_flat_map(|n| {
                (
                    prop::sample::select(vec![Backend::IptablesNft, Backend::IptablesLegacy, Backend::Nftables]),
                    prop::sample::select(vec!["filter", "nat", "raw", "firewalld", "t"]),
                    (0..n).map(|ci| chain(ci, n)).collect::<Vec<_>>(),
                    prop::sample::subsequence(USER.to_vec(), 0..3),
                )
            })
            .prop_map(|(backend, name, chains, user)| {
                let mut t = Table::new(backend, if backend == Backend::Nftables { Family::Inet } else { Family::Ip }, name);
                let n = chains.len();
                for (ci, (rules, base)) in chains.into_iter().enumerate() {
                    let rules = rules
                        .into_iter()
                        .enumerate()
                        .map(|(ri, stmts)| ir::Rule {
                            stmts: stmts.into(),
                            text: format!("{name} c{ci} #{ri}").into(),
                            line: Some(ci * 100 + ri),
                            handle: Some((ci * 100 + ri) as u64),
                            counters: None,
                        })
                        .collect();
                    let base = base.map(|(hook, prio, drop, nat)| Base {
                        hook,
                        prio,
                        policy: if drop { Policy::Drop } else { Policy::Accept },
                        kind: if nat { ChainKind::Nat } else { ChainKind::Filter },
                    });
                    let policy_text = format!("-P c{ci}");
                    t.push_chain(Chain { name: format!("c{ci}"), rules, base, policy_text });
                }
                // well-known names for some chains (the fixes put their rules in them), keeping jumps by name
                for (i, u) in user.into_iter().enumerate() {
                    let ci = n - 1 - i;
                    if ci == 0 {
                        break;
                    }
                    let old = std::mem::replace(&mut t.chains[ci].name, u.to_string());
                    t.index.remove(&old);
                    t.index.insert(u.to_string(), ci);
                    for c in &mut t.chains {
                        for r in &mut c.rules {
                            let stmts: Vec<Stmt> = r
                                .stmts
                                .iter()
                                .map(|s| match s {
                                    Stmt::Verdict(Verdict::Jump(x)) if *x == old => Stmt::Verdict(Verdict::Jump(u.to_string())),
                                    Stmt::Verdict(Verdict::Goto(x)) if *x == old => Stmt::Verdict(Verdict::Goto(u.to_string())),
                                    s => s.clone(),
                                })
                                .collect();
                            r.stmts = stmts.into();
                        }
                    }
                }
                t
            })
    }

    fn packet() -> impl Strategy<Value = Packet> {
        (
            prop::sample::select(vec!["docker0", "eth0"]),
            any::<bool>(),
            prop::option::weighted(0.3, Just(40000u16)),
            prop::sample::select(vec![Proto::Tcp, Proto::Udp, Proto::Icmp]),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(iif, fwd, sport, proto, est, oif)| {
                let mut p = Packet::new(
                    iif,
                    "172.17.0.2".parse().unwrap(),
                    "172.17.0.1".parse().unwrap(),
                    proto,
                    proto.has_ports().then_some(5432),
                    if fwd { PathKind::Forward } else { PathKind::Input },
                );
                p.sport = if proto.has_ports() { sport } else { None };
                if est {
                    p.ct_state = CtState::Established;
                }
                if oif {
                    p.oif = Some("docker0".into());
                }
                p
            })
    }

    type Key = (Decision, Option<String>, Option<Decider>, Vec<eval::Step>, Vec<eval::Point>, Vec<String>, PathKind, Option<(std::net::IpAddr, Option<u16>)>);

    fn key(o: &Outcome) -> Key {
        (o.decision.clone(), o.reject_with.clone(), o.decider.clone(), o.walk.clone(), o.points.clone(), o.notes.clone(), o.path, o.dnat)
    }

    fn point_key(p: &PointOutcome) -> (eval::Point, Decision, Option<String>, Decision) {
        (p.point.clone(), p.if_matches.clone(), p.if_matches_rule.clone(), p.if_not.clone())
    }

    /// explore as it was: every walk from the start.
    fn explore_whole(tables: &[Table], pkt: &Packet) -> (Outcome, Vec<PointOutcome>, Vec<Decision>, bool) {
        let main = eval::walk(tables, pkt, &[]);
        let mut possible = vec![main.decision.clone()];
        let mut points = Vec::new();
        for (j, p) in main.points.iter().enumerate() {
            let mut c = vec![false; j];
            c.push(true);
            let o = eval::walk(tables, pkt, &c);
            points.push(PointOutcome { point: p.clone(), if_matches: o.decision.clone(), if_matches_rule: o.decider.as_ref().map(|d| d.rule.clone()), if_not: main.decision.clone() });
        }
        let mut runs = 1;
        let mut complete = true;
        let mut queue: Vec<(Vec<bool>, usize)> = vec![(Vec::new(), main.points.len())];
        while let Some((prefix, k)) = queue.pop() {
            for j in prefix.len()..k {
                if runs >= eval::MAX_WALKS {
                    complete = false;
                    break;
                }
                let mut c = prefix.clone();
                c.resize(j, false);
                c.push(true);
                let o = eval::walk(tables, pkt, &c);
                runs += 1;
                if !possible.contains(&o.decision) {
                    possible.push(o.decision.clone());
                }
                queue.push((c, o.points.len()));
            }
            if !complete {
                break;
            }
        }
        (main, points, possible, complete)
    }

    /// fixes_with as it was: each round's rules inserted into a copy of the model, walked whole.
    fn fixes_copied(tables: &[Table], pkt: &Packet, outcome: &Outcome, detected: &[Detected], hints: &Hints) -> (Vec<Fix>, Vec<String>, Vec<Key>) {
        let mut fixes = Vec::new();
        let mut notes = Vec::new();
        let mut walks = Vec::new();
        if !matches!(outcome.decision, Decision::Drop | Decision::Reject) {
            return (fixes, notes, walks);
        }
        let Some(first) = outcome.decider.clone() else { return (fixes, notes, walks) };
        let mut model: Option<Vec<Table>> = None;
        let mut d = first;
        let mut walk = outcome.walk.clone();
        let mut path = outcome.path;
        for round in 0..4 {
            let cur: &[Table] = model.as_deref().unwrap_or(tables);
            let own = owner(&d, detected);
            let changes = change_for(cur, &d, own, pkt, &walk, path, hints);
            let mut applied = false;
            let mut m = model.take().unwrap_or_else(|| tables.to_vec());
            for c in changes {
                if let Some((ti, chain, pos, rule)) = c.insert
                    && let Some(ci) = m[ti].chain_idx(&chain) {
                        let rules = &mut m[ti].chains[ci].rules;
                        rules.insert(pos.min(rules.len()), rule);
                        applied = true;
                    }
                fixes.push(c.fix);
            }
            if !applied {
                break;
            }
            let o = eval::walk(&m, pkt, &[]);
            walks.push(key(&o));
            model = Some(m);
            match o.decision {
                Decision::Accept | Decision::Queue => {
                    for f in &mut fixes {
                        f.verified = true;
                    }
                    if round > 0 {
                        notes.push(format!("{} rules drop this packet: it needs all {} fixes", round + 1, round + 1));
                    }
                    break;
                }
                _ => {
                    let Some(nd) = o.decider.clone() else { break };
                    if round == 3 {
                        notes.push(format!("even with these fixes, {} {} {} still drops it: {}", nd.backend, nd.table, nd.chain, nd.rule));
                    }
                    d = nd;
                    walk = o.walk;
                    path = o.path;
                }
            }
        }
        where_fixes_go(&mut fixes, &mut notes, outcome.path, hints);
        (fixes, notes, walks)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

        #[test]
        fn continued_walks_are_whole_walks(tables in prop::collection::vec(table(), 1..3), pkt in packet(), nft_docker in any::<bool>()) {
            let e = eval::explore(&tables, &pkt);
            let (main, points, possible, complete) = explore_whole(&tables, &pkt);
            prop_assert_eq!(key(&e.main), key(&main));
            prop_assert_eq!(e.points.iter().map(point_key).collect::<Vec<_>>(), points.iter().map(point_key).collect::<Vec<_>>());
            prop_assert_eq!(&e.possible, &possible);
            prop_assert_eq!(e.complete, complete);

            let detected = detect(&tables);
            let hints = Hints { docker_nftables: nft_docker, ufw_ipv6: None };
            let (want, want_notes, _) = fixes_copied(&tables, &pkt, &main, &detected, &hints);
            prop_assert_eq!(&fixes_continued(&tables, &pkt, &e.main, &detected, &hints), &(want.clone(), want_notes.clone()));
            prop_assert_eq!(&fixes_with(&tables, &pkt, &e.main, &detected, &hints), &(want, want_notes));
        }

        #[test]
        fn a_walk_with_inserted_rules_is_the_walk_of_the_changed_model(
            tables in prop::collection::vec(table(), 1..3),
            pkt in packet(),
            inserts in prop::collection::vec((0usize..3, 0usize..6, 0usize..8, test_stmt(), verdict(0, 0)), 1..4),
        ) {
            // each insert: on the walk of the model with the inserts before it
            let mut patch: Vec<eval::Insert> = Vec::new();
            let mut model = tables.clone();
            let mut prev = eval::walk(&tables, &pkt, &[]);
            for (n, (ti, ci, pos, test, v)) in inserts.into_iter().enumerate() {
                // mostly where the walk goes
                let (ti, ci, pos) = match prev.trace.get(ci * 7 % (prev.trace.len() + 2)) {
                    Some(s) => (s.ti, s.ci, if pos % 2 == 0 { s.ri } else { s.ri + pos / 2 }),
                    None => (ti % tables.len(), ci % tables[ti % tables.len()].chains.len(), pos),
                };
                let pos = pos.min(eval::chain_len(&tables, &patch, ti, ci));
                let mut stmts = vec![test];
                stmts.extend(v);
                let rule = ir::Rule { stmts: stmts.into(), text: format!("inserted {n}").into(), line: None, handle: None, counters: None };
                model[ti].chains[ci].rules.insert(pos, rule.clone());
                patch.push(eval::Insert { ti, ci, pos, rule });
                let whole = eval::walk(&model, &pkt, &[]);
                prop_assert_eq!(key(&eval::walk_from(&tables, &patch, &pkt, &[], eval::Begin::Start)), key(&whole));
                let continued = match eval::divergence(&prev, patch.last().unwrap()) {
                    eval::Divergence::Never => prev.clone(),
                    eval::Divergence::At(si) => eval::walk_from(&tables, &patch, &pkt, &[], eval::Begin::Snap(&prev, si)),
                    eval::Divergence::Unknown => eval::walk_from(&tables, &patch, &pkt, &[], eval::Begin::Start),
                };
                prop_assert_eq!(key(&continued), key(&whole));
                prev = continued;
            }
        }
    }
}
