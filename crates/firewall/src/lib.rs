//! hostreach's firewall engine. No I/O: text and JSON in, an [`Explanation`] out.
//!
//! - [`iptables`]: `iptables-save` output (legacy and nft-backed) parsed by hand.
//! - [`nft`]: `nft -j list ruleset` (with the `nftables` crate's schema where it fits).
//! - [`ir`]: the one model both are lowered to.
//! - [`eval`]: one packet walked through the hooks of its path, every base chain of every backend
//!   in priority order; matches that cannot be evaluated are explored both ways.
//! - [`manager`]: UFW, firewalld, Docker (20.10, 28, 29 nftables) or plain, and fixes in their
//!   language, each verified by walking the packet again with the fix applied.
//! - [`ufw`]: UFW's own files (/etc/default/ufw, /etc/ufw/*.rules): where a rule or policy comes
//!   from, and whether the live rules still match the files.
//! - [`docker`]: Docker's firewall backend, as the daemon reports it or as the rules show it.
//!
//! ```
//! use hostreach_firewall::*;
//! let save = iptables::parse("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -i docker0 -p tcp -m tcp --dport 5432 -j DROP\nCOMMIT\n").unwrap();
//! let rules = Rulesets { iptables: vec![save], nft: None };
//! let pkt = Packet::new("docker0", "172.17.0.2".parse().unwrap(), "172.17.0.1".parse().unwrap(), Proto::Tcp, Some(5432), PathKind::Input);
//! let e = explain(&rules, &pkt);
//! assert_eq!(e.decision, Decision::Drop);
//! assert_eq!(e.rule, "-A INPUT -i docker0 -p tcp -m tcp --dport 5432 -j DROP");
//! ```

pub mod docker;
pub mod error;
pub mod eval;
pub mod ir;
mod json;
pub mod iptables;
pub mod manager;
pub mod nft;
pub mod packet;
mod par;
pub mod text;
pub mod ufw;

pub use error::ParseError;
pub use eval::{Decision, Event, PointOutcome, Step};
pub use ir::{Backend, Hook};
pub use iptables::IptablesSave;
pub use manager::{Detected, Fix, Manager};
pub use nft::NftRuleset;
pub use packet::{CtState, Packet, PathKind, Proto};

use serde::Serialize;

pub const SCHEMA: &str = "hostreach/v1";

/// The rules to evaluate: any number of iptables-save outputs (IPv4 and IPv6, legacy and nft) and
/// at most one nft ruleset.
#[derive(Debug, Clone, Default)]
pub struct Rulesets {
    pub iptables: Vec<IptablesSave>,
    pub nft: Option<NftRuleset>,
}

/// What was evaluated, per table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceTable {
    pub backend: Backend,
    pub family: String,
    pub table: String,
    pub chains: usize,
    pub rules: usize,
}

/// A bad input file or capture, named.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{source_name}: {error}")]
pub struct InputError {
    /// The file or tool the input came from.
    pub source_name: String,
    pub error: ParseError,
}

