//! `nft -j list ruleset` into the common model.
//!
//! The `nftables` crate's typed schema deserialises the objects it models well (metainfo, tables,
//! chains with their hook, priority, type and policy). Rule statements and set elements are read
//! from `serde_json::Value`: the crate's untagged `Expression` refuses numbers above u32, has no
//! model for several statements (`xt` carries no content), and the raw JSON is what the rule text
//! is printed from. Anything not understood becomes a not-evaluable test, never a guess.

use crate::error::ParseError;
use crate::ir::{self, Backend, Base, ChainKind, Family, Field, Hook, Nat, NatKind, Policy, Stmt, Test, Val, Verdict, addrtype, ct};
use serde::Deserialize;
use smallvec::smallvec;
use serde_json::Value;
use std::collections::HashMap;
use std::net::IpAddr;

#[derive(Debug, Clone, PartialEq)]
pub struct NftRuleset {
    /// nft version from metainfo (`1.0.6`).
    pub version: Option<String>,
    pub json_schema_version: Option<u64>,
    pub tables: Vec<NftTable>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NftTable {
    pub family: Family,
    pub name: String,
    pub chains: Vec<NftChain>,
    /// Named sets and maps: name → (is a map, elements as JSON).
    pub sets: HashMap<String, NftSet>,
    /// Holds `xt` statements: written by iptables-nft.
    pub has_xt: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NftSet {
    pub name: String,
    pub is_map: bool,
    /// The map's data type (`verdict` for verdict maps).
    pub map_type: Option<String>,
    pub elem: Vec<Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NftChain {
    pub name: String,
    pub handle: Option<u64>,
    pub base: Option<Base>,
    /// `type filter hook input priority 0; policy drop;`
    pub base_text: Option<String>,
    pub rules: Vec<NftRule>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NftRule {
    pub handle: Option<u64>,
    /// The statements lowered to the common model (while reading: the JSON is not kept).
    pub stmts: std::sync::Arc<[Stmt]>,
    pub comment: Option<String>,
    pub counters: Option<(u64, u64)>,
    /// As `nft list ruleset` prints it.
    pub text: String,
}

fn jerr(i: usize, msg: impl std::fmt::Display) -> ParseError {
    ParseError::json(format!("nftables[{i}]: {msg}"))
}

fn family_of(s: &str) -> Option<Family> {
    Some(match s {
        "ip" => Family::Ip,
        "ip6" => Family::Ip6,
        "inet" => Family::Inet,
        "arp" => Family::Arp,
        "bridge" => Family::Bridge,
        "netdev" => Family::Netdev,
        _ => return None,
    })
}

fn hook_of(s: &str) -> Option<Hook> {
    Some(match s {
        "prerouting" => Hook::Prerouting,
        "input" => Hook::Input,
        "forward" => Hook::Forward,
        "output" => Hook::Output,
        "postrouting" => Hook::Postrouting,
        "ingress" => Hook::Ingress,
        "egress" => Hook::Egress,
        _ => return None,
    })
}

/// Named priorities (`filter`, `dstnat`…) as nft accepts them in JSON from newer versions.
fn prio_of(v: &Value, family: Family, hook: Hook) -> Option<i32> {
    if let Some(n) = v.as_i64() {
        return i32::try_from(n).ok();
    }
    let s = v.as_str()?;
    let (name, off) = match s.find(['+', '-']) {
        Some(i) if i > 0 => (&s[..i], s[i..].replace(' ', "").parse::<i32>().ok()?),
        _ => (s, 0),
    };
    let base = match (name.trim(), family) {
        ("raw", _) => -300,
        ("mangle", _) => -150,
        ("dstnat", _) => -100,
        ("filter", Family::Bridge) => -200,
        ("filter", _) => 0,
        ("security", _) => 50,
        ("srcnat", _) => 100,
        ("out", _) => 100,
        _ => return None,
    };
    let _ = hook;
    Some(base + off)
}

/// Parses `nft -j list ruleset` output.
pub fn parse(json: &str) -> Result<NftRuleset, ParseError> {
    // Fast path: find the items of the top-level array without building them (serde_json's
    // RawValue), then build one item at a time (rules on all cores), so the whole document is never
    // held as a tree: 50,000 rules as serde_json::Value take half a gigabyte, and zeroing those
    // pages was most of the time. Anything unusual about the document takes the plain path, whose
    // errors say what is wrong.
    #[derive(Deserialize)]
    struct Top<'a> {
        #[serde(borrow)]
        nftables: Vec<&'a serde_json::value::RawValue>,
    }
    if let Ok(top) = serde_json::from_str::<Top<'_>>(json) {
        return build_from(&top.nftables);
    }
    let root: Value = serde_json::from_str(json).map_err(|e| ParseError::json(format!("not JSON: {e} (at line {}, column {})", e.line(), e.column())))?;
    from_owned(root)
}

pub fn from_value(root: &Value) -> Result<NftRuleset, ParseError> {
    let items = root
        .get("nftables")
        .and_then(Value::as_array)
        .ok_or_else(|| ParseError::json("not `nft -j list ruleset` output: no top-level \"nftables\" array"))?;
    build_from(items)
}

/// [`from_value`] for a document the caller no longer needs.
pub fn from_owned(root: Value) -> Result<NftRuleset, ParseError> {
    from_value(&root)
}

/// One element of the top-level array: already a tree, or still raw text.
trait Item: Sync {
    /// Whether this is surely a `{"rule": ...}` object (for raw text, from its first key; the
    /// rest are read in pass 1, which passes on a rule it finds, and both passes refuse an
    /// object with several keys: nft writes one per element).
    fn is_rule(&self) -> bool;
    fn value(&self) -> Result<std::borrow::Cow<'_, Value>, String>;
}

impl Item for Value {
    fn is_rule(&self) -> bool {
        self.as_object().is_some_and(|o| o.len() == 1 && o.contains_key("rule"))
    }
    fn value(&self) -> Result<std::borrow::Cow<'_, Value>, String> {
        Ok(std::borrow::Cow::Borrowed(self))
    }
}

impl Item for &serde_json::value::RawValue {
    fn is_rule(&self) -> bool {
        self.get().strip_prefix('{').is_some_and(|r| r.trim_start().starts_with("\"rule\""))
    }
    fn value(&self) -> Result<std::borrow::Cow<'_, Value>, String> {
        serde_json::from_str(self.get()).map(std::borrow::Cow::Owned).map_err(|e| e.to_string())
    }
}

