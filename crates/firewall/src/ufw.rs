//! UFW's own configuration, read as text: `/etc/default/ufw` and `/etc/ufw/ufw.conf` (`KEY=value`
//! lines) and the iptables-restore fragments UFW loads, `/etc/ufw/{before,user,after}.rules` and
//! their IPv6 twins `before6/user6/after6.rules`. No I/O: texts in, facts out.
//!
//! It answers three questions for an explanation:
//! - where a live rule comes from: a file and its line, and for `user.rules` the `ufw` command that
//!   added it (UFW writes a `### tuple ###` comment above each rule it adds);
//! - where a policy comes from: `DEFAULT_INPUT_POLICY` (and FORWARD, OUTPUT) in `/etc/default/ufw`,
//!   which UFW turns into the chain's policy and into `ufw-skip-to-policy-*` / `ufw-reject-*`;
//! - whether the live rules still are what the files say (UFW reloaded since they changed).
//!
//! Rules are compared by their options, not their text: UFW writes `-p tcp --dport 22` where
//! iptables-save prints `-p tcp -m tcp --dport 22`, `--icmp-type echo-request` for `8`,
//! `3/minute` for `3/min`, a bare `-j REJECT` for `--reject-with icmp-port-unreachable`, and puts
//! `-m limit` after `-j LOG`.

use crate::eval::Decider;
use crate::ir::{Family, Policy, Table};
use serde::Serialize;
use std::net::IpAddr;

/// Where UFW reads its defaults.
pub const DEFAULTS_PATH: &str = "/etc/default/ufw";
/// Where UFW reads ENABLED and LOGLEVEL.
pub const CONF_PATH: &str = "/etc/ufw/ufw.conf";
/// The directory of UFW's rules files.
pub const RULES_DIR: &str = "/etc/ufw";
/// The rules files UFW loads, in the order it loads them (IPv4, then IPv6).
pub const RULES_FILES: [&str; 6] = ["before.rules", "user.rules", "after.rules", "before6.rules", "user6.rules", "after6.rules"];

/// One `KEY=value` line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Setting {
    pub key: String,
    /// Without its quotes.
    pub value: String,
    pub line: usize,
    /// The line as written.
    pub text: String,
}

/// Parses shell-style `KEY=value` / `KEY="value"` lines (`/etc/default/ufw`, `ufw.conf`). Comments,
/// blank lines and anything that is not an assignment are skipped; a later assignment of the same
/// key wins, as in the shell that sources these files.
pub fn parse_settings(text: &str) -> Vec<Setting> {
    let mut out: Vec<Setting> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let l = l.strip_prefix("export ").map(str::trim_start).unwrap_or(l);
        let Some((key, rest)) = l.split_once('=') else { continue };
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let rest = rest.trim_start();
        let value = match rest.chars().next() {
            Some(q @ ('"' | '\'')) => {
                let inner = &rest[1..];
                inner.find(q).map(|e| &inner[..e]).unwrap_or(inner).to_string()
            }
            _ => rest.split_whitespace().next().unwrap_or("").to_string(),
        };
        out.retain(|s| s.key != key);
        out.push(Setting { key: key.to_string(), value, line: i + 1, text: raw.trim_end().to_string() });
    }
    out
}

/// A settings file: where UFW reads it, where it was read from, and its assignments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsFile {
    /// Where UFW reads it (`/etc/default/ufw`).
    pub path: String,
    /// The file actually read (the same, or a saved copy).
    pub read_from: String,
    pub settings: Vec<Setting>,
}

impl SettingsFile {
    pub fn get(&self, key: &str) -> Option<&Setting> {
        self.settings.iter().find(|s| s.key == key)
    }
}

/// One `-A`/`-I` line of a rules file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRule {
    pub line: usize,
    pub table: String,
    pub chain: String,
    /// The line as written.
    pub text: String,
    /// The `### tuple ###` comment UFW wrote above a rule it added (user.rules), without the marker.
    pub tuple: Option<String>,
    key: Vec<String>,
}

/// A rules file (`before.rules`, `user6.rules`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RulesFile {
    /// `user.rules`.
    pub name: String,
    /// Where UFW reads it (`/etc/ufw/user.rules`).
    pub path: String,
    /// The file actually read.
    pub read_from: String,
    /// The IPv6 twin (`*6.rules`), loaded with ip6tables-restore.
    pub v6: bool,
    /// Chains declared (`:chain - [0:0]`), with their table.
    pub declared: Vec<(String, String)>,
    pub rules: Vec<FileRule>,
}