impl Rulesets {
    /// Parses iptables-save outputs and an nft JSON ruleset, each named by where it came from
    /// (a file, `iptables-nft-save`). The backend of an iptables-save output comes from its header;
    /// a source named `...-legacy-save` / `...-nft-save` says it when the header does not.
    pub fn from_texts<'a>(iptables: impl IntoIterator<Item = (&'a str, &'a str)>, nft: Option<(&str, &str)>) -> Result<Rulesets, InputError> {
        let mut rs = Rulesets::default();
        for (name, text) in iptables {
            let mut save = iptables::parse(text).map_err(|error| InputError { source_name: name.to_string(), error })?;
            if save.backend == Backend::Iptables {
                if name.contains("-legacy-save") {
                    save.backend = Backend::IptablesLegacy;
                } else if name.contains("-nft-save") {
                    save.backend = Backend::IptablesNft;
                }
            }
            if name.starts_with("ip6tables") {
                save.v6 = true;
            }
            rs.iptables.push(save);
        }
        if let Some((name, json)) = nft {
            rs.nft = Some(nft::parse(json).map_err(|error| InputError { source_name: name.to_string(), error })?);
        }
        Ok(rs)
    }

    /// Lowers everything into one model. iptables-nft tables appear both in iptables-save and in
    /// `nft list ruleset`: they are taken from iptables-save (which shows every match) and skipped
    /// in the nft ruleset. Returns the tables and notes about what was relabelled or skipped.
    pub fn model(&self) -> (Vec<ir::Table>, Vec<(Option<ir::Family>, String)>) {
        let mut notes = Vec::new();
        let mut tables = Vec::new();
        let mut covered: Vec<(ir::Family, String)> = Vec::new();
        for save in &self.iptables {
            let mut save_tables = iptables::to_tables(save);
            let fam = if save.v6 { ir::Family::Ip6 } else { ir::Family::Ip };
            let mut backend = save.backend;
            if backend == Backend::Iptables
                && let Some(nft) = &self.nft {
                    let in_nft = save.tables.iter().filter(|t| nft.tables.iter().any(|n| n.family == fam && n.name == t.name)).count();
                    if !save.tables.is_empty() && in_nft == save.tables.len() {
                        backend = Backend::IptablesNft;
                        notes.push((Some(fam), "the iptables-save input does not say its backend; its tables are in the nft ruleset too: iptables-nft".into()));
                    } else if in_nft == 0 && !save.tables.is_empty() {
                        backend = Backend::IptablesLegacy;
                        notes.push((Some(fam), "the iptables-save input does not say its backend; its tables are not in the nft ruleset: iptables-legacy".into()));
                    }
                }
            for t in &mut save_tables {
                t.backend = backend;
            }
            if backend == Backend::IptablesNft {
                covered.extend(save.tables.iter().map(|t| (fam, t.name.clone())));
            }
            tables.extend(save_tables);
        }
        if let Some(nft) = &self.nft {
            for (raw, mut t) in nft.tables.iter().zip(nft::to_tables(nft)) {
                if covered.iter().any(|(f, n)| *f == raw.family && *n == raw.name) {
                    continue;
                }
                let ipt_like = matches!(raw.family, ir::Family::Ip | ir::Family::Ip6)
                    && iptables::TABLES.contains(&raw.name.as_str())
                    && (raw.has_xt || raw.chains.iter().any(|c| c.base.is_some() && iptables::chain_hook(&c.name).is_some()));
                if ipt_like {
                    t.backend = Backend::IptablesNft;
                    notes.push((Some(raw.family), format!(
                        "table {} {} was written by iptables-nft, and no iptables-save output for it was given: it is evaluated from nft JSON, where its xt matches cannot be read",
                        raw.family.as_str(),
                        raw.name
                    )));
                }
                tables.push(t);
            }
        }
        (tables, notes)
    }
}

/// What is known about the host besides its rules.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// UFW's files: this host's (/etc/default/ufw, /etc/ufw) or a saved copy.
    pub ufw: Option<ufw::UfwConfig>,
    /// What the Docker daemon answered, when one was asked.
    pub docker: Option<docker::DaemonAnswer>,
    /// The rules are this host's live ones, read now: UFW's files can be compared with them.
    pub live: bool,
}

/// The answer for one packet.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    pub schema: &'static str,
    pub packet: Packet,
    /// The path taken: input (local delivery) or forward.
    pub path: PathKind,
    pub decision: Decision,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reject_with: Option<String>,
    /// The backend of the deciding rule; `null` when no base chain sees the packet.
    pub backend: Option<Backend>,
    pub family: Option<String>,
    pub table: Option<String>,
    /// The chain holding the deciding rule.
    pub chain: Option<String>,
    /// The base chain the walk was in (the hook's chain) when the rule decided.
    pub base_chain: Option<String>,
    pub hook: Option<Hook>,
    /// The deciding rule as the user writes it; the policy when no rule decides.
    pub rule: String,
    /// The policy decided (no rule matched).
    pub policy: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handle: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counters: Option<(u64, u64)>,
    /// Who owns the deciding rule.
    pub manager: Manager,
    /// Managers found anywhere in the rules.
    pub managers: Vec<Detected>,
    /// Every match was evaluated, or the unknown ones cannot change the decision.
    pub certain: bool,
    pub possible_decisions: Vec<Decision>,
    /// Matches that could not be evaluated, each with the decision if it matched.
    pub unevaluated: Vec<PointOutcome>,
    /// DNAT rewrote the destination to this address and port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dnat: Option<String>,
    pub walk: Vec<Step>,
    pub fixes: Vec<Fix>,
    pub notes: Vec<String>,
    pub sources: Vec<SourceTable>,
    /// Docker's firewall backend: as the daemon reports it (GET /info, Docker 28.1+), else inferred
    /// from its chains and tables; `null` when neither says anything.
    pub docker_firewall_backend: Option<docker::FirewallBackend>,
    /// UFW's configuration, when UFW's chains are in the rules (or its files were given) and the files were read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ufw: Option<ufw::UfwFacts>,
    /// Where the deciding rule or policy is configured (a UFW file and line).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule_source: Option<ufw::RuleSource>,
}