fn build_from<I: Item>(items: &[I]) -> Result<NftRuleset, ParseError> {
    let mut rs = NftRuleset { version: None, json_schema_version: None, tables: Vec::new() };
    let mut tidx: HashMap<(Family, String), usize> = HashMap::new();
    let mut unknown_family = 0usize;
    // Pass 1: metainfo, tables, chains, sets and maps; the rules are only listed.
    let mut rule_at: Vec<usize> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        if item.is_rule() {
            rule_at.push(i);
            continue;
        }
        let item = item.value().map_err(|e| jerr(i, e))?;
        if item.as_object().is_some_and(|o| o.len() > 1) {
            return Err(jerr(i, "an object with several keys (nft writes one: {\"table\": ...}, {\"rule\": ...})"));
        }
        let taken_elem = match item.as_object().and_then(|o| o.iter().next()) {
            Some((k, b)) if k == "set" || k == "map" => b.get("elem").cloned(),
            _ => None,
        };
        let Some(obj) = item.as_object() else {
            return Err(jerr(i, "an element of \"nftables\" is not an object"));
        };
        let Some((kind, body)) = obj.iter().next() else {
            return Err(jerr(i, "an empty object"));
        };

        match kind.as_str() {
            "rule" => rule_at.push(i),
            "metainfo" => {
                if let Ok(m) = nftables::schema::MetainfoObject::deserialize(body) {
                    rs.version = m.version.map(|v| v.to_string());
                    rs.json_schema_version = m.json_schema_version.map(u64::from);
                } else {
                    rs.version = body.get("version").and_then(Value::as_str).map(str::to_string);
                    rs.json_schema_version = body.get("json_schema_version").and_then(Value::as_u64);
                }
            }
            "table" => {
                let (family, name) = match nftables::schema::Table::deserialize(body) {
                    Ok(t) => (fam_from_typed(t.family), t.name.to_string()),
                    Err(_) => {
                        let f = body.get("family").and_then(Value::as_str).ok_or_else(|| jerr(i, "table without \"family\""))?;
                        let n = body.get("name").and_then(Value::as_str).ok_or_else(|| jerr(i, "table without \"name\""))?;
                        (family_of(f).ok_or_else(|| jerr(i, format!("unknown family {f:?}")))?, n.to_string())
                    }
                };
                tidx.insert((family, name.clone()), rs.tables.len());
                rs.tables.push(NftTable { family, name, chains: Vec::new(), sets: HashMap::new(), has_xt: false });
            }
            "chain" => {
                let (family, table, name, handle, hook, prio, ctype, policy) = match nftables::schema::Chain::deserialize(body) {
                    Ok(c) => (
                        fam_from_typed(c.family),
                        c.table.to_string(),
                        c.name.to_string(),
                        c.handle.map(u64::from),
                        c.hook.map(|h| format!("{h:?}").to_ascii_lowercase()),
                        c.prio.map(Value::from),
                        c._type.map(|t| format!("{t:?}").to_ascii_lowercase()),
                        c.policy.map(|p| format!("{p:?}").to_ascii_lowercase()),
                    ),
                    Err(_) => {
                        let s = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_string);
                        let f = s("family").ok_or_else(|| jerr(i, "chain without \"family\""))?;
                        (
                            family_of(&f).ok_or_else(|| jerr(i, format!("unknown family {f:?}")))?,
                            s("table").ok_or_else(|| jerr(i, "chain without \"table\""))?,
                            s("name").ok_or_else(|| jerr(i, "chain without \"name\""))?,
                            body.get("handle").and_then(Value::as_u64),
                            s("hook"),
                            body.get("prio").cloned(),
                            s("type"),
                            s("policy"),
                        )
                    }
                };
                let Some(&ti) = tidx.get(&(family, table.clone())) else {
                    return Err(jerr(i, format!("chain {name} of table {} {table}, which is not listed before it", family.as_str())));
                };
                let (base, base_text) = match hook {
                    Some(h) => {
                        let hook = hook_of(&h).ok_or_else(|| jerr(i, format!("chain {name}: unknown hook {h:?}")))?;
                        let prio_v = prio.unwrap_or(Value::from(0));
                        let prio = prio_of(&prio_v, family, hook).ok_or_else(|| jerr(i, format!("chain {name}: bad priority {prio_v}")))?;
                        let kind = match ctype.as_deref() {
                            Some("nat") => ChainKind::Nat,
                            Some("route") => ChainKind::Route,
                            _ => ChainKind::Filter,
                        };
                        let pol = match policy.as_deref() {
                            Some("drop") => Policy::Drop,
                            _ => Policy::Accept,
                        };
                        let text = format!(
                            "type {} hook {h} priority {prio}; policy {};",
                            ctype.as_deref().unwrap_or("filter"),
                            if pol == Policy::Drop { "drop" } else { "accept" }
                        );
                        (Some(Base { hook, prio, policy: pol, kind }), Some(text))
                    }
                    None => (None, None),
                };
                rs.tables[ti].chains.push(NftChain { name, handle, base, base_text, rules: Vec::new() });
            }
            "set" | "map" => {
                let s = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_string);
                let (Some(f), Some(table), Some(name)) = (s("family"), s("table"), s("name")) else {
                    return Err(jerr(i, format!("{kind} without family, table or name")));
                };
                let family = family_of(&f).ok_or_else(|| jerr(i, format!("unknown family {f:?}")))?;
                let Some(&ti) = tidx.get(&(family, table.clone())) else {
                    return Err(jerr(i, format!("{kind} {name} of table {f} {table}, which is not listed before it")));
                };
                let elem = match taken_elem {
                    Some(Value::Array(a)) => a,
                    Some(v) => vec![v],
                    None => Vec::new(),
                };
                let map_type = body.get("map").map(|m| m.as_str().map(str::to_string).unwrap_or_else(|| m.to_string()));
                rs.tables[ti].sets.insert(name.clone(), NftSet { name, is_map: kind == "map", map_type, elem });
            }
            "element" | "counter" | "quota" | "ct helper" | "limit" | "ct timeout" | "ct expectation" | "flowtable" | "secmark" | "synproxy" => {}
            other => {
                let _ = other;
                unknown_family += 0;
            }
        }
    }
    // Pass 2: rules, each read, printed and lowered on its own (on all cores for big rulesets),
    // then placed in order; the first error by position is the one reported.
    let mut chain_idx: HashMap<(usize, &str), usize> = HashMap::new();
    for (ti, t) in rs.tables.iter().enumerate() {
        for (ci, c) in t.chains.iter().enumerate() {
            // a chain listed twice: its rules go to the first, as nft would refuse the second
            chain_idx.entry((ti, c.name.as_str())).or_insert(ci);
        }
    }
    let rule_items: Vec<(usize, &I)> = rule_at.iter().map(|&i| (i, &items[i])).collect();
    let tables = &rs.tables;
    let read = |&(i, item): &(usize, &I)| -> Result<(usize, usize, NftRule, bool), ParseError> {
        let v = item.value().map_err(|e| jerr(i, e))?;
        if v.as_object().is_some_and(|o| o.len() > 1) {
            return Err(jerr(i, "an object with several keys (nft writes one: {\"table\": ...}, {\"rule\": ...})"));
        }
        let body = v.get("rule").ok_or_else(|| jerr(i, "not a rule"))?;
        let s = |k: &str| body.get(k).and_then(Value::as_str);
        let (Some(f), Some(table), Some(chain)) = (s("family"), s("table"), s("chain")) else {
            return Err(jerr(i, "rule without family, table or chain"));
        };
        let family = family_of(f).ok_or_else(|| jerr(i, format!("unknown family {f:?}")))?;
        let Some(&ti) = tidx.get(&(family, table.to_string())) else {
            return Err(jerr(i, format!("rule of table {f} {table}, which is not listed")));
        };
        let Some(&ci) = chain_idx.get(&(ti, chain)) else {
            return Err(jerr(i, format!("rule of chain {chain}, which is not listed in table {f} {table}")));
        };
        let expr: &[Value] = match body.get("expr") {
            Some(Value::Array(a)) => a,
            Some(_) => return Err(jerr(i, "rule \"expr\" is not an array")),
            None => &[],
        };
        let mut counters = None;
        let mut has_xt = false;
        for e in expr {
            if e.get("xt").is_some() {
                has_xt = true;
            }
            if let Some(c) = e.get("counter")
                && let (Some(p), Some(b)) = (c.get("packets").and_then(Value::as_u64), c.get("bytes").and_then(Value::as_u64)) {
                    counters = Some((p, b));
                }
        }
        let handle = body.get("handle").and_then(Value::as_u64);
        let comment = s("comment").map(str::to_string);
        let mut text = expr.iter().map(render_stmt).collect::<Vec<_>>().join(" ");
        if let Some(cm) = &comment {
            text.push_str(&format!(" comment {}", quote(cm)));
        }
        let t = &tables[ti];
        let stmts = lower_rule(expr, &Ctx { family: t.family, sets: &t.sets }).into();
        Ok((ti, ci, NftRule { handle, stmts, comment, counters, text }, has_xt))
    };
    let read_rules = crate::par::map(&rule_items, 2048, read);
    for r in read_rules {
        let (ti, ci, rule, has_xt) = r?;
        let t = &mut rs.tables[ti];
        t.has_xt |= has_xt;
        t.chains[ci].rules.push(rule);
    }
    let _ = unknown_family;
    Ok(rs)
}