/// Parses one of UFW's rules files (an iptables-restore fragment).
pub fn parse_rules(name: &str, read_from: &str, text: &str) -> RulesFile {
    let v6 = name.ends_with("6.rules");
    let mut f = RulesFile {
        name: name.to_string(),
        path: format!("{RULES_DIR}/{name}"),
        read_from: read_from.to_string(),
        v6,
        declared: Vec::new(),
        rules: Vec::new(),
    };
    let mut table = "filter".to_string();
    let mut tuple: Option<String> = None;
    for (i, raw) in text.lines().enumerate() {
        let l = raw.trim();
        if let Some(t) = l.strip_prefix("### tuple ###") {
            tuple = Some(t.trim().to_string());
            continue;
        }
        if l.starts_with("### END RULES") {
            tuple = None;
        }
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        if let Some(t) = l.strip_prefix('*') {
            table = t.trim().to_string();
            continue;
        }
        if let Some(c) = l.strip_prefix(':') {
            if let Some(name) = c.split_whitespace().next() {
                f.declared.push((table.clone(), name.to_string()));
            }
            continue;
        }
        let toks = tokens(l);
        if toks.len() >= 2 && matches!(toks[0].as_str(), "-A" | "--append" | "-I" | "--insert") {
            let key = rule_key(&toks, v6);
            f.rules.push(FileRule { line: i + 1, table: table.clone(), chain: toks[1].clone(), text: l.to_string(), tuple: tuple.take(), key });
        }
    }
    f
}

/// UFW's configuration as read from a host (live) or from a saved copy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UfwConfig {
    /// `/etc/default/ufw`, when it was read.
    pub defaults: Option<SettingsFile>,
    /// `/etc/ufw/ufw.conf`, when it was read.
    pub conf: Option<SettingsFile>,
    pub rules: Vec<RulesFile>,
    /// Files that were not found or not readable, one line each (`/etc/ufw/after6.rules: not found`).
    pub missing: Vec<String>,
    /// Read from a directory given by the user (a saved copy), not this host's /etc.
    pub saved_copy: Option<String>,
}

impl UfwConfig {
    /// Builds the configuration from file texts, each named by where UFW reads it
    /// (`/etc/default/ufw`, `/etc/ufw/ufw.conf`, `/etc/ufw/user.rules`, ...) and where it was read.
    /// Other paths are ignored.
    pub fn from_files<'a>(files: impl IntoIterator<Item = (&'a str, &'a str, &'a str)>, missing: Vec<String>, saved_copy: Option<String>) -> UfwConfig {
        let mut c = UfwConfig { missing, saved_copy, ..Default::default() };
        for (path, read_from, text) in files {
            if path == DEFAULTS_PATH {
                c.defaults = Some(SettingsFile { path: path.into(), read_from: read_from.into(), settings: parse_settings(text) });
            } else if path == CONF_PATH {
                c.conf = Some(SettingsFile { path: path.into(), read_from: read_from.into(), settings: parse_settings(text) });
            } else if let Some(name) = path.strip_prefix(RULES_DIR).and_then(|n| n.strip_prefix('/'))
                && RULES_FILES.contains(&name)
            {
                c.rules.push(parse_rules(name, read_from, text));
            }
        }
        c.rules.sort_by_key(|f| RULES_FILES.iter().position(|n| *n == f.name));
        c
    }

    /// Nothing was read at all.
    pub fn is_empty(&self) -> bool {
        self.defaults.is_none() && self.conf.is_none() && self.rules.is_empty()
    }

    pub fn default_setting(&self, key: &str) -> Option<&Setting> {
        self.defaults.as_ref()?.get(key)
    }

    fn yes(&self, file: Option<&SettingsFile>, key: &str) -> Option<bool> {
        let v = file?.get(key)?.value.to_ascii_lowercase();
        Some(v == "yes" || v == "true" || v == "1")
    }

    /// `IPV6=yes|no` in /etc/default/ufw.
    pub fn ipv6(&self) -> Option<bool> {
        self.yes(self.defaults.as_ref(), "IPV6")
    }

    /// `ENABLED=yes|no` in /etc/ufw/ufw.conf.
    pub fn enabled(&self) -> Option<bool> {
        self.yes(self.conf.as_ref(), "ENABLED")
    }

    /// The facts an explanation carries.
    pub fn facts(&self) -> UfwFacts {
        let d = |k: &str| self.default_setting(k).map(|s| s.value.to_ascii_uppercase());
        UfwFacts {
            read_from: self.saved_copy.clone().unwrap_or_else(|| format!("{DEFAULTS_PATH}, {RULES_DIR}")),
            enabled: self.enabled(),
            ipv6: self.ipv6(),
            default_input_policy: d("DEFAULT_INPUT_POLICY"),
            default_forward_policy: d("DEFAULT_FORWARD_POLICY"),
            default_output_policy: d("DEFAULT_OUTPUT_POLICY"),
            default_application_policy: d("DEFAULT_APPLICATION_POLICY"),
            manage_builtins: self.yes(self.defaults.as_ref(), "MANAGE_BUILTINS"),
            files: self.rules.iter().map(|f| UfwFile { path: f.path.clone(), rules: f.rules.len() }).collect(),
            missing: self.missing.clone(),
            in_sync: None,
        }
    }

    fn files_for(&self, v6: bool) -> impl Iterator<Item = &RulesFile> {
        self.rules.iter().filter(move |f| f.v6 == v6)
    }
}