/// Explains one packet against the rules.
pub fn explain(rulesets: &Rulesets, packet: &Packet) -> Explanation {
    explain_with(rulesets, packet, &Context::default())
}

/// Explains one packet against the rules, with what else is known about the host: UFW's files
/// (where the deciding rule or policy comes from) and the Docker daemon's answer (its firewall backend).
pub fn explain_with(rulesets: &Rulesets, packet: &Packet, cx: &Context) -> Explanation {
    let (tables, notes) = rulesets.model();
    let v6 = packet.is_v6();
    let mut notes: Vec<String> = notes.into_iter().filter(|(f, _)| f.is_none_or(|f| f.sees(v6))).map(|(_, n)| n).collect();
    explain_tables(&tables, packet, &mut notes, cx)
}

fn explain_tables(tables: &[ir::Table], packet: &Packet, notes: &mut Vec<String>, cx: &Context) -> Explanation {
    let explored = eval::explore(tables, packet);
    let main = &explored.main;
    let detected = manager::detect(tables);
    let (backend, backend_notes) = docker::firewall_backend(&detected, cx.docker.as_ref());
    let hints = manager::Hints { docker_nftables: backend.as_ref().is_some_and(|b| b.is_nftables()), ufw_ipv6: cx.ufw.as_ref().and_then(|u| u.ipv6()) };
    // `main` is `eval::walk(tables, packet, &[])`: the fixes' walks continue from it.
    let (fixes, fix_notes) = manager::fixes_continued(tables, packet, main, &detected, &hints);
    notes.extend(main.notes.iter().cloned());
    notes.extend(fix_notes);
    notes.extend(backend_notes);
    if !explored.complete {
        notes.push(format!("more than {} combinations of unevaluated matches: not all were explored", eval::MAX_WALKS));
    }
    if packet.sport.is_none() && explored.points.iter().any(|p| p.point.what.contains("sport")) {
        notes.push("give --sport to evaluate source-port matches".into());
    }
    let d = main.decider.as_ref();
    let rule = match d {
        Some(d) => d.rule.clone(),
        None => format!("no base chain on the {} hook sees this packet: nothing filters it", if main.path == PathKind::Input { "input" } else { "forward" }),
    };
    let manager = d.map(|d| manager::owner(d, &detected)).unwrap_or(Manager::Plain);
    let (ufw_facts, rule_source) = ufw_answer(cx, tables, d, manager, &detected, packet, notes);
    let mut fixes = fixes;
    // The `ufw` command behind the dropping rule is known: its delete is the other way out.
    if let Some(cmd) = rule_source.as_ref().and_then(|s| s.ufw_command.as_deref()).and_then(|c| c.strip_prefix("ufw "))
        && matches!(main.decision, Decision::Drop | Decision::Reject)
        && let Some(f) = fixes.first_mut()
        && f.commands.first().is_some_and(|c| c.starts_with("sudo ufw insert 1 "))
    {
        for c in f.commands.iter_mut().filter(|c| c.starts_with("# or delete the rule that drops it")) {
            *c = format!("# or delete the rule that drops it: sudo ufw delete {cmd}");
        }
    }
    let sources = tables
        .iter()
        .map(|t| SourceTable { backend: t.backend, family: t.family.as_str().into(), table: t.name.clone(), chains: t.chains.len(), rules: t.rule_count() })
        .collect();
    Explanation {
        schema: SCHEMA,
        packet: packet.clone(),
        path: main.path,
        decision: main.decision.clone(),
        reject_with: main.reject_with.clone(),
        backend: d.map(|d| d.backend),
        family: d.map(|d| d.family.clone()),
        table: d.map(|d| d.table.clone()),
        chain: d.map(|d| d.chain.clone()),
        base_chain: d.map(|d| d.base_chain.clone()),
        hook: d.map(|d| d.hook),
        rule,
        policy: d.is_some_and(|d| d.policy),
        line: d.and_then(|d| d.line),
        handle: d.and_then(|d| d.handle),
        counters: d.and_then(|d| d.counters),
        manager,
        managers: detected,
        certain: explored.possible.len() == 1 && explored.complete,
        possible_decisions: explored.possible.clone(),
        unevaluated: explored.points,
        dnat: main.dnat.map(|(a, p)| match p {
            Some(p) if a.is_ipv6() => format!("[{a}]:{p}"),
            Some(p) => format!("{a}:{p}"),
            None => a.to_string(),
        }),
        walk: main.walk.clone(),
        fixes,
        notes: std::mem::take(notes),
        sources,
        docker_firewall_backend: backend,
        ufw: ufw_facts,
        rule_source,
    }
}