fn fam_from_typed(f: nftables::types::NfFamily) -> Family {
    use nftables::types::NfFamily as F;
    match f {
        F::IP => Family::Ip,
        F::IP6 => Family::Ip6,
        F::INet => Family::Inet,
        F::ARP => Family::Arp,
        F::Bridge => Family::Bridge,
        F::NetDev => Family::Netdev,
    }
}

// ------------------------------------------------------------------------------------------------
// Rendering as `nft list ruleset` prints

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn render_expr(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(render_expr).collect::<Vec<_>>().join(","),
        Value::Object(o) => {
            let Some((k, b)) = o.iter().next() else { return "{}".into() };
            match k.as_str() {
                "meta" => {
                    let key = b.get("key").and_then(Value::as_str).unwrap_or("?");
                    match key {
                        "iifname" | "oifname" | "iif" | "oif" | "skuid" | "skgid" | "iiftype" | "oiftype" => key.into(),
                        _ => format!("meta {key}"),
                    }
                }
                "payload" => {
                    if let (Some(p), Some(f)) = (b.get("protocol").and_then(Value::as_str), b.get("field").and_then(Value::as_str)) {
                        format!("{p} {f}")
                    } else {
                        format!("@{},{},{}", b.get("base").and_then(Value::as_str).unwrap_or("?"), b.get("offset").unwrap_or(&Value::Null), b.get("len").unwrap_or(&Value::Null))
                    }
                }
                "ct" => format!("ct {}", b.get("key").and_then(Value::as_str).unwrap_or("?")),
                "fib" => {
                    let flags = match b.get("flags") {
                        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" . "),
                        Some(Value::String(s)) => s.clone(),
                        _ => String::new(),
                    };
                    format!("fib {flags} {}", b.get("result").and_then(Value::as_str).unwrap_or("?"))
                }
                "prefix" => format!("{}/{}", render_expr(b.get("addr").unwrap_or(&Value::Null)), b.get("len").unwrap_or(&Value::Null)),
                "range" => match b.as_array() {
                    Some(a) if a.len() == 2 => format!("{}-{}", render_expr(&a[0]), render_expr(&a[1])),
                    _ => b.to_string(),
                },
                "set" => match b {
                    Value::Array(a) => format!("{{ {} }}", a.iter().map(render_set_item).collect::<Vec<_>>().join(", ")),
                    other => render_expr(other),
                },
                "concat" => b.as_array().map(|a| a.iter().map(render_expr).collect::<Vec<_>>().join(" . ")).unwrap_or_default(),
                "elem" => render_expr(b.get("val").unwrap_or(&Value::Null)),
                "&" | "|" | "^" | "<<" | ">>" => match b.as_array() {
                    Some(a) if a.len() == 2 => format!("{} {k} {}", render_expr(&a[0]), render_expr(&a[1])),
                    _ => b.to_string(),
                },
                "accept" | "drop" | "continue" | "return" => k.clone(),
                "jump" | "goto" => format!("{k} {}", b.get("target").and_then(Value::as_str).unwrap_or("?")),
                "symhash" | "jhash" | "numgen" | "osf" | "socket" | "rt" | "exthdr" | "tcp option" => format!("{k} {}", compact(b)),
                _ => format!("{k} {}", compact(b)),
            }
        }
    }
}