/// UFW's configuration as an explanation shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UfwFacts {
    /// Where the files were read: `/etc/default/ufw, /etc/ufw`, or the saved copy given.
    pub read_from: String,
    /// `ENABLED` in /etc/ufw/ufw.conf (UFW starts at boot).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// `IPV6` in /etc/default/ufw: with `no`, UFW accepts IPv6 on loopback only and its rules are IPv4 only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_input_policy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_forward_policy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_output_policy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_application_policy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manage_builtins: Option<bool>,
    /// The rules files read, with how many rules each holds.
    pub files: Vec<UfwFile>,
    /// Files not found or not readable.
    pub missing: Vec<String>,
    /// The live rules are what the files say (`null`: not compared, the rules are not this host's live ones).
    pub in_sync: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UfwFile {
    pub path: String,
    pub rules: usize,
}

/// Where the deciding rule, or the policy, is configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleSource {
    /// The file UFW reads it from (`/etc/ufw/user.rules`, `/etc/default/ufw`).
    pub file: String,
    pub line: usize,
    /// The line as written there.
    pub text: String,
    /// The file actually read, when it is a saved copy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_from: Option<String>,
    /// The setting, for a policy (`DEFAULT_INPUT_POLICY`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub setting: Option<String>,
    /// UFW's own description of a rule it added (the `### tuple ###` line).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ufw_rule: Option<String>,
    /// The `ufw` command that adds such a rule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ufw_command: Option<String>,
    /// One line: `/etc/ufw/user.rules line 24 (added by `ufw allow ...`)`.
    pub summary: String,
}

/// The chains a `DEFAULT_*_POLICY` setting becomes: the base chain's policy, and UFW's generated
/// `ufw-skip-to-policy-*` and `ufw-reject-*` chains.
fn policy_setting(chain: &str) -> Option<&'static str> {
    let c = chain.strip_prefix("ufw6-").or_else(|| chain.strip_prefix("ufw-")).map(|r| r.trim_start_matches("skip-to-policy-").trim_start_matches("reject-"));
    let dir = match (chain, c) {
        ("INPUT", _) | (_, Some("input")) => "input",
        ("FORWARD", _) | (_, Some("forward")) => "forward",
        ("OUTPUT", _) | (_, Some("output")) => "output",
        _ => return None,
    };
    if c.is_some() && !(chain.contains("skip-to-policy-") || chain.contains("-reject-")) {
        return None;
    }
    Some(match dir {
        "input" => "DEFAULT_INPUT_POLICY",
        "forward" => "DEFAULT_FORWARD_POLICY",
        _ => "DEFAULT_OUTPUT_POLICY",
    })
}

/// Where the deciding rule (or policy) comes from in UFW's files, when UFW owns it.
pub fn locate(cfg: &UfwConfig, tables: &[Table], d: &Decider) -> Option<RuleSource> {
    let table = tables.get(d.table_idx)?;
    let v6 = table.family == Family::Ip6;
    // A policy, or a chain UFW generates from one.
    let from_policy = (d.policy && d.table == "filter") || (!d.policy && (d.chain.contains("skip-to-policy-") || d.chain.contains("-reject-")) && d.chain.starts_with("ufw"));
    if from_policy {
        let key = policy_setting(&d.chain)?;
        let file = cfg.defaults.as_ref()?;
        let s = file.get(key)?;
        let generated = if d.policy { String::new() } else { format!("; UFW generates {} from it", d.chain) };
        return Some(RuleSource {
            file: file.path.clone(),
            line: s.line,
            text: s.text.trim().to_string(),
            read_from: cfg.saved_copy.as_ref().map(|_| file.read_from.clone()),
            setting: Some(key.to_string()),
            ufw_rule: None,
            ufw_command: None,
            summary: format!("{}=\"{}\" in {} (line {}{generated})", key, s.value, file.path, s.line),
        });
    }
    // A rule: the same options, in a file of this family, for this chain.
    let ri = d.rule_idx?;
    let chain = table.chain(&d.chain)?;
    let live = chain.rules.get(ri)?;
    let key = rule_key(&tokens(&live.text), v6);
    let nth = chain.rules[..ri].iter().filter(|r| rule_key(&tokens(&r.text), v6) == key).count();
    let candidates: Vec<(&RulesFile, &FileRule)> =
        cfg.files_for(v6).flat_map(|f| f.rules.iter().map(move |r| (f, r))).filter(|(_, r)| r.table == d.table && r.chain == d.chain && r.key == key).collect();
    let (f, r) = candidates.get(nth).or_else(|| candidates.first()).copied()?;
    let command = r.tuple.as_deref().and_then(tuple_command);
    let what = match (&command, f.name.trim_end_matches(".rules").trim_end_matches('6')) {
        (Some(c), _) => format!(" (added by `{c}`)"),
        (None, "before") => format!(" (UFW's built-in rules, run before the user's: edit {} and `sudo ufw reload` to change it)", f.path),
        (None, "after") => format!(" (UFW's built-in rules, run after the user's: edit {} and `sudo ufw reload` to change it)", f.path),
        (None, _) => String::new(),
    };
    Some(RuleSource {
        file: f.path.clone(),
        line: r.line,
        text: r.text.clone(),
        read_from: cfg.saved_copy.as_ref().map(|_| f.read_from.clone()),
        setting: None,
        ufw_rule: r.tuple.clone(),
        ufw_command: command,
        summary: format!("{} line {}{what}", f.path, r.line),
    })
}