/// UFW's configuration and where the deciding rule or policy comes from, when UFW is involved and
/// its files were read; notes on what the files say about this packet and on live rules that
/// differ from them.
fn ufw_answer(
    cx: &Context,
    tables: &[ir::Table],
    d: Option<&eval::Decider>,
    manager: Manager,
    detected: &[Detected],
    packet: &Packet,
    notes: &mut Vec<String>,
) -> (Option<ufw::UfwFacts>, Option<ufw::RuleSource>) {
    let Some(cfg) = cx.ufw.as_ref() else { return (None, None) };
    let in_rules = detected.iter().any(|m| m.manager == Manager::Ufw);
    if !in_rules {
        // UFW installed but not running: nothing to say, unless it should be running, or the files were given.
        if cx.live && !cfg.is_empty() && cfg.enabled() == Some(true) {
            notes.push(format!("ENABLED=yes in {}, yet no ufw-* chains are in the live rules: UFW is not running (`sudo ufw enable`), or its rules were flushed", ufw::CONF_PATH));
        } else if cfg.saved_copy.is_none() {
            return (None, None);
        }
    }
    let mut facts = cfg.facts();
    if cfg.is_empty() {
        notes.push(format!("UFW manages rules here, but none of its files could be read ({})", cfg.missing.join("; ")));
    }
    if cx.live && in_rules && !cfg.is_empty() {
        let (same, diffs) = ufw::compare(cfg, tables);
        facts.in_sync = Some(same);
        notes.extend(diffs);
        if in_rules && cfg.enabled() == Some(false) {
            notes.push(format!("ENABLED=no in {}, yet UFW's chains are in the live rules: UFW will not load them at the next boot", ufw::CONF_PATH));
        }
    }
    let source = d.filter(|d| manager == Manager::Ufw || d.chain.starts_with("ufw")).and_then(|d| {
        let s = ufw::locate(cfg, tables, d);
        if s.is_none() && !cfg.is_empty() {
            notes.push(if d.policy {
                format!("the {} policy is UFW's, but {} was not read or does not set it", d.chain, ufw::DEFAULTS_PATH)
            } else {
                format!("the deciding rule is in UFW's chain {}, but in none of UFW's files: it was added by hand (iptables), or the files changed since UFW loaded them", d.chain)
            });
        }
        s
    });
    if packet.is_v6() && cfg.ipv6() == Some(false) {
        notes.push(format!("IPV6=no in {}: UFW accepts IPv6 on loopback only, and its rules (ufw allow ...) are IPv4 only", ufw::DEFAULTS_PATH));
    }
    if packet.path == PathKind::Input && manager == Manager::Ufw && d.is_some_and(|d| d.hook == Hook::Input) {
        let val = |k: &str| cfg.default_setting(k).map(|s| format!("{k}=\"{}\"", s.value)).unwrap_or_else(|| k.to_string());
        notes.push(format!(
            "{} and `ufw route` rules (ufw-user-forward) decide forwarded packets only; this one is delivered locally (INPUT), where {} and `ufw allow in` rules (ufw-user-input) decide",
            val("DEFAULT_FORWARD_POLICY"),
            val("DEFAULT_INPUT_POLICY")
        ));
    }
    (Some(facts), source)
}