fn render_set_item(v: &Value) -> String {
    match v {
        Value::Array(a) if a.len() == 2 => format!("{} : {}", render_expr(&a[0]), render_expr(&a[1])),
        _ => render_expr(v),
    }
}

fn compact(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

fn is_iface_key(left: &Value) -> bool {
    matches!(left.get("meta").and_then(|m| m.get("key")).and_then(Value::as_str), Some("iifname" | "oifname"))
}

fn render_right(left: &Value, right: &Value) -> String {
    if is_iface_key(left) {
        if let Value::String(s) = right
            && !s.starts_with('@') {
                return quote(s);
            }
        if let Some(Value::Array(a)) = right.get("set") {
            return format!(
                "{{ {} }}",
                a.iter().map(|x| if let Value::String(s) = x { quote(s) } else { render_set_item(x) }).collect::<Vec<_>>().join(", ")
            );
        }
    }
    render_expr(right)
}

pub fn render_stmt(v: &Value) -> String {
    let Some((k, b)) = v.as_object().and_then(|o| o.iter().next()) else { return compact(v) };
    match k.as_str() {
        "match" => {
            let left = b.get("left").unwrap_or(&Value::Null);
            let right = b.get("right").unwrap_or(&Value::Null);
            let op = b.get("op").and_then(Value::as_str).unwrap_or("==");
            let op = match op {
                "==" | "in" => String::new(),
                o => format!("{o} "),
            };
            format!("{} {op}{}", render_expr(left), render_right(left, right))
        }
        "counter" => match b {
            Value::Object(_) => format!(
                "counter packets {} bytes {}",
                b.get("packets").unwrap_or(&Value::from(0)),
                b.get("bytes").unwrap_or(&Value::from(0))
            ),
            Value::String(s) => format!("counter name {}", quote(s)),
            _ => "counter".into(),
        },
        "accept" | "drop" | "continue" | "return" | "notrack" => k.clone(),
        "jump" | "goto" => format!("{k} {}", b.get("target").and_then(Value::as_str).unwrap_or("?")),
        "reject" => match (b.get("type").and_then(Value::as_str), b.get("expr").and_then(Value::as_str)) {
            (Some("tcp reset"), _) => "reject with tcp reset".into(),
            (Some(t), Some(e)) => format!("reject with {t} {e}"),
            (Some(t), None) => format!("reject with {t}"),
            _ => "reject".into(),
        },
        "log" => match b.get("prefix").and_then(Value::as_str) {
            Some(p) => format!("log prefix {}", quote(p)),
            None => "log".into(),
        },
        "limit" => format!(
            "limit rate {}{}/{}",
            if b.get("inv").and_then(Value::as_bool) == Some(true) { "over " } else { "" },
            b.get("rate").unwrap_or(&Value::Null),
            b.get("per").and_then(Value::as_str).unwrap_or("second")
        ),
        "xt" => format!("xt {} {}", b.get("type").and_then(Value::as_str).unwrap_or("?"), quote(b.get("name").and_then(Value::as_str).unwrap_or("?"))),
        "vmap" => format!("{} vmap {}", render_expr(b.get("key").unwrap_or(&Value::Null)), render_expr(b.get("data").unwrap_or(&Value::Null))),
        "dnat" | "snat" | "masquerade" | "redirect" => {
            let mut s = k.clone();
            let addr = b.get("addr").map(render_expr);
            let port = b.get("port").map(render_expr);
            match (addr, port) {
                (Some(a), Some(p)) => s.push_str(&format!(" to {a}:{p}")),
                (Some(a), None) => s.push_str(&format!(" to {a}")),
                (None, Some(p)) => s.push_str(&format!(" to :{p}")),
                (None, None) => {}
            }
            s
        }
        "mangle" => format!("{} set {}", render_expr(b.get("key").unwrap_or(&Value::Null)), render_expr(b.get("value").unwrap_or(&Value::Null))),
        "queue" => "queue".into(),
        _ => format!("{k} {}", compact(b)),
    }
}

// ------------------------------------------------------------------------------------------------
// Lowering to the common model

struct Ctx<'a> {
    family: Family,
    sets: &'a HashMap<String, NftSet>,
}

/// What the left-hand side of a match is: fields, an optional mask, and an implied family.
struct Key {
    fields: Vec<Field>,
    mask: Option<u64>,
    /// `ip saddr` implies IPv4 (2), `ip6 daddr` IPv6 (10): in inet tables, other packets do not match.
    nfproto: Option<u64>,
    /// `fib` results are route types.
    fib: bool,
}

fn key_of(v: &Value) -> Key {
    let mut k = Key { fields: Vec::new(), mask: None, nfproto: None, fib: false };
    add_key(v, &mut k);
    k
}