/// Compares the live rules with UFW's files: rules in a file but not loaded, rules loaded in a
/// chain the files fill but in no file, and policies that differ from `DEFAULT_*_POLICY`.
/// Returns whether they agree, and one note per disagreement (at most a few of each kind).
/// Only meaningful when the rules and the files are the same host's, at the same time.
pub fn compare(cfg: &UfwConfig, tables: &[Table]) -> (bool, Vec<String>) {
    let mut notes = Vec::new();
    const RELOAD: &str = "UFW has not loaded the files since they changed, or the live rules were changed by hand; `sudo ufw reload` loads the files";
    for v6 in [false, true] {
        let prefix = if v6 { "ufw6-" } else { "ufw-" };
        let fam = if v6 { Family::Ip6 } else { Family::Ip };
        let files: Vec<&RulesFile> = cfg.files_for(v6).collect();
        let Some(table) = tables.iter().find(|t| t.backend.is_iptables() && t.family == fam && t.name == "filter" && t.chains.iter().any(|c| c.name.starts_with(prefix))) else {
            // UFW's IPv6 chains are absent: fine with IPV6=no, not with IPV6=yes (when IPv6 rules were read at all).
            if v6 && cfg.ipv6() == Some(true) && tables.iter().any(|t| t.backend.is_iptables() && t.family == Family::Ip6 && t.name == "filter")
                && tables.iter().any(|t| t.family == Family::Ip && t.chains.iter().any(|c| c.name.starts_with("ufw-")))
            {
                notes.push(format!("IPV6=yes in {DEFAULTS_PATH}, yet the live IPv6 rules have no ufw6-* chains: UFW was not restarted since IPV6 changed (`sudo ufw disable && sudo ufw enable`)"));
            }
            continue;
        };
        if v6 && cfg.ipv6() == Some(false) {
            notes.push(format!("IPV6=no in {DEFAULTS_PATH}, yet the live IPv6 rules have UFW's ufw6-* chains: UFW was not restarted since IPV6 changed"));
        }
        // Policies.
        if let Some(defaults) = &cfg.defaults {
            for (base, key) in [("INPUT", "DEFAULT_INPUT_POLICY"), ("FORWARD", "DEFAULT_FORWARD_POLICY"), ("OUTPUT", "DEFAULT_OUTPUT_POLICY")] {
                let (Some(s), Some(c)) = (defaults.get(key), table.chain(base)) else { continue };
                let Some(b) = &c.base else { continue };
                let want = match s.value.to_ascii_uppercase().as_str() {
                    "ACCEPT" => Policy::Accept,
                    "DROP" | "REJECT" => Policy::Drop,
                    _ => continue,
                };
                if b.policy != want {
                    notes.push(format!(
                        "{key}=\"{}\" in {}, yet the live {} policy is `{}`: {RELOAD}",
                        s.value,
                        defaults.path,
                        if v6 { format!("ip6tables {base}") } else { base.to_string() },
                        c.policy_text
                    ));
                }
            }
        }
        // Rules, chain by chain.
        let mut chains: Vec<&str> = Vec::new();
        for f in &files {
            for (t, c) in &f.declared {
                if t == "filter" && !chains.contains(&c.as_str()) {
                    chains.push(c);
                }
            }
            for r in &f.rules {
                if r.table == "filter" && !chains.contains(&r.chain.as_str()) {
                    chains.push(&r.chain);
                }
            }
        }
        let mut missing: Vec<String> = Vec::new();
        let mut extra: Vec<String> = Vec::new();
        for c in chains {
            let file_rules: Vec<(&RulesFile, &FileRule)> = files.iter().flat_map(|f| f.rules.iter().map(move |r| (*f, r))).filter(|(_, r)| r.table == "filter" && r.chain == c).collect();
            let live: Vec<&crate::ir::Rule> = table.chain(c).map(|ch| ch.rules.iter().collect()).unwrap_or_default();
            let mut live_keys: Vec<Option<Vec<String>>> = live.iter().map(|r| Some(rule_key(&tokens(&r.text), v6))).collect();
            for (f, r) in &file_rules {
                match live_keys.iter_mut().find(|k| k.as_ref() == Some(&r.key)) {
                    Some(k) => *k = None,
                    None => missing.push(format!("{} line {}: {}", f.path, r.line, r.text)),
                }
            }
            for (r, k) in live.iter().zip(&live_keys) {
                if k.is_some() && !generated(c, &r.text) {
                    extra.push(r.text.to_string());
                }
            }
        }
        let fam_word = if v6 { "IPv6 " } else { "" };
        // "N [live ]rule(s) in <place> is/are <what> (the first three): run ufw reload"
        let note = |rules: &[String], live: &str, place: &str, what: &str| {
            let n = rules.len();
            format!(
                "{n} {live}{fam_word}rule{} in {place} {} {what} ({}{}): {RELOAD}",
                if n == 1 { "" } else { "s" },
                if n == 1 { "is" } else { "are" },
                rules.iter().take(3).cloned().collect::<Vec<_>>().join("; "),
                if n > 3 { "; ..." } else { "" }
            )
        };
        if !missing.is_empty() {
            notes.push(note(&missing, "", "UFW's files", "not in the live rules"));
        }
        if !extra.is_empty() {
            notes.push(note(&extra, "live ", "UFW's chains", "in none of UFW's files"));
        }
    }
    (notes.is_empty(), notes)
}

/// Rules UFW adds itself rather than from a file: the jumps from its before-chains to the user chains.
fn generated(chain: &str, text: &str) -> bool {
    let c = chain.strip_prefix("ufw6-").or_else(|| chain.strip_prefix("ufw-")).unwrap_or("");
    if !c.starts_with("before-") {
        return false;
    }
    let toks = tokens(text);
    toks.len() == 4 && toks[2] == "-j" && (toks[3].starts_with("ufw-user-") || toks[3].starts_with("ufw6-user-"))
}

/// The `ufw` command behind a `### tuple ###` line of user.rules:
/// `allow tcp 5432 0.0.0.0/0 any 0.0.0.0/0 in_docker0` -> `ufw allow in on docker0 to any port 5432 proto tcp`.
pub fn tuple_command(tuple: &str) -> Option<String> {
    let mut f: Vec<&str> = tuple.split_whitespace().collect();
    let comment = f.iter().position(|x| x.starts_with("comment=")).map(|i| f.remove(i)).and_then(|c| decode_hex(&c["comment=".len()..]));
    let (action, proto, dport, dst, sport, src, apps, dir) = match f.len() {
        7 => (f[0], f[1], f[2], f[3], f[4], f[5], None, f[6]),
        9 => (f[0], f[1], f[2], f[3], f[4], f[5], Some((f[6], f[7])), f[8]),
        _ => return None,
    };
    let (route, action) = match action.strip_prefix("route:") {
        Some(a) => (true, a),
        None => (false, action),
    };
    let (action, log) = match action.split_once('_') {
        Some((a, l)) => (a, Some(l)),
        None => (action, None),
    };
    let any = |a: &str| a == "0.0.0.0/0" || a == "::/0" || a == "any";
    let mut c = String::from("ufw");
    if route {
        c.push_str(" route");
    }
    c.push(' ');
    c.push_str(action);
    if let Some(l) = log {
        c.push(' ');
        c.push_str(l);
    }
    // in, out, in_docker0, out_eth0, in_docker0!out_hrlan0
    let mut ifaces = Vec::new();
    let mut word = "";
    for part in dir.split('!') {
        let (d, iface) = part.split_once('_').map(|(d, i)| (d, Some(i))).unwrap_or((part, None));
        if word.is_empty() {
            word = d;
        }
        if let Some(i) = iface {
            ifaces.push(format!("{d} on {i}"));
        }
    }
    if !ifaces.is_empty() {
        c.push(' ');
        c.push_str(&ifaces.join(" "));
    } else if word == "out" {
        c.push_str(" out");
    }
    let (dapp, sapp) = apps.map(|(d, s)| ((d != "-").then_some(d), (s != "-").then_some(s))).unwrap_or((None, None));
    if !any(src) || sport != "any" || sapp.is_some() {
        c.push_str(&format!(" from {}", if any(src) { "any" } else { src }));
        if let Some(a) = sapp {
            c.push_str(&format!(" app {a}"));
        } else if sport != "any" {
            c.push_str(&format!(" port {sport}"));
        }
    }
    c.push_str(&format!(" to {}", if any(dst) { "any" } else { dst }));
    if let Some(a) = dapp {
        c.push_str(&format!(" app {a}"));
    } else if dport != "any" {
        c.push_str(&format!(" port {dport}"));
    }
    if proto != "any" && dapp.is_none() && sapp.is_none() {
        c.push_str(&format!(" proto {proto}"));
    }
    if let Some(cm) = comment {
        c.push_str(&format!(" comment '{cm}'"));
    }
    Some(c)
}

fn decode_hex(s: &str) -> Option<String> {
    if !s.is_ascii() || !s.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok()).collect();
    String::from_utf8(bytes?).ok()
}