fn add_key(v: &Value, k: &mut Key) {
    let other = |v: &Value| Field::Other(render_expr(v));
    let Some((name, b)) = v.as_object().and_then(|o| o.iter().next()) else {
        k.fields.push(Field::Other(render_expr(v)));
        return;
    };
    match name.as_str() {
        "concat" => {
            for x in b.as_array().into_iter().flatten() {
                add_key(x, k);
            }
        }
        "&" => match b.as_array() {
            Some(a) if a.len() == 2 && a[1].is_u64() => {
                add_key(&a[0], k);
                k.mask = a[1].as_u64();
            }
            _ => k.fields.push(other(v)),
        },
        "meta" => k.fields.push(match b.get("key").and_then(Value::as_str).unwrap_or("") {
            "iifname" => Field::Iif,
            "oifname" => Field::Oif,
            "l4proto" => Field::L4Proto,
            "nfproto" => Field::NfProto,
            "mark" => Field::Mark,
            "pkttype" => Field::PktType,
            _ => other(v),
        }),
        "ct" => k.fields.push(match (b.get("key").and_then(Value::as_str).unwrap_or(""), b.get("dir")) {
            ("state", None) => Field::CtState,
            ("status", None) => Field::CtStatus,
            _ => other(v),
        }),
        "payload" => {
            let p = b.get("protocol").and_then(Value::as_str).unwrap_or("");
            let f = b.get("field").and_then(Value::as_str).unwrap_or("");
            let field = match (p, f) {
                ("ip", "saddr") | ("ip6", "saddr") => Some(Field::Saddr),
                ("ip", "daddr") | ("ip6", "daddr") => Some(Field::Daddr),
                ("ip", "protocol") | ("ip6", "nexthdr") => Some(Field::L4Proto),
                ("tcp", "dport") => Some(Field::Dport(Some(6))),
                ("tcp", "sport") => Some(Field::Sport(Some(6))),
                ("udp", "dport") => Some(Field::Dport(Some(17))),
                ("udp", "sport") => Some(Field::Sport(Some(17))),
                ("sctp", "dport") => Some(Field::Dport(Some(132))),
                ("sctp", "sport") => Some(Field::Sport(Some(132))),
                ("th", "dport") => Some(Field::Dport(None)),
                ("th", "sport") => Some(Field::Sport(None)),
                ("tcp", "flags") => Some(Field::TcpFlags),
                ("icmp", "type") | ("icmpv6", "type") => Some(Field::IcmpType),
                ("icmp", "code") | ("icmpv6", "code") => Some(Field::IcmpCode),
                _ => None,
            };
            match p {
                "ip" | "icmp" => k.nfproto = Some(2),
                "ip6" | "icmpv6" => k.nfproto = Some(10),
                _ => {}
            }
            if p == "icmp" || p == "icmpv6" {
                // icmp type implies the ICMP protocol of the family
            }
            k.fields.push(field.unwrap_or_else(|| other(v)));
        }
        "fib" => {
            let flags: Vec<&str> = match b.get("flags") {
                Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
                Some(Value::String(s)) => vec![s.as_str()],
                _ => Vec::new(),
            };
            let result = b.get("result").and_then(Value::as_str).unwrap_or("");
            if result == "type" && flags == ["daddr"] {
                k.fields.push(Field::DstType);
                k.fib = true;
            } else if result == "type" && flags == ["saddr"] {
                k.fields.push(Field::SrcType);
                k.fib = true;
            } else {
                k.fields.push(other(v));
            }
        }
        _ => k.fields.push(other(v)),
    }
}

fn fib_type(s: &str) -> Option<u32> {
    Some(match s {
        "unspec" => addrtype::UNSPEC,
        "unicast" => addrtype::UNICAST,
        "local" => addrtype::LOCAL,
        "broadcast" => addrtype::BROADCAST,
        "anycast" => addrtype::ANYCAST,
        "multicast" => addrtype::MULTICAST,
        "blackhole" => addrtype::BLACKHOLE,
        "unreachable" => addrtype::UNREACHABLE,
        "prohibit" => addrtype::PROHIBIT,
        _ => return None,
    })
}

fn service_port(s: &str) -> Option<u64> {
    Some(match s {
        "ssh" => 22,
        "http" => 80,
        "https" => 443,
        "domain" => 53,
        "bootps" => 67,
        "bootpc" => 68,
        "ntp" => 123,
        "mdns" => 5353,
        "dhcpv6-client" => 546,
        "dhcpv6-server" => 547,
        _ => return None,
    })
}

fn icmp_type_name(s: &str) -> Option<u64> {
    Some(match s {
        "echo-reply" => 0,
        "destination-unreachable" => 3,
        "source-quench" => 4,
        "redirect" => 5,
        "echo-request" => 8,
        "router-advertisement" => 9,
        "router-solicitation" => 10,
        "time-exceeded" => 11,
        "parameter-problem" => 12,
        "timestamp-request" => 13,
        "timestamp-reply" => 14,
        "packet-too-big" => 2,
        "nd-router-solicit" => 133,
        "nd-router-advert" => 134,
        "nd-neighbor-solicit" => 135,
        "nd-neighbor-advert" => 136,
        "mld-listener-query" => 130,
        _ => return None,
    })
}

fn pkttype_name(s: &str) -> Option<u64> {
    Some(match s {
        "host" | "unicast" => 0,
        "broadcast" => 1,
        "multicast" => 2,
        "other" => 3,
        _ => return None,
    })
}

/// One constant for one field.
fn val_for(field: &Field, v: &Value, fib: bool, mask: Option<u64>) -> Result<Val, String> {
    let num = |v: &Value| -> Result<u64, String> {
        match v {
            Value::Number(n) => n.as_u64().ok_or_else(|| format!("{n} is not a number hostreach compares")),
            Value::String(s) => {
                if let Some(h) = s.strip_prefix("0x") {
                    return u64::from_str_radix(h, 16).map_err(|_| format!("{s:?} is not a number"));
                }
                s.parse::<u64>()
                    .ok()
                    .or_else(|| match field {
                        Field::L4Proto => ir::proto_number(s).map(u64::from),
                        Field::Sport(_) | Field::Dport(_) => service_port(s),
                        Field::IcmpType => icmp_type_name(s),
                        Field::PktType => pkttype_name(s),
                        Field::NfProto => match s.as_str() {
                            "ipv4" => Some(2),
                            "ipv6" => Some(10),
                            _ => None,
                        },
                        _ => None,
                    })
                    .ok_or_else(|| format!("{s:?} is not a value hostreach knows for {}", crate::eval::field_name(field)))
            }
            _ => Err(format!("{} is not a number", compact(v))),
        }
    };
    if let Some(r) = v.get("range").and_then(Value::as_array) {
        if r.len() != 2 {
            return Err("a range needs two ends".into());
        }
        return match field {
            Field::Saddr | Field::Daddr => {
                let a: IpAddr = r[0].as_str().and_then(|s| s.parse().ok()).ok_or("bad address range")?;
                let b: IpAddr = r[1].as_str().and_then(|s| s.parse().ok()).ok_or("bad address range")?;
                Ok(Val::AddrRange(a, b))
            }
            _ => Ok(Val::Range(num(&r[0])?, num(&r[1])?)),
        };
    }
    if let Some(p) = v.get("prefix") {
        let a = p.get("addr").and_then(Value::as_str).ok_or("prefix without address")?;
        let l = p.get("len").and_then(Value::as_u64).ok_or("prefix without length")?;
        return ir::parse_net(&format!("{a}/{l}")).ok_or_else(|| format!("bad prefix {a}/{l}"));
    }
    if let Some(e) = v.get("elem") {
        return val_for(field, e.get("val").unwrap_or(&Value::Null), fib, mask);
    }
    match field {
        Field::Iif | Field::Oif => {
            let s = v.as_str().ok_or_else(|| format!("{} is not an interface name", compact(v)))?;
            if let Some(p) = s.strip_suffix('*')
                && !p.ends_with('\\') {
                    return Ok(Val::Iface { name: p.to_string(), wildcard: true });
                }
            Ok(Val::Iface { name: s.replace("\\*", "*"), wildcard: false })
        }
        Field::Saddr | Field::Daddr => {
            let s = v.as_str().ok_or_else(|| format!("{} is not an address", compact(v)))?;
            ir::parse_net(s).ok_or_else(|| format!("{s:?} is not an address"))
        }
        Field::CtState | Field::CtStatus | Field::DstType | Field::SrcType => {
            let names: Vec<&Value> = match v {
                Value::Array(a) => a.iter().collect(),
                other => vec![other],
            };
            let mut bits = 0u32;
            for n in names {
                match n {
                    Value::String(s) => {
                        bits |= match field {
                            Field::CtState => ct::state_bit(s),
                            Field::CtStatus => match s.as_str() {
                                "snat" => Some(ct::STATUS_SNAT),
                                "dnat" => Some(ct::STATUS_DNAT),
                                "confirmed" | "assured" | "seen-reply" | "expected" | "dying" => Some(0x10000),
                                _ => None,
                            },
                            _ if fib => fib_type(s),
                            _ => None,
                        }
                        .ok_or_else(|| format!("{s:?} is not a value hostreach knows for {}", crate::eval::field_name(field)))?
                    }
                    Value::Number(x) => bits |= x.as_u64().unwrap_or(0) as u32,
                    _ => return Err(format!("{} is not a flag", compact(n))),
                }
            }
            Ok(Val::Flags(bits))
        }
        Field::Mark | Field::TcpFlags => {
            let n = match v {
                Value::Array(a) => {
                    // tcp flags syn,ack: flag names
                    let mut b = 0;
                    for x in a {
                        b |= tcp_flag(x.as_str().unwrap_or("")).ok_or("unknown TCP flag")?;
                    }
                    b
                }
                Value::String(s) if matches!(field, Field::TcpFlags) => tcp_flag(s).ok_or("unknown TCP flag")?,
                _ => num(v)?,
            };
            Ok(match mask {
                Some(m) => Val::Masked { value: n & m, mask: m },
                None if matches!(field, Field::TcpFlags) => Val::Masked { value: n, mask: 0xff },
                None => Val::num(n),
            })
        }
        _ => Ok(Val::num(num(v)?)),
    }
}

fn tcp_flag(s: &str) -> Option<u64> {
    Some(match s {
        "fin" => 1,
        "syn" => 2,
        "rst" => 4,
        "psh" => 8,
        "ack" => 16,
        "urg" => 32,
        "ecn" => 64,
        "cwr" => 128,
        _ => return None,
    })
}

/// One element (maybe a concatenation) for a key.
fn elem_for(key: &Key, v: &Value) -> Result<Vec<Val>, String> {
    let v = v.get("elem").and_then(|e| e.get("val")).unwrap_or(v);
    if key.fields.len() == 1 {
        return Ok(vec![val_for_key(key, &key.fields[0], v)?]);
    }
    let parts = v.get("concat").and_then(Value::as_array).ok_or_else(|| format!("{} is not a concatenation", compact(v)))?;
    if parts.len() != key.fields.len() {
        return Err("a concatenation of the wrong length".into());
    }
    key.fields.iter().zip(parts).map(|(f, p)| val_for_key(key, f, p)).collect()
}

/// [`val_for`], with `icmpv6 type` names read as ICMPv6's: `icmpv6 type echo-request` is 128, not ICMP's 8.
fn val_for_key(key: &Key, f: &Field, v: &Value) -> Result<Val, String> {
    if matches!(f, Field::IcmpType)
        && key.nfproto == Some(10)
        && let Some(n) = v.as_str().and_then(icmpv6_type_name)
    {
        return Ok(Val::num(n));
    }
    val_for(f, v, key.fib, key.mask)
}