/// Splits a rule line as a shell would (quotes kept together, without the quote characters).
fn tokens(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut any = false;
    for ch in line.chars() {
        match quote {
            Some(q) if ch == q => quote = None,
            Some(_) => cur.push(ch),
            None if ch == '"' || ch == '\'' => {
                quote = Some(ch);
                any = true;
            }
            None if ch.is_whitespace() => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                any = false;
            }
            None => {
                cur.push(ch);
                any = true;
            }
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}

const ICMP_TYPES: &[(&str, &str)] = &[
    ("any", "any"),
    ("echo-reply", "0"),
    ("pong", "0"),
    ("destination-unreachable", "3"),
    ("network-unreachable", "3/0"),
    ("host-unreachable", "3/1"),
    ("protocol-unreachable", "3/2"),
    ("port-unreachable", "3/3"),
    ("fragmentation-needed", "3/4"),
    ("source-quench", "4"),
    ("redirect", "5"),
    ("echo-request", "8"),
    ("ping", "8"),
    ("router-advertisement", "9"),
    ("router-solicitation", "10"),
    ("time-exceeded", "11"),
    ("ttl-exceeded", "11"),
    ("parameter-problem", "12"),
    ("timestamp-request", "13"),
    ("timestamp-reply", "14"),
    ("address-mask-request", "17"),
    ("address-mask-reply", "18"),
];

const ICMPV6_TYPES: &[(&str, &str)] = &[
    ("destination-unreachable", "1"),
    ("no-route", "1/0"),
    ("communication-prohibited", "1/1"),
    ("address-unreachable", "1/3"),
    ("port-unreachable", "1/4"),
    ("packet-too-big", "2"),
    ("time-exceeded", "3"),
    ("ttl-exceeded", "3"),
    ("parameter-problem", "4"),
    ("echo-request", "128"),
    ("ping", "128"),
    ("echo-reply", "129"),
    ("pong", "129"),
    ("router-solicitation", "133"),
    ("router-advertisement", "134"),
    ("neighbour-solicitation", "135"),
    ("neighbor-solicitation", "135"),
    ("neighbour-advertisement", "136"),
    ("neighbor-advertisement", "136"),
    ("redirect", "137"),
];

fn canon_option(o: &str) -> &str {
    match o {
        "--destination-port" => "--dport",
        "--source-port" => "--sport",
        "--source" | "--src" => "-s",
        "--destination" | "--dst" => "-d",
        "--in-interface" => "-i",
        "--out-interface" => "-o",
        "--protocol" => "-p",
        "--jump" => "-j",
        "--goto" => "-g",
        "--match" => "-m",
        "--fragment" => "-f",
        "--destination-ports" => "--dports",
        "--source-ports" => "--sports",
        o => o,
    }
}

fn canon_net(v: &str) -> String {
    let (a, len) = match v.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (v, None),
    };
    match a.parse::<IpAddr>() {
        Ok(ip) => {
            let full = if ip.is_ipv6() { 128 } else { 32 };
            let len = len.and_then(|l| l.parse::<u8>().ok()).unwrap_or(full);
            format!("{ip}/{len}")
        }
        Err(_) => v.to_string(),
    }
}