fn icmpv6_type_name(s: &str) -> Option<u64> {
    Some(match s {
        "destination-unreachable" => 1,
        "packet-too-big" => 2,
        "time-exceeded" => 3,
        "parameter-problem" => 4,
        "echo-request" => 128,
        "echo-reply" => 129,
        "mld-listener-query" => 130,
        "mld-listener-report" => 131,
        "mld-listener-done" | "mld-listener-reduction" => 132,
        "nd-router-solicit" => 133,
        "nd-router-advert" => 134,
        "nd-neighbor-solicit" => 135,
        "nd-neighbor-advert" => 136,
        "nd-redirect" => 137,
        "router-renumbering" => 138,
        "ind-neighbor-solicit" => 141,
        "ind-neighbor-advert" => 142,
        "mld2-listener-report" => 143,
        _ => return None,
    })
}

fn elems_of<'v>(right: &'v Value, ctx: &'v Ctx) -> Result<Vec<&'v Value>, String> {
    if let Some(name) = right.as_str().and_then(|s| s.strip_prefix('@')) {
        let set = ctx.sets.get(name).ok_or_else(|| format!("set @{name} is not in the ruleset"))?;
        return Ok(set.elem.iter().collect());
    }
    if let Some(a) = right.get("set") {
        return Ok(match a {
            Value::Array(a) => a.iter().collect(),
            other => vec![other],
        });
    }
    Ok(vec![right])
}

fn verdict_of(v: &Value) -> Option<Verdict> {
    let (k, b) = v.as_object()?.iter().next()?;
    Some(match k.as_str() {
        "accept" => Verdict::Accept,
        "drop" => Verdict::Drop,
        "continue" => Verdict::Continue,
        "return" => Verdict::Return,
        "jump" => Verdict::Jump(b.get("target")?.as_str()?.to_string()),
        "goto" => Verdict::Goto(b.get("target")?.as_str()?.to_string()),
        _ => return None,
    })
}

fn lower_match(e: &Value, b: &Value, ctx: &Ctx, out: &mut Vec<Stmt>) {
    let left = b.get("left").unwrap_or(&Value::Null);
    let right = b.get("right").unwrap_or(&Value::Null);
    let op = b.get("op").and_then(Value::as_str).unwrap_or("==");
    let key = key_of(left);
    let what = || render_stmt(e);
    if let Some(f) = key.fields.iter().find(|f| matches!(f, Field::Other(_))) {
        out.push(Stmt::Test(Test::Unknown { what: what(), reason: format!("{} is not evaluated by hostreach", crate::eval::field_name(f)) }));
        return;
    }
    if let Some(p) = key.nfproto
        && (ctx.family == Family::Inet || ctx.family == Family::Bridge || ctx.family == Family::Netdev) {
            out.push(Stmt::Test(Test::Match { key: smallvec![Field::NfProto], neg: false, any: smallvec![smallvec![Val::num(p)]] }));
        }
    let (neg, cmp) = match op {
        "==" | "in" => (false, None),
        "!=" => (true, None),
        "<" | ">" | "<=" | ">=" | "lt" | "gt" | "le" | "ge" => (false, Some(op)),
        other => {
            out.push(Stmt::Test(Test::Unknown { what: what(), reason: format!("operator {other:?} is not evaluated by hostreach") }));
            return;
        }
    };
    if let Some(cmp) = cmp {
        let n = match (key.fields.as_slice(), right.as_u64()) {
            ([_], Some(n)) => n,
            _ => {
                out.push(Stmt::Test(Test::Unknown { what: what(), reason: "a comparison hostreach does not evaluate".into() }));
                return;
            }
        };
        let r = match cmp {
            "<" | "lt" => Val::Range(0, n.saturating_sub(1)),
            ">" | "gt" => Val::Range(n + 1, u64::MAX),
            "<=" | "le" => Val::Range(0, n),
            _ => Val::Range(n, u64::MAX),
        };
        if (cmp == "<" || cmp == "lt") && n == 0 {
            out.push(Stmt::Test(Test::Match { key: key.fields.into(), neg: true, any: smallvec![smallvec![Val::Range(0, u64::MAX)]] }));
        } else {
            out.push(Stmt::Test(Test::Match { key: key.fields.into(), neg: false, any: smallvec![smallvec![r]] }));
        }
        return;
    }
    let elems = match elems_of(right, ctx) {
        Ok(e) => e,
        Err(reason) => {
            out.push(Stmt::Test(Test::Unknown { what: what(), reason }));
            return;
        }
    };
    // A flag field with a list of names is one element of OR-ed bits.
    let is_flags = matches!(key.fields.as_slice(), [Field::CtState | Field::CtStatus | Field::DstType | Field::SrcType]);
    let mut any = Vec::new();
    if is_flags && right.is_array() {
        match elem_for(&key, right) {
            Ok(e) => any.push(e),
            Err(reason) => {
                out.push(Stmt::Test(Test::Unknown { what: what(), reason }));
                return;
            }
        }
    } else {
        for e in elems {
            match elem_for(&key, e) {
                Ok(e) => any.push(e),
                Err(reason) => {
                    out.push(Stmt::Test(Test::Unknown { what: what(), reason }));
                    return;
                }
            }
        }
    }
    out.push(Stmt::Test(Test::Match { key: key.fields.into(), neg, any: any.into_iter().map(ir::Tuple::from).collect() }));
}

fn lower_vmap(e: &Value, b: &Value, ctx: &Ctx, out: &mut Vec<Stmt>) {
    let key = key_of(b.get("key").unwrap_or(&Value::Null));
    let data = b.get("data").unwrap_or(&Value::Null);
    let what = || render_stmt(e);
    if key.fields.iter().any(|f| matches!(f, Field::Other(_))) {
        out.push(Stmt::Test(Test::Unknown { what: what(), reason: "the verdict map's key is not evaluated by hostreach".into() }));
        return;
    }
    if let Some(p) = key.nfproto
        && ctx.family == Family::Inet {
            out.push(Stmt::Test(Test::Match { key: smallvec![Field::NfProto], neg: false, any: smallvec![smallvec![Val::num(p)]] }));
        }
    let items = match elems_of(data, ctx) {
        Ok(e) => e,
        Err(reason) => {
            out.push(Stmt::Test(Test::Unknown { what: what(), reason }));
            return;
        }
    };
    let mut entries = Vec::new();
    for it in items {
        let Some(pair) = it.as_array().filter(|a| a.len() == 2) else {
            out.push(Stmt::Test(Test::Unknown { what: what(), reason: format!("verdict map element {} is not KEY : VERDICT", compact(it)) }));
            return;
        };
        let Some(verdict) = verdict_of(&pair[1]) else {
            out.push(Stmt::Test(Test::Unknown { what: what(), reason: format!("{} is not a verdict", compact(&pair[1])) }));
            return;
        };
        match elem_for(&key, &pair[0]) {
            Ok(k) => entries.push((k, verdict)),
            Err(reason) => {
                out.push(Stmt::Test(Test::Unknown { what: what(), reason }));
                return;
            }
        }
    }
    out.push(Stmt::Vmap { key: key.fields, entries });
}

fn nat_of(kind: NatKind, b: &Value) -> Stmt {
    let addr = b.get("addr").and_then(Value::as_str).and_then(|s| s.parse::<IpAddr>().ok());
    let port = b.get("port").and_then(Value::as_u64).and_then(|p| u16::try_from(p).ok());
    Stmt::Nat(Nat { kind, addr, port })
}

fn lower_rule(expr: &[Value], ctx: &Ctx) -> Vec<Stmt> {
    let mut out = Vec::new();
    for e in expr {
        let Some((k, b)) = e.as_object().and_then(|o| o.iter().next()) else {
            out.push(Stmt::Test(Test::Unknown { what: compact(e), reason: "not a statement".into() }));
            continue;
        };
        match k.as_str() {
            "match" => lower_match(e, b, ctx, &mut out),
            "counter" => {}
            "accept" => out.push(Stmt::Verdict(Verdict::Accept)),
            "drop" => out.push(Stmt::Verdict(Verdict::Drop)),
            "continue" => out.push(Stmt::Verdict(Verdict::Continue)),
            "return" => out.push(Stmt::Verdict(Verdict::Return)),
            "jump" | "goto" => match b.get("target").and_then(Value::as_str) {
                Some(t) => out.push(Stmt::Verdict(if k == "jump" { Verdict::Jump(t.into()) } else { Verdict::Goto(t.into()) })),
                None => out.push(Stmt::Test(Test::Unknown { what: render_stmt(e), reason: "a jump without a target".into() })),
            },
            "reject" => {
                let text = render_stmt(e);
                let with = text.strip_prefix("reject with ").map(str::to_string).unwrap_or_else(|| match ctx.family {
                    Family::Inet | Family::Bridge | Family::Netdev => "icmpx port-unreachable".into(),
                    Family::Ip6 => "icmpv6 port-unreachable".into(),
                    _ => "icmp port-unreachable".into(),
                });
                out.push(Stmt::Verdict(Verdict::Reject(with)));
            }
            "queue" => out.push(Stmt::Verdict(Verdict::Queue)),
            "log" => out.push(Stmt::Continue(render_stmt(e))),
            "limit" => out.push(Stmt::Test(Test::Assume {
                what: render_stmt(e),
                note: "a rate limit: treated as matching (its bucket is not in the ruleset)".into(),
            })),
            "xt" => {
                let ty = b.get("type").and_then(Value::as_str).unwrap_or("");
                let name = b.get("name").and_then(Value::as_str).unwrap_or("?");
                let reason = "an iptables-nft compat expression: nft -j does not show its options; the rule is evaluated from iptables-save".to_string();
                if ty == "target" {
                    out.push(Stmt::UnknownAction(format!("xt target {name}: {reason}")));
                    out.push(Stmt::Test(Test::Unknown { what: format!("xt target {name}"), reason }));
                } else {
                    out.push(Stmt::Test(Test::Unknown { what: format!("xt match {name}"), reason }));
                }
            }
            "vmap" => lower_vmap(e, b, ctx, &mut out),
            "dnat" => out.push(nat_of(NatKind::Dnat, b)),
            "snat" => out.push(nat_of(NatKind::Snat, b)),
            "masquerade" => out.push(nat_of(NatKind::Masquerade, b)),
            "redirect" => out.push(nat_of(NatKind::Redirect, b)),
            "mangle" => {
                let key = key_of(b.get("key").unwrap_or(&Value::Null));
                match (key.fields.as_slice(), b.get("value").and_then(Value::as_u64)) {
                    ([Field::Mark], Some(v)) => out.push(Stmt::SetMark { value: v as u32, mask: u32::MAX }),
                    _ => out.push(Stmt::UnknownAction(format!("{}: its effect is not modelled", render_stmt(e)))),
                }
            }
            "notrack" | "ct helper" | "ct timeout" | "ct expectation" | "flow" | "set" | "dup" | "fwd" | "secmark" => {
                out.push(Stmt::Continue(render_stmt(e)))
            }
            _ => out.push(Stmt::Test(Test::Unknown { what: render_stmt(e), reason: format!("the {k:?} statement is not evaluated by hostreach") })),
        }
    }
    out
}

/// The ruleset as common-model tables, all of backend `nftables` (the caller relabels iptables-nft ones).
pub fn to_tables(rs: &NftRuleset) -> Vec<ir::Table> {
    rs.tables
        .iter()
        .map(|t| {
            let mut table = ir::Table::new(Backend::Nftables, t.family, t.name.clone());
            for c in &t.chains {
                let rules: Vec<ir::Rule> = c
                    .rules
                    .iter()
                    .map(|r| ir::Rule {
                        stmts: r.stmts.clone(),
                        text: match r.handle {
                            Some(h) => format!("{} # handle {h}", r.text).into(),
                            None => r.text.as_str().into(),
                        },
                        line: None,
                        handle: r.handle,
                        counters: r.counters,
                    })
                    .collect();
                let policy_text = match &c.base_text {
                    Some(b) => format!("chain {} {{ {b} }} (table {} {})", c.name, t.family.as_str(), t.name),
                    None => String::new(),
                };
                table.push_chain(ir::Chain { name: c.name.clone(), rules, base: c.base.clone(), policy_text });
            }
            table
        })
        .collect()
}