/// A rule's options in a canonical, order-free form: what two spellings of the same rule share.
fn rule_key(toks: &[String], v6: bool) -> Vec<String> {
    // Skip `-A CHAIN` / `-I CHAIN [N]`.
    let mut i = 0;
    if toks.len() >= 2 && matches!(toks[0].as_str(), "-A" | "--append" | "-I" | "--insert") {
        i = 2;
        if matches!(toks[0].as_str(), "-I" | "--insert") && toks.get(2).is_some_and(|t| t.parse::<u32>().is_ok()) {
            i = 3;
        }
    }
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    let mut neg = false;
    while i < toks.len() {
        let t = &toks[i];
        if t == "!" {
            neg = true;
            i += 1;
            continue;
        }
        let opt = if t.starts_with('-') && t.len() > 1 { canon_option(t).to_string() } else { t.clone() };
        let mut vals = Vec::new();
        i += 1;
        while i < toks.len() && !(toks[i].starts_with('-') && toks[i].len() > 1 && toks[i].parse::<i64>().is_err()) && toks[i] != "!" {
            vals.push(toks[i].clone());
            i += 1;
        }
        // old style: `-i ! docker0`
        if vals.first().is_some_and(|v| v == "!") {
            vals.remove(0);
            neg = true;
        }
        groups.push((if neg { format!("!{opt}") } else { opt }, vals));
        neg = false;
    }
    let proto = groups.iter().find(|(o, _)| o == "-p").and_then(|(_, v)| v.first().cloned()).map(|p| p.to_ascii_lowercase());
    let mut out: Vec<String> = Vec::new();
    let mut has_reject_with = false;
    let mut reject = false;
    for (o, mut v) in groups {
        let bare = o.trim_start_matches('!');
        match bare {
            "-m" if v.first().is_some_and(|m| matches!(m.as_str(), "tcp" | "udp" | "icmp" | "icmp6" | "icmpv6" | "ipv6-icmp" | "sctp")) => continue,
            "-p" => {
                if let Some(p) = v.first_mut() {
                    *p = match p.to_ascii_lowercase().as_str() {
                        "6" => "tcp".into(),
                        "17" => "udp".into(),
                        "1" => "icmp".into(),
                        "58" | "icmpv6" | "ipv6-icmp" => "ipv6-icmp".into(),
                        "132" => "sctp".into(),
                        x => x.to_string(),
                    };
                }
            }
            "-s" | "-d" => {
                if let Some(a) = v.first_mut() {
                    let n = canon_net(a);
                    if n == "0.0.0.0/0" || n == "::/0" {
                        continue;
                    }
                    *a = n;
                }
            }
            "--icmp-type" | "--icmpv6-type" => {
                let table = if bare == "--icmp-type" && proto.as_deref() != Some("ipv6-icmp") { ICMP_TYPES } else { ICMPV6_TYPES };
                if let Some(t) = v.first_mut()
                    && let Some((_, n)) = table.iter().find(|(name, _)| name.eq_ignore_ascii_case(t))
                {
                    *t = n.to_string();
                }
            }
            "--limit" => {
                if let Some(l) = v.first_mut()
                    && let Some((n, unit)) = l.split_once('/')
                {
                    let u = match unit.chars().next() {
                        Some('s') => "sec",
                        Some('m') => "min",
                        Some('h') => "hour",
                        Some('d') => "day",
                        _ => unit,
                    };
                    *l = format!("{n}/{u}");
                }
            }
            "--ctstate" | "--state" => {
                if let Some(s) = v.first_mut() {
                    let mut parts: Vec<&str> = s.split(',').collect();
                    parts.sort_unstable();
                    *s = parts.join(",").to_ascii_uppercase();
                }
            }
            "-j" => reject = v.first().is_some_and(|t| t == "REJECT"),
            "--reject-with" => has_reject_with = true,
            _ => {}
        }
        out.push(if v.is_empty() { o } else { format!("{o} {}", v.join(" ")) });
    }
    if reject && !has_reject_with {
        out.push(format!("--reject-with {}", if v6 { "icmp6-port-unreachable" } else { "icmp-port-unreachable" }));
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str, v6: bool) -> Vec<String> {
        rule_key(&tokens(s), v6)
    }

    #[test]
    fn settings_with_and_without_quotes() {
        let s = parse_settings("# c\nIPV6=yes\n\nDEFAULT_INPUT_POLICY=\"DROP\"\nDEFAULT_OUTPUT_POLICY='ACCEPT'  # trailing\nIPT_MODULES=\"\"\nnot an assignment\nIPV6=no\n");
        let get = |k: &str| s.iter().find(|x| x.key == k).map(|x| (x.value.as_str(), x.line));
        assert_eq!(get("DEFAULT_INPUT_POLICY"), Some(("DROP", 4)));
        assert_eq!(get("DEFAULT_OUTPUT_POLICY"), Some(("ACCEPT", 5)));
        assert_eq!(get("IPT_MODULES"), Some(("", 6)));
        // the last assignment wins, as when the shell sources the file
        assert_eq!(get("IPV6"), Some(("no", 8)));
        assert_eq!(s.iter().find(|x| x.key == "DEFAULT_INPUT_POLICY").unwrap().text, "DEFAULT_INPUT_POLICY=\"DROP\"");
    }

    #[test]
    fn ufw_spellings_and_iptables_save_spellings_are_the_same_rule() {
        assert_eq!(key("-A ufw-user-input -p tcp --dport 22 -j ACCEPT", false), key("-A ufw-user-input -p tcp -m tcp --dport 22 -j ACCEPT", false));
        assert_eq!(key("-A ufw-before-input -p icmp --icmp-type echo-request -j ACCEPT", false), key("-A ufw-before-input -p icmp -m icmp --icmp-type 8 -j ACCEPT", false));
        assert_eq!(
            key("-A ufw6-before-input -p icmpv6 --icmpv6-type neighbor-solicitation -m hl --hl-eq 255 -j ACCEPT", true),
            key("-A ufw6-before-input -p ipv6-icmp -m icmp6 --icmpv6-type 135 -m hl --hl-eq 255 -j ACCEPT", true)
        );
        assert_eq!(
            key("-A ufw-after-logging-input -j LOG --log-prefix \"[UFW BLOCK] \" -m limit --limit 3/min --limit-burst 10", false),
            key("-A ufw-after-logging-input -m limit --limit 3/min --limit-burst 10 -j LOG --log-prefix \"[UFW BLOCK] \"", false)
        );
        assert_eq!(key("-A ufw-user-limit -m limit --limit 3/minute -j LOG", false), key("-A ufw-user-limit -m limit --limit 3/min -j LOG", false));
        assert_eq!(key("-A ufw-user-limit -j REJECT", false), key("-A ufw-user-limit -j REJECT --reject-with icmp-port-unreachable", false));
        assert_eq!(key("-A ufw-before-input -p udp -d 224.0.0.251 --dport 5353 -j ACCEPT", false), key("-A ufw-before-input -d 224.0.0.251/32 -p udp -m udp --dport 5353 -j ACCEPT", false));
        assert_eq!(key("-A ufw6-before-input -p udp -d ff02::fb --dport 5353 -j ACCEPT", true), key("-A ufw6-before-input -d ff02::fb/128 -p udp -m udp --dport 5353 -j ACCEPT", true));
        assert_eq!(key("-I ufw-logging-deny -m conntrack --ctstate INVALID -j RETURN -m limit --limit 3/min --limit-burst 10", false), key("-A ufw-logging-deny -m conntrack --ctstate INVALID -m limit --limit 3/min --limit-burst 10 -j RETURN", false));
        // and different rules stay different
        assert_ne!(key("-A ufw-user-input -p tcp --dport 22 -j ACCEPT", false), key("-A ufw-user-input -p tcp --dport 23 -j ACCEPT", false));
        assert_ne!(key("-A ufw-user-input -i docker0 -j ACCEPT", false), key("-A ufw-user-input ! -i docker0 -j ACCEPT", false));
        assert_ne!(key("-A ufw-user-input -p tcp --dport 22 -j ACCEPT", false), key("-A ufw-user-input -p tcp --dport 22 -j DROP", false));
    }

    #[test]
    fn tuples_become_ufw_commands() {
        assert_eq!(tuple_command("allow tcp 5432 0.0.0.0/0 any 0.0.0.0/0 in_docker0").unwrap(), "ufw allow in on docker0 to any port 5432 proto tcp");
        assert_eq!(tuple_command("allow tcp 22 0.0.0.0/0 any 0.0.0.0/0 in").unwrap(), "ufw allow to any port 22 proto tcp");
        assert_eq!(tuple_command("reject tcp 11211 0.0.0.0/0 any 172.17.0.0/16 in").unwrap(), "ufw reject from 172.17.0.0/16 to any port 11211 proto tcp");
        assert_eq!(tuple_command("allow tcp 8080 ::/0 any fd00:6872::/64 in_docker0").unwrap(), "ufw allow in on docker0 from fd00:6872::/64 to any port 8080 proto tcp");
        assert_eq!(tuple_command("route:allow udp 53 0.0.0.0/0 any 0.0.0.0/0 in_docker0!out_hrlan0").unwrap(), "ufw route allow in on docker0 out on hrlan0 to any port 53 proto udp");
        assert_eq!(tuple_command("deny_log any any 0.0.0.0/0 any 10.0.0.0/8 in").unwrap(), "ufw deny log from 10.0.0.0/8 to any");
        assert_eq!(tuple_command("allow any 22 0.0.0.0/0 any 0.0.0.0/0 OpenSSH - in").unwrap(), "ufw allow to any app OpenSSH");
        assert_eq!(tuple_command("allow tcp 80 0.0.0.0/0 any 0.0.0.0/0 in comment=776562").unwrap(), "ufw allow to any port 80 proto tcp comment 'web'");
        assert_eq!(tuple_command("nonsense"), None);
        // a comment that is not hex, or not ASCII, is left out rather than misread
        assert_eq!(tuple_command("allow tcp 80 0.0.0.0/0 any 0.0.0.0/0 in comment=aé1").unwrap(), "ufw allow to any port 80 proto tcp");
    }

    #[test]
    fn odd_input_does_not_panic() {
        for t in ["", "=", "\"", "-A", "-A x !", "-A x -p", "-I x 3", "### tuple ###", "*", ":", "-A c -s é/99 -d ::/999 --icmp-type é --limit /", "KEY=\"unterminated", "export X='y'"] {
            let f = parse_rules("user.rules", "x", t);
            let _ = parse_settings(t);
            for r in &f.rules {
                assert!(!r.chain.is_empty());
            }
            let _ = tuple_command(t);
        }
    }

    #[test]
    fn rules_files_keep_lines_tuples_and_families() {
        let f = parse_rules(
            "user6.rules",
            "/tmp/x/user6.rules",
            "*filter\n:ufw6-user-input - [0:0]\n### RULES ###\n\n### tuple ### allow tcp 22 ::/0 any ::/0 in\n-A ufw6-user-input -p tcp --dport 22 -j ACCEPT\n### END RULES ###\n-A ufw6-user-limit -j REJECT\nCOMMIT\n",
        );
        assert!(f.v6);
        assert_eq!(f.path, "/etc/ufw/user6.rules");
        assert_eq!(f.declared, vec![("filter".to_string(), "ufw6-user-input".to_string())]);
        assert_eq!(f.rules.len(), 2);
        assert_eq!((f.rules[0].line, f.rules[0].chain.as_str(), f.rules[0].tuple.as_deref()), (6, "ufw6-user-input", Some("allow tcp 22 ::/0 any ::/0 in")));
        assert_eq!(f.rules[1].tuple, None);
    }

    #[test]
    fn policy_settings_by_chain() {
        assert_eq!(policy_setting("INPUT"), Some("DEFAULT_INPUT_POLICY"));
        assert_eq!(policy_setting("ufw-skip-to-policy-input"), Some("DEFAULT_INPUT_POLICY"));
        assert_eq!(policy_setting("ufw6-reject-forward"), Some("DEFAULT_FORWARD_POLICY"));
        assert_eq!(policy_setting("OUTPUT"), Some("DEFAULT_OUTPUT_POLICY"));
        assert_eq!(policy_setting("ufw-user-input"), None);
        assert_eq!(policy_setting("DOCKER"), None);
    }
}
