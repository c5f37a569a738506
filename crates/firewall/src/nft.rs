//! `nft -j list ruleset` into the common model.
//!
//! The `nftables` crate's typed schema deserialises the objects it models well (metainfo, tables,
//! chains with their hook, priority, type and policy). Rule statements and set elements are read
//! as plain JSON (the crate's untagged `Expression` refuses numbers above u32, has no model for
//! several statements — `xt` carries no content — and the raw JSON is what the rule text is
//! printed from): from simd-json tapes for rules, or `serde_json::Value` trees, both through one
//! view ([`crate::json::J`]). Anything not understood becomes a not-evaluable test, never a guess.

use crate::error::ParseError;
use crate::json::{self, J, json_string, write_json};
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
    /// As the model shows it: the text `nft list ruleset` prints, then ` # handle N` (built with
    /// the rule, on the core that read it, and shared with the model).
    shown: std::sync::Arc<str>,
    /// Where the ` # handle N` part of `shown` starts.
    text_len: usize,
}

impl NftRule {
    /// As `nft list ruleset` prints it.
    pub fn text(&self) -> &str {
        &self.shown[..self.text_len]
    }
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
    // The whole document is never held as a tree (50,000 rules as serde_json::Value take half a
    // gigabyte). A big document is read in pieces on all cores (read_in_pieces); otherwise the
    // elements of the top-level array are found without being built (serde_json's RawValue) and
    // read one at a time, rules from a reused simd-json tape. Anything unusual about the document
    // takes the plain path, whose errors say what is wrong.
    #[derive(Deserialize)]
    struct Top<'a> {
        #[serde(borrow)]
        nftables: Vec<&'a serde_json::value::RawValue>,
    }
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(8);
    if json.len() >= 1 << 20
        && threads > 1
        && let Some(items) = read_in_pieces(json, 256 << 10)
    {
        return build_from(&items);
    }
    if let Ok(top) = serde_json::from_str::<Top<'_>>(json) {
        return build_from(&top.nftables);
    }
    let root: Value = serde_json::from_str(json).map_err(|e| ParseError::json(format!("not JSON: {e} (at line {}, column {})", e.line(), e.column())))?;
    from_owned(root)
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

fn skip_ws(b: &[u8], mut p: usize) -> usize {
    while p < b.len() && is_ws(b[p]) {
        p += 1;
    }
    p
}

/// The text inside a document's `{"nftables": [ ... ]}`, when that is all the document is.
fn array_body(json: &str) -> Option<&str> {
    let b = json.as_bytes();
    let mut p = skip_ws(b, 0);
    if b.get(p) != Some(&b'{') {
        return None;
    }
    p = skip_ws(b, p + 1);
    if !json[p..].starts_with("\"nftables\"") {
        return None;
    }
    p = skip_ws(b, p + "\"nftables\"".len());
    if b.get(p) != Some(&b':') {
        return None;
    }
    p = skip_ws(b, p + 1);
    if b.get(p) != Some(&b'[') {
        return None;
    }
    let start = p + 1;
    let mut e = b.len();
    while e > start && is_ws(b[e - 1]) {
        e -= 1;
    }
    if e <= start || b[e - 1] != b'}' {
        return None;
    }
    e -= 1;
    while e > start && is_ws(b[e - 1]) {
        e -= 1;
    }
    if e <= start || b[e - 1] != b']' {
        return None;
    }
    Some(&json[start..e - 1])
}

/// A big document read in pieces of about `piece` bytes, on all cores, each piece parsed once
/// (simd-json) and its elements read there: rules read, printed and lowered, anything else kept
/// as a tree for the ordered pass. Instead of one pass over the whole text to find the elements
/// and a parse of each (two fifths of the time on 50,000 rules).
///
/// The array is cut where a rule seems to start (`}, {"rule": {`, which cannot begin a statement
/// or an expression, and cannot be inside a string: its quotes would be escaped there). Each piece
/// must parse as a run of complete values (wrapped in `[ ]`, after its trailing comma is taken
/// off). The first piece starts where the array does, so every cut is then a real boundary between
/// elements: a cut inside an element leaves a piece that does not parse. On any doubt (another
/// shape, a piece that does not parse, a number simd-json refuses) the answer is None and the
/// caller reads the document the slower way.
fn read_in_pieces(json: &str, piece: usize) -> Option<Vec<Piece>> {
    let body = array_body(json)?;
    // simd-json reads its input as if it ended at a NUL byte (found by the fuzzer: a document
    // with NULs in a number, which serde_json refuses, read as valid); JSON has no raw NUL
    if memchr::memchr(0, body.as_bytes()).is_some() {
        return None;
    }
    let finder = memchr::memmem::Finder::new(b"}, {\"rule\": {");
    let mut cuts = vec![0];
    let mut from = piece;
    while from < body.len() {
        let Some(at) = finder.find(&body.as_bytes()[from..]) else { break };
        let cut = from + at + 3;
        cuts.push(cut);
        from = cut + piece;
    }
    cuts.push(body.len());
    let pieces: Vec<(&str, bool)> = cuts.windows(2).map(|w| (&body[w[0]..w[1]], w[1] == body.len())).collect();
    let read = crate::par::map(&pieces, 2, |&(text, last)| read_piece(text, last));
    let mut items = Vec::new();
    for r in read {
        items.extend(r?);
    }
    Some(items)
}

/// For the fuzzer: what [`parse`] reads, and what reading in pieces of `piece` bytes reads (when
/// it does), is what a `serde_json::Value` of the whole document reads. Errors need only agree in
/// being errors (with several wrong elements, the readers may name different ones first).
#[cfg(fuzzing)]
pub fn paths_agree(json: &str, piece: usize) -> bool {
    let reference = serde_json::from_str::<Value>(json).ok().map(|v| from_value(&v));
    let agrees = |r: &Result<NftRuleset, ParseError>| match (&reference, r) {
        (Some(Ok(want)), Ok(got)) => want == got,
        (Some(Ok(_)), Err(_)) | (None | Some(Err(_)), Ok(_)) => false,
        (None | Some(Err(_)), Err(_)) => true,
    };
    agrees(&parse(json)) && read_in_pieces(json, piece).is_none_or(|items| agrees(&build_from(&items)))
}

/// An element of the top-level array as read from a piece of the document.
enum Piece {
    /// A rule, read and lowered; placed by its table's and chain's names once those are known.
    Rule { family: Family, table: compact_str::CompactString, chain: compact_str::CompactString, rule: std::sync::Mutex<Option<NftRule>>, has_xt: bool },
    /// A rule that names a set (read once the sets are known) or is not as nft writes it (read
    /// again to say what is wrong): its JSON text.
    Text(String),
    /// Anything else: a tree, read in order (`rule`: its first key is "rule", as for raw text).
    Tree { value: Value, rule: bool },
}

impl Item for Piece {
    fn is_rule(&self) -> bool {
        match self {
            Piece::Rule { .. } | Piece::Text(_) => true,
            Piece::Tree { rule, .. } => *rule,
        }
    }
    fn value(&self) -> Result<std::borrow::Cow<'_, Value>, String> {
        match self {
            Piece::Tree { value, .. } => Ok(std::borrow::Cow::Borrowed(value)),
            Piece::Text(text) => serde_json::from_str(text).map(std::borrow::Cow::Owned).map_err(|e| e.to_string()),
            Piece::Rule { .. } => Err("a rule".into()),
        }
    }
    fn read_rule(&self, i: usize, place: &Place<'_>) -> Result<ReadRule, ParseError> {
        match self {
            Piece::Tree { value, .. } => read_rule(i, value, place),
            Piece::Text(text) => read_rule_text(i, text, place),
            Piece::Rule { family, table, chain, rule, has_xt } => {
                let f = family.as_str();
                // as read_rule places them
                let Some(ti) = place.tables.iter().rposition(|t| t.family == *family && t.name == table.as_str()) else {
                    return Err(jerr(i, format!("rule of table {f} {table}, which is not listed")));
                };
                let Some(&ci) = place.chain_idx.get(&(ti, chain.as_str())) else {
                    return Err(jerr(i, format!("rule of chain {chain}, which is not listed in table {f} {table}")));
                };
                let rule = rule.lock().ok().and_then(|mut r| r.take()).ok_or_else(|| jerr(i, "a rule read twice"))?;
                Ok((ti, ci, rule, *has_xt))
            }
        }
    }
}

/// One piece of the array's text: complete values separated by commas, and a comma after the
/// last one unless it is the `last` piece. None if it is not exactly that.
fn read_piece(text: &str, last: bool) -> Option<Vec<Piece>> {
    let mut values = text.trim_end_matches([' ', '\t', '\n', '\r']);
    if !last {
        values = values.strip_suffix(',')?;
    }
    on_tape(&["[", values, "]"], piece_items).flatten()
}

fn piece_items(arr: json::Tape<'_>) -> Option<Vec<Piece>> {
    let mut out = Vec::with_capacity(arr.arr_len()?);
    for item in arr.items() {
        // as Item::is_rule reads raw text: the first key, as written
        let rule = item.entries().next().is_some_and(|(k, _)| k == "rule");
        if rule && item.obj_len() != Some(1) {
            // not nft's; the raw-text reader would take it as a rule by its first key as written
            // (maybe escaped) and meet its error in another order: read the document that way
            return None;
        }
        out.push(match rule.then(|| pending_rule(item)).flatten() {
            Some(p) => p,
            None if rule => Piece::Text(json_string(item)),
            None => Piece::Tree { value: serde_json::from_str(&json_string(item)).ok()?, rule },
        });
    }
    Some(out)
}

/// A rule as nft writes it, read before the tables are known; None for anything else (read
/// later from its tree, which also says what is wrong with it).
fn pending_rule(v: json::Tape<'_>) -> Option<Piece> {
    if v.obj_len()? != 1 {
        return None;
    }
    let body = v.get("rule")?;
    let [f, table, chain, expr, handle, comment] = body.fields(["family", "table", "chain", "expr", "handle", "comment"]);
    let (f, table, chain) = (f?.as_str()?, table?.as_str()?, chain?.as_str()?);
    let family = family_of(f)?;
    let expr = match expr {
        Some(a) if a.is_array() => Some(a),
        Some(_) => return None,
        None => None,
    };
    let (rule, has_xt) = rule_of(expr, handle, comment.and_then(J::as_str), family, None)?;
    Some(Piece::Rule { family, table: table.into(), chain: chain.into(), rule: std::sync::Mutex::new(Some(rule)), has_xt })
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

/// One element of the top-level array: already a tree, still raw text, or read with its piece of the document.
trait Item: Sync {
    /// Whether this is surely a `{"rule": ...}` object (for raw text, from its first key; the
    /// rest are read in pass 1, which passes on a rule it finds, and both passes refuse an
    /// object with several keys: nft writes one per element).
    fn is_rule(&self) -> bool;
    fn value(&self) -> Result<std::borrow::Cow<'_, Value>, String>;
    /// Reads element `i`, a rule.
    fn read_rule(&self, i: usize, place: &Place<'_>) -> Result<ReadRule, ParseError>;
}

impl Item for Value {
    fn is_rule(&self) -> bool {
        self.as_object().is_some_and(|o| o.len() == 1 && o.contains_key("rule"))
    }
    fn value(&self) -> Result<std::borrow::Cow<'_, Value>, String> {
        Ok(std::borrow::Cow::Borrowed(self))
    }
    fn read_rule(&self, i: usize, place: &Place<'_>) -> Result<ReadRule, ParseError> {
        read_rule(i, self, place)
    }
}

/// A thread's buffers for reading rules as simd-json tapes, reused from one rule to the next.
struct Scratch {
    text: Vec<u8>,
    buffers: simd_json::Buffers,
    tape: Option<simd_json::tape::Tape<'static>>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> =
        std::cell::RefCell::new(Scratch { text: Vec::new(), buffers: simd_json::Buffers::default(), tape: None });
}

impl Item for &serde_json::value::RawValue {
    fn is_rule(&self) -> bool {
        self.get().strip_prefix('{').is_some_and(|r| r.trim_start().starts_with("\"rule\""))
    }
    fn value(&self) -> Result<std::borrow::Cow<'_, Value>, String> {
        serde_json::from_str(self.get()).map(std::borrow::Cow::Owned).map_err(|e| e.to_string())
    }
    fn read_rule(&self, i: usize, place: &Place<'_>) -> Result<ReadRule, ParseError> {
        read_rule_text(i, self.get(), place)
    }
}

/// Element `i`, a rule as JSON text, read from this thread's reused tape.
fn read_rule_text(i: usize, text: &str, place: &Place<'_>) -> Result<ReadRule, ParseError> {
    match on_tape(&[text], |v| read_rule(i, v, place)) {
        Some(r) => r,
        // serde_json accepted the element and simd-json did not (a number beyond 64 bits), or
        // would read it differently: the tree reads it as the one-pass reader does
        None => {
            let v: Value = serde_json::from_str(text).map_err(|e| jerr(i, e))?;
            read_rule(i, &v, place)
        }
    }
}

/// `f` on the JSON text made of `parts`, parsed into this thread's reused tape; None when
/// simd-json refuses the text or would read it otherwise than serde_json does.
fn on_tape<R>(parts: &[&str], f: impl FnOnce(json::Tape<'_>) -> R) -> Option<R> {
    SCRATCH.with(|cell| {
        let mut guard = cell.borrow_mut();
        let sc: &mut Scratch = &mut guard;
        sc.text.clear();
        for p in parts {
            sc.text.extend_from_slice(p.as_bytes());
        }
        let mut tape = sc.tape.take().unwrap_or_else(simd_json::tape::Tape::null).reset();
        let out = match simd_json::fill_tape(&mut sc.text, &mut sc.buffers, &mut tape) {
            Ok(()) if json::simd_reads_as_serde(parts, &tape) => Some(f(tape.as_value())),
            _ => None,
        };
        sc.tape = Some(tape.reset());
        out
    })
}

/// Where rules go: tables and chains by name.
struct Place<'r> {
    tables: &'r [NftTable],
    chain_idx: &'r HashMap<(usize, &'r str), usize>,
}

/// A rule read: its table and chain (indexes), the rule, and whether it holds `xt` statements.
type ReadRule = (usize, usize, NftRule, bool);

fn read_rule<'a, V: J<'a>>(i: usize, v: V, place: &Place<'_>) -> Result<ReadRule, ParseError> {
    if v.obj_len().is_some_and(|n| n > 1) {
        return Err(jerr(i, "an object with several keys (nft writes one: {\"table\": ...}, {\"rule\": ...})"));
    }
    let body = v.get("rule").ok_or_else(|| jerr(i, "not a rule"))?;
    let [f, table, chain, expr, handle, comment] = body.fields(["family", "table", "chain", "expr", "handle", "comment"]);
    let s = |v: Option<V>| v.and_then(J::as_str);
    let (Some(f), Some(table), Some(chain)) = (s(f), s(table), s(chain)) else {
        return Err(jerr(i, "rule without family, table or chain"));
    };
    let family = family_of(f).ok_or_else(|| jerr(i, format!("unknown family {f:?}")))?;
    // the last table of that name, as pass 1 indexes them
    let Some(ti) = place.tables.iter().rposition(|t| t.family == family && t.name == table) else {
        return Err(jerr(i, format!("rule of table {f} {table}, which is not listed")));
    };
    let Some(&ci) = place.chain_idx.get(&(ti, chain)) else {
        return Err(jerr(i, format!("rule of chain {chain}, which is not listed in table {f} {table}")));
    };
    let expr = match expr {
        Some(a) if a.is_array() => Some(a),
        Some(_) => return Err(jerr(i, "rule \"expr\" is not an array")),
        None => None,
    };
    let t = &place.tables[ti];
    let (rule, has_xt) = rule_of(expr, handle, s(comment), t.family, Some(&t.sets)).ok_or_else(|| jerr(i, "a set the rule names is missing"))?;
    Ok((ti, ci, rule, has_xt))
}

/// A rule's text, counters and lowered statements. `sets`: the table's named sets and maps, None
/// while they are not known yet: then a rule that names one is None, to be read again later.
fn rule_of<'a, V: J<'a>>(expr: Option<V>, handle: Option<V>, comment: Option<&str>, family: Family, sets: Option<&HashMap<String, NftSet>>) -> Option<(NftRule, bool)> {
    let stmts = || expr.into_iter().flat_map(J::items);
    // lowered first: a rule that names a set while the sets are not known stops here
    let mut lowered = Vec::with_capacity(8);
    let cx = Ctx { family, sets, named_set: std::cell::Cell::new(false) };
    lower_rule(stmts(), &cx, &mut lowered);
    if cx.named_set.get() {
        return None;
    }
    let mut counters = None;
    let mut has_xt = false;
    let mut text = String::with_capacity(128);
    for (n, e) in stmts().enumerate() {
        let (xt, counter) = match e.entry() {
            Some((k, b)) if e.obj_len() == Some(1) => (k == "xt", (k == "counter").then_some(b)),
            _ => (e.get("xt").is_some(), e.get("counter")),
        };
        has_xt |= xt;
        if let Some(c) = counter
            && let (Some(p), Some(b)) = (c.get("packets").and_then(J::as_u64), c.get("bytes").and_then(J::as_u64))
        {
            counters = Some((p, b));
        }
        if n > 0 {
            text.push(' ');
        }
        render_stmt_into(e, &mut text);
    }
    let handle = handle.and_then(J::as_u64);
    let comment = comment.map(str::to_string);
    if let Some(cm) = &comment {
        text.push_str(" comment ");
        quote_into(cm, &mut text);
    }
    let text_len = text.len();
    if let Some(h) = handle {
        use std::fmt::Write as _;
        let _ = write!(text, " # handle {h}");
    }
    Some((NftRule { handle, stmts: lowered.into(), comment, counters, shown: text.into(), text_len }, has_xt))
}

fn build_from<I: Item>(items: &[I]) -> Result<NftRuleset, ParseError> {
    let mut rs = NftRuleset { version: None, json_schema_version: None, tables: Vec::new() };
    let mut tidx: HashMap<(Family, String), usize> = HashMap::new();
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
            // stateful objects, and whatever a newer nft lists beside them: no verdict comes from
            // them (a rule that uses one says what it cannot evaluate)
            _ => {}
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
    let place = Place { tables: &rs.tables, chain_idx: &chain_idx };
    let read = |&(i, item): &(usize, &I)| item.read_rule(i, &place);
    let read_rules = crate::par::map(&rule_items, 2048, read);
    for r in read_rules {
        let (ti, ci, rule, has_xt) = r?;
        let t = &mut rs.tables[ti];
        t.has_xt |= has_xt;
        t.chains[ci].rules.push(rule);
    }
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
// Rendering as `nft list ruleset` prints (into one buffer per rule: no string per expression)

fn quote_into(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        if c == '\\' || c == '"' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

fn render_expr<'a, V: J<'a>>(v: V, out: &mut String) {
    if let Some(s) = v.as_str() {
        out.push_str(s);
        return;
    }
    if v.is_array() {
        for (i, x) in v.items().enumerate() {
            if i > 0 {
                out.push(',');
            }
            render_expr(x, out);
        }
        return;
    }
    if !v.is_object() {
        // null, booleans and numbers print as JSON does
        write_json(v, out);
        return;
    }
    let Some((k, b)) = v.entry() else {
        out.push_str("{}");
        return;
    };
    let get = |key: &str| b.get(key).unwrap_or(V::null());
    let get_str = |key: &str| b.get(key).and_then(J::as_str);
    match k {
        "meta" => {
            let key = get_str("key").unwrap_or("?");
            if !matches!(key, "iifname" | "oifname" | "iif" | "oif" | "skuid" | "skgid" | "iiftype" | "oiftype") {
                out.push_str("meta ");
            }
            out.push_str(key);
        }
        "payload" => {
            let [p, f] = b.fields(["protocol", "field"]);
            if let (Some(p), Some(f)) = (p.and_then(J::as_str), f.and_then(J::as_str)) {
                out.push_str(p);
                out.push(' ');
                out.push_str(f);
            } else {
                out.push('@');
                out.push_str(get_str("base").unwrap_or("?"));
                out.push(',');
                write_json(get("offset"), out);
                out.push(',');
                write_json(get("len"), out);
            }
        }
        "ct" => {
            out.push_str("ct ");
            out.push_str(get_str("key").unwrap_or("?"));
        }
        "fib" => {
            out.push_str("fib ");
            match b.get("flags") {
                Some(f) if f.is_array() => {
                    for (i, s) in f.items().filter_map(J::as_str).enumerate() {
                        if i > 0 {
                            out.push_str(" . ");
                        }
                        out.push_str(s);
                    }
                }
                Some(f) => out.push_str(f.as_str().unwrap_or("")),
                None => {}
            }
            out.push(' ');
            out.push_str(get_str("result").unwrap_or("?"));
        }
        "prefix" => {
            render_expr(get("addr"), out);
            out.push('/');
            write_json(get("len"), out);
        }
        "range" => match b.pair() {
            Some((x, y)) => {
                render_expr(x, out);
                out.push('-');
                render_expr(y, out);
            }
            None => write_json(b, out),
        },
        "set" if b.is_array() => {
            out.push_str("{ ");
            for (i, x) in b.items().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                render_set_item(x, out);
            }
            out.push_str(" }");
        }
        "set" => render_expr(b, out),
        "concat" => {
            for (i, x) in b.items().enumerate() {
                if i > 0 {
                    out.push_str(" . ");
                }
                render_expr(x, out);
            }
        }
        "elem" => render_expr(get("val"), out),
        "&" | "|" | "^" | "<<" | ">>" => match b.pair() {
            Some((x, y)) => {
                render_expr(x, out);
                out.push(' ');
                out.push_str(k);
                out.push(' ');
                render_expr(y, out);
            }
            None => write_json(b, out),
        },
        "accept" | "drop" | "continue" | "return" => out.push_str(k),
        "jump" | "goto" => {
            out.push_str(k);
            out.push(' ');
            out.push_str(get_str("target").unwrap_or("?"));
        }
        _ => {
            out.push_str(k);
            out.push(' ');
            write_json(b, out);
        }
    }
}

fn render_set_item<'a, V: J<'a>>(v: V, out: &mut String) {
    match v.pair() {
        Some((x, y)) => {
            render_expr(x, out);
            out.push_str(" : ");
            render_expr(y, out);
        }
        None => render_expr(v, out),
    }
}

fn is_iface_key<'a, V: J<'a>>(left: V) -> bool {
    matches!(left.get("meta").and_then(|m| m.get("key")).and_then(J::as_str), Some("iifname" | "oifname"))
}

fn render_right<'a, V: J<'a>>(left: V, right: V, out: &mut String) {
    if is_iface_key(left) {
        if let Some(s) = right.as_str()
            && !s.starts_with('@')
        {
            quote_into(s, out);
            return;
        }
        if let Some(a) = right.get("set")
            && a.is_array()
        {
            out.push_str("{ ");
            for (i, x) in a.items().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                match x.as_str() {
                    Some(s) => quote_into(s, out),
                    None => render_set_item(x, out),
                }
            }
            out.push_str(" }");
            return;
        }
    }
    render_expr(right, out)
}

/// One statement as `nft list ruleset` prints it.
pub fn render_stmt(v: &Value) -> String {
    stmt_text(v)
}

fn stmt_text<'a, V: J<'a>>(v: V) -> String {
    let mut out = String::new();
    render_stmt_into(v, &mut out);
    out
}

fn render_stmt_into<'a, V: J<'a>>(v: V, out: &mut String) {
    let Some((k, b)) = v.entry() else {
        write_json(v, out);
        return;
    };
    let get = |key: &str| b.get(key).unwrap_or(V::null());
    let get_str = |key: &str| b.get(key).and_then(J::as_str);
    match k {
        "match" => {
            let [left, right, op] = b.fields(["left", "right", "op"]);
            let left = left.unwrap_or(V::null());
            render_expr(left, out);
            out.push(' ');
            match op.and_then(J::as_str).unwrap_or("==") {
                "==" | "in" => {}
                o => {
                    out.push_str(o);
                    out.push(' ');
                }
            }
            render_right(left, right.unwrap_or(V::null()), out);
        }
        "counter" => {
            if b.is_object() {
                out.push_str("counter packets ");
                match b.get("packets") {
                    Some(p) => write_json(p, out),
                    None => out.push('0'),
                }
                out.push_str(" bytes ");
                match b.get("bytes") {
                    Some(p) => write_json(p, out),
                    None => out.push('0'),
                }
            } else if let Some(s) = b.as_str() {
                out.push_str("counter name ");
                quote_into(s, out);
            } else {
                out.push_str("counter");
            }
        }
        "accept" | "drop" | "continue" | "return" | "notrack" => out.push_str(k),
        "jump" | "goto" => {
            out.push_str(k);
            out.push(' ');
            out.push_str(get_str("target").unwrap_or("?"));
        }
        "reject" => {
            out.push_str("reject");
            match (get_str("type"), get_str("expr")) {
                (Some("tcp reset"), _) => out.push_str(" with tcp reset"),
                (Some(t), e) => {
                    out.push_str(" with ");
                    out.push_str(t);
                    if let Some(e) = e {
                        out.push(' ');
                        out.push_str(e);
                    }
                }
                _ => {}
            }
        }
        "log" => {
            out.push_str("log");
            if let Some(p) = get_str("prefix") {
                out.push_str(" prefix ");
                quote_into(p, out);
            }
        }
        "limit" => {
            out.push_str("limit rate ");
            if b.get("inv").and_then(J::as_bool) == Some(true) {
                out.push_str("over ");
            }
            write_json(get("rate"), out);
            out.push('/');
            out.push_str(get_str("per").unwrap_or("second"));
        }
        "xt" => {
            out.push_str("xt ");
            out.push_str(get_str("type").unwrap_or("?"));
            out.push(' ');
            quote_into(get_str("name").unwrap_or("?"), out);
        }
        "vmap" => {
            render_expr(get("key"), out);
            out.push_str(" vmap ");
            render_expr(get("data"), out);
        }
        "dnat" | "snat" | "masquerade" | "redirect" => {
            out.push_str(k);
            match (b.get("addr"), b.get("port")) {
                (Some(a), Some(p)) => {
                    out.push_str(" to ");
                    render_expr(a, out);
                    out.push(':');
                    render_expr(p, out);
                }
                (Some(a), None) => {
                    out.push_str(" to ");
                    render_expr(a, out);
                }
                (None, Some(p)) => {
                    out.push_str(" to :");
                    render_expr(p, out);
                }
                (None, None) => {}
            }
        }
        "mangle" => {
            render_expr(get("key"), out);
            out.push_str(" set ");
            render_expr(get("value"), out);
        }
        "queue" => out.push_str("queue"),
        _ => {
            out.push_str(k);
            out.push(' ');
            write_json(b, out);
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Lowering to the common model

struct Ctx<'a> {
    family: Family,
    /// None: not known yet (see [`rule_of`]).
    sets: Option<&'a HashMap<String, NftSet>>,
    /// Set when the rule names a set while `sets` is None.
    named_set: std::cell::Cell<bool>,
}

/// What the left-hand side of a match is: fields, an optional mask, and an implied family.
struct Key {
    fields: ir::Fields,
    mask: Option<u64>,
    /// `ip saddr` implies IPv4 (2), `ip6 daddr` IPv6 (10): in inet tables, other packets do not match.
    nfproto: Option<u64>,
    /// `fib` results are route types.
    fib: bool,
}

fn key_of<'a, V: J<'a>>(v: V) -> Key {
    let mut k = Key { fields: ir::Fields::new(), mask: None, nfproto: None, fib: false };
    add_key(v, &mut k);
    k
}

fn expr_text<'a, V: J<'a>>(v: V) -> String {
    let mut s = String::new();
    render_expr(v, &mut s);
    s
}

fn add_key<'a, V: J<'a>>(v: V, k: &mut Key) {
    let other = |v: V| Field::Other(expr_text(v));
    let Some((name, b)) = v.entry() else {
        k.fields.push(Field::Other(expr_text(v)));
        return;
    };
    match name {
        "concat" => {
            for x in b.items() {
                add_key(x, k);
            }
        }
        "&" => match b.pair() {
            Some((x, m)) if m.as_u64().is_some() => {
                add_key(x, k);
                k.mask = m.as_u64();
            }
            _ => k.fields.push(other(v)),
        },
        "meta" => k.fields.push(match b.get("key").and_then(J::as_str).unwrap_or("") {
            "iifname" => Field::Iif,
            "oifname" => Field::Oif,
            "l4proto" => Field::L4Proto,
            "nfproto" => Field::NfProto,
            "mark" => Field::Mark,
            "pkttype" => Field::PktType,
            _ => other(v),
        }),
        "ct" => k.fields.push(match (b.get("key").and_then(J::as_str).unwrap_or(""), b.get("dir").is_some()) {
            ("state", false) => Field::CtState,
            ("status", false) => Field::CtStatus,
            _ => other(v),
        }),
        "payload" => {
            let [p, f] = b.fields(["protocol", "field"]);
            let p = p.and_then(J::as_str).unwrap_or("");
            let f = f.and_then(J::as_str).unwrap_or("");
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
            let flags: smallvec::SmallVec<[&str; 2]> = match b.get("flags") {
                Some(a) if a.is_array() => a.items().filter_map(J::as_str).collect(),
                Some(f) => f.as_str().into_iter().collect(),
                None => smallvec::SmallVec::new(),
            };
            let result = b.get("result").and_then(J::as_str).unwrap_or("");
            if result == "type" && flags.as_slice() == ["daddr"] {
                k.fields.push(Field::DstType);
                k.fib = true;
            } else if result == "type" && flags.as_slice() == ["saddr"] {
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
fn val_for<'a, V: J<'a>>(field: &Field, v: V, fib: bool, mask: Option<u64>) -> Result<Val, String> {
    let num = |v: V| -> Result<u64, String> {
        if v.is_number() {
            return v.as_u64().ok_or_else(|| format!("{} is not a number hostreach compares", json_string(v)));
        }
        match v.as_str() {
            Some(s) => {
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
                        Field::NfProto => match s {
                            "ipv4" => Some(2),
                            "ipv6" => Some(10),
                            _ => None,
                        },
                        _ => None,
                    })
                    .ok_or_else(|| format!("{s:?} is not a value hostreach knows for {}", crate::eval::field_name(field)))
            }
            None => Err(format!("{} is not a number", json_string(v))),
        }
    };
    if let Some(r) = v.get("range").filter(|r| r.is_array()) {
        let Some((r0, r1)) = r.pair() else {
            return Err("a range needs two ends".into());
        };
        return match field {
            Field::Saddr | Field::Daddr => {
                let a: IpAddr = r0.as_str().and_then(|s| s.parse().ok()).ok_or("bad address range")?;
                let b: IpAddr = r1.as_str().and_then(|s| s.parse().ok()).ok_or("bad address range")?;
                Ok(Val::AddrRange(a, b))
            }
            _ => Ok(Val::Range(num(r0)?, num(r1)?)),
        };
    }
    if let Some(p) = v.get("prefix") {
        let a = p.get("addr").and_then(J::as_str).ok_or("prefix without address")?;
        let l = p.get("len").and_then(J::as_u64).ok_or("prefix without length")?;
        let addr: IpAddr = a.parse().map_err(|_| format!("bad prefix {a}/{l}"))?;
        return match u8::try_from(l) {
            Ok(len) if len <= if addr.is_ipv4() { 32 } else { 128 } => Ok(Val::Net { addr, len }),
            _ => Err(format!("bad prefix {a}/{l}")),
        };
    }
    if let Some(e) = v.get("elem") {
        return val_for(field, e.get("val").unwrap_or(V::null()), fib, mask);
    }
    match field {
        Field::Iif | Field::Oif => {
            let s = v.as_str().ok_or_else(|| format!("{} is not an interface name", json_string(v)))?;
            if let Some(p) = s.strip_suffix('*')
                && !p.ends_with('\\') {
                    return Ok(Val::Iface { name: p.to_string(), wildcard: true });
                }
            Ok(Val::Iface { name: s.replace("\\*", "*"), wildcard: false })
        }
        Field::Saddr | Field::Daddr => {
            let s = v.as_str().ok_or_else(|| format!("{} is not an address", json_string(v)))?;
            ir::parse_net(s).ok_or_else(|| format!("{s:?} is not an address"))
        }
        Field::CtState | Field::CtStatus | Field::DstType | Field::SrcType => {
            let names: smallvec::SmallVec<[V; 4]> = if v.is_array() { v.items().collect() } else { smallvec![v] };
            let mut bits = 0u32;
            for n in names {
                match n.as_str() {
                    Some(s) => {
                        bits |= match field {
                            Field::CtState => ct::state_bit(s),
                            Field::CtStatus => match s {
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
                    None if n.is_number() => bits |= n.as_u64().unwrap_or(0) as u32,
                    None => return Err(format!("{} is not a flag", json_string(n))),
                }
            }
            Ok(Val::Flags(bits))
        }
        Field::Mark | Field::TcpFlags => {
            let n = if v.is_array() {
                // tcp flags syn,ack: flag names
                let mut b = 0;
                for x in v.items() {
                    b |= tcp_flag(x.as_str().unwrap_or("")).ok_or("unknown TCP flag")?;
                }
                b
            } else if let (Some(s), Field::TcpFlags) = (v.as_str(), field) {
                tcp_flag(s).ok_or("unknown TCP flag")?
            } else {
                num(v)?
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
fn elem_for<'a, V: J<'a>>(key: &Key, v: V) -> Result<ir::Tuple, String> {
    let v = v.get("elem").and_then(|e| e.get("val")).unwrap_or(v);
    if key.fields.len() == 1 {
        return Ok(smallvec![val_for_key(key, &key.fields[0], v)?]);
    }
    let parts = v.get("concat").filter(|p| p.is_array()).ok_or_else(|| format!("{} is not a concatenation", json_string(v)))?;
    if parts.arr_len() != Some(key.fields.len()) {
        return Err("a concatenation of the wrong length".into());
    }
    key.fields.iter().zip(parts.items()).map(|(f, p)| val_for_key(key, f, p)).collect()
}

/// [`val_for`], with `icmpv6 type` names read as ICMPv6's: `icmpv6 type echo-request` is 128, not ICMP's 8.
fn val_for_key<'a, V: J<'a>>(key: &Key, f: &Field, v: V) -> Result<Val, String> {
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

/// What a match or a verdict map compares with: a named set (read with the ruleset, as a tree),
/// an anonymous set, or one value (both in the rule).
enum Elems<'s, V> {
    Named(&'s [Value]),
    Inline(V),
    One(V),
}

fn elems_of<'a, 's, V: J<'a>>(right: V, ctx: &Ctx<'s>) -> Result<Elems<'s, V>, String> {
    if let Some(name) = right.as_str().and_then(|s| s.strip_prefix('@')) {
        let Some(sets) = ctx.sets else {
            ctx.named_set.set(true);
            return Err(String::new());
        };
        let set = sets.get(name).ok_or_else(|| format!("set @{name} is not in the ruleset"))?;
        return Ok(Elems::Named(&set.elem));
    }
    if let Some(a) = right.get("set") {
        return Ok(if a.is_array() { Elems::Inline(a) } else { Elems::One(a) });
    }
    Ok(Elems::One(right))
}

/// `f` on each element, in order; the first error stops.
fn each_elem<'a, 's, V: J<'a>, T>(
    elems: Elems<'s, V>,
    mut f1: impl FnMut(V) -> Result<T, String>,
    mut f2: impl FnMut(&'s Value) -> Result<T, String>,
) -> Result<Vec<T>, String> {
    match elems {
        Elems::Named(e) => e.iter().map(&mut f2).collect(),
        Elems::Inline(a) => a.items().map(&mut f1).collect(),
        Elems::One(v) => Ok(vec![f1(v)?]),
    }
}

fn verdict_of<'a, V: J<'a>>(v: V) -> Option<Verdict> {
    let (k, b) = v.entry()?;
    Some(match k {
        "accept" => Verdict::Accept,
        "drop" => Verdict::Drop,
        "continue" => Verdict::Continue,
        "return" => Verdict::Return,
        "jump" => Verdict::Jump(b.get("target")?.as_str()?.to_string()),
        "goto" => Verdict::Goto(b.get("target")?.as_str()?.to_string()),
        _ => return None,
    })
}

fn lower_match<'a, V: J<'a>>(e: V, b: V, ctx: &Ctx, out: &mut Vec<Stmt>) {
    let [left, right, op] = b.fields(["left", "right", "op"]);
    let (left, right) = (left.unwrap_or(V::null()), right.unwrap_or(V::null()));
    let op = op.and_then(J::as_str).unwrap_or("==");
    let key = key_of(left);
    let what = || stmt_text(e);
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
            ">" | "gt" => Val::Range(n.saturating_add(1), u64::MAX),
            "<=" | "le" => Val::Range(0, n),
            _ => Val::Range(n, u64::MAX),
        };
        // nothing is below 0 or above the largest number
        if ((cmp == "<" || cmp == "lt") && n == 0) || ((cmp == ">" || cmp == "gt") && n == u64::MAX) {
            out.push(Stmt::Test(Test::Match { key: key.fields, neg: true, any: smallvec![smallvec![Val::Range(0, u64::MAX)]] }));
        } else {
            out.push(Stmt::Test(Test::Match { key: key.fields, neg: false, any: smallvec![smallvec![r]] }));
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
    let any: Result<ir::Alts, String> = if is_flags && right.is_array() {
        elem_for(&key, right).map(|e| smallvec![e])
    } else {
        each_elem(elems, |e| elem_for(&key, e), |e| elem_for(&key, e)).map(ir::Alts::from_vec)
    };
    match any {
        Ok(any) => out.push(Stmt::Test(Test::Match { key: key.fields, neg, any })),
        Err(reason) => out.push(Stmt::Test(Test::Unknown { what: what(), reason })),
    }
}

fn lower_vmap<'a, V: J<'a>>(e: V, b: V, ctx: &Ctx, out: &mut Vec<Stmt>) {
    let key = key_of(b.get("key").unwrap_or(V::null()));
    let data = b.get("data").unwrap_or(V::null());
    let what = || stmt_text(e);
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
    match each_elem(items, |it| vmap_entry(&key, it), |it| vmap_entry(&key, it)) {
        Ok(entries) => out.push(Stmt::Vmap { key: key.fields.into_vec(), entries }),
        Err(reason) => out.push(Stmt::Test(Test::Unknown { what: what(), reason })),
    }
}

fn vmap_entry<'a, W: J<'a>>(key: &Key, it: W) -> Result<(Vec<Val>, Verdict), String> {
    let (k, v) = it.pair().ok_or_else(|| format!("verdict map element {} is not KEY : VERDICT", json_string(it)))?;
    let verdict = verdict_of(v).ok_or_else(|| format!("{} is not a verdict", json_string(v)))?;
    Ok((elem_for(key, k)?.into_vec(), verdict))
}

fn nat_of<'a, V: J<'a>>(kind: NatKind, b: V) -> Stmt {
    let addr = b.get("addr").and_then(J::as_str).and_then(|s| s.parse::<IpAddr>().ok());
    let port = b.get("port").and_then(J::as_u64).and_then(|p| u16::try_from(p).ok());
    Stmt::Nat(Nat { kind, addr, port })
}

fn lower_rule<'a, V: J<'a>>(expr: impl Iterator<Item = V>, ctx: &Ctx, out: &mut Vec<Stmt>) {
    for e in expr {
        let Some((k, b)) = e.entry() else {
            out.push(Stmt::Test(Test::Unknown { what: json_string(e), reason: "not a statement".into() }));
            continue;
        };
        match k {
            "match" => lower_match(e, b, ctx, out),
            "counter" => {}
            "accept" => out.push(Stmt::Verdict(Verdict::Accept)),
            "drop" => out.push(Stmt::Verdict(Verdict::Drop)),
            "continue" => out.push(Stmt::Verdict(Verdict::Continue)),
            "return" => out.push(Stmt::Verdict(Verdict::Return)),
            "jump" | "goto" => match b.get("target").and_then(J::as_str) {
                Some(t) => out.push(Stmt::Verdict(if k == "jump" { Verdict::Jump(t.into()) } else { Verdict::Goto(t.into()) })),
                None => out.push(Stmt::Test(Test::Unknown { what: stmt_text(e), reason: "a jump without a target".into() })),
            },
            "reject" => {
                let text = stmt_text(e);
                let with = text.strip_prefix("reject with ").map(str::to_string).unwrap_or_else(|| match ctx.family {
                    Family::Inet | Family::Bridge | Family::Netdev => "icmpx port-unreachable".into(),
                    Family::Ip6 => "icmpv6 port-unreachable".into(),
                    _ => "icmp port-unreachable".into(),
                });
                out.push(Stmt::Verdict(Verdict::Reject(with)));
            }
            "queue" => out.push(Stmt::Verdict(Verdict::Queue)),
            "log" => out.push(Stmt::Continue(stmt_text(e))),
            "limit" => out.push(Stmt::Test(Test::Assume {
                what: stmt_text(e),
                note: "a rate limit: treated as matching (its bucket is not in the ruleset)".into(),
            })),
            "xt" => {
                let ty = b.get("type").and_then(J::as_str).unwrap_or("");
                let name = b.get("name").and_then(J::as_str).unwrap_or("?");
                let reason = "an iptables-nft compat expression: nft -j does not show its options; the rule is evaluated from iptables-save".to_string();
                if ty == "target" {
                    out.push(Stmt::UnknownAction(format!("xt target {name}: {reason}")));
                    out.push(Stmt::Test(Test::Unknown { what: format!("xt target {name}"), reason }));
                } else {
                    out.push(Stmt::Test(Test::Unknown { what: format!("xt match {name}"), reason }));
                }
            }
            "vmap" => lower_vmap(e, b, ctx, out),
            "dnat" => out.push(nat_of(NatKind::Dnat, b)),
            "snat" => out.push(nat_of(NatKind::Snat, b)),
            "masquerade" => out.push(nat_of(NatKind::Masquerade, b)),
            "redirect" => out.push(nat_of(NatKind::Redirect, b)),
            "mangle" => {
                let key = key_of(b.get("key").unwrap_or(V::null()));
                match (key.fields.as_slice(), b.get("value").and_then(J::as_u64)) {
                    ([Field::Mark], Some(v)) => out.push(Stmt::SetMark { value: v as u32, mask: u32::MAX }),
                    _ => out.push(Stmt::UnknownAction(format!("{}: its effect is not modelled", stmt_text(e)))),
                }
            }
            "notrack" | "ct helper" | "ct timeout" | "ct expectation" | "flow" | "set" | "dup" | "fwd" | "secmark" => {
                out.push(Stmt::Continue(stmt_text(e)))
            }
            _ => out.push(Stmt::Test(Test::Unknown { what: stmt_text(e), reason: format!("the {k:?} statement is not evaluated by hostreach") })),
        }
    }
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
                        text: r.shown.clone(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What a `serde_json::Value` of the whole document reads: the reference for the fast paths.
    fn one_pass(json: &str) -> Option<Result<NftRuleset, ParseError>> {
        serde_json::from_str::<Value>(json).ok().map(|v| from_value(&v))
    }

    /// [`parse`] and the pieces read what the reference reads (an error where it has one).
    fn agree(doc: &str) {
        let reference = one_pass(doc);
        let parsed = parse(doc);
        match &reference {
            Some(r) => assert!(&parsed == r, "parse: {:?} / {:?}", parsed.as_ref().err(), r.as_ref().err()),
            None => assert!(parsed.is_err(), "parse read what serde_json refuses"),
        }
        for piece in [1, 64, 4096] {
            if let Some(p) = in_pieces(doc, piece) {
                assert!(Some(&p) == reference.as_ref(), "{piece}-byte pieces: {:?} / {:?}", p.as_ref().err(), reference.as_ref().map(|r| r.as_ref().err()));
            }
        }
    }

    fn in_pieces(json: &str, piece: usize) -> Option<Result<NftRuleset, ParseError>> {
        read_in_pieces(json, piece).map(|items| build_from(&items))
    }

    /// Two tables (the second's set, chain and rules after the first's rules), rules naming a
    /// set, and whatever `comment` and `extra` (more statements) say.
    fn doc(comments: &[String], extra: &str) -> String {
        let rule = |i: usize, table: &str, c: &str| {
            format!(
                r#"{{"rule": {{"family": "inet", "table": "{table}", "chain": "c", "handle": {i}, "comment": {}, "expr": [{{"match": {{"op": "==", "left": {{"payload": {{"protocol": "tcp", "field": "dport"}}}}, "right": {}}}}}, {{"counter": {{"packets": {i}, "bytes": 0}}}}{extra}, {{"accept": null}}]}}}}"#,
                serde_json::to_string(c).unwrap(),
                if i.is_multiple_of(7) { "\"@ports\"".to_string() } else { i.to_string() }
            )
        };
        let half = comments.len() / 2;
        let a: Vec<String> = comments[..half].iter().enumerate().map(|(i, c)| rule(i, "a", c)).collect();
        let b: Vec<String> = comments[half..].iter().enumerate().map(|(i, c)| rule(i, "b", c)).collect();
        let head = |t: &str| {
            format!(
                r#"{{"table": {{"family": "inet", "name": "{t}"}}}}, {{"set": {{"family": "inet", "table": "{t}", "name": "ports", "type": "inet_service", "elem": [22, 443]}}}}, {{"chain": {{"family": "inet", "table": "{t}", "name": "c", "type": "filter", "hook": "input", "prio": 0, "policy": "accept"}}}}"#
            )
        };
        let mut items = vec![r#"{"metainfo": {"version": "1.0.6", "json_schema_version": 1}}"#.to_string(), head("a")];
        items.extend(a);
        items.push(head("b"));
        items.extend(b);
        format!(r#"{{"nftables": [{}]}}"#, items.join(", "))
    }

    #[test]
    fn pieces_read_like_one_pass() {
        let comments: Vec<String> = (0..2000).map(|i| format!("client {i}")).collect();
        let d = doc(&comments, "");
        let whole = one_pass(&d).unwrap();
        assert!(whole.as_ref().is_ok_and(|r| r.tables.len() == 2 && r.tables[1].chains[0].rules.len() == 1000));
        for piece in [1, 100, 4096, 1 << 20] {
            let p = in_pieces(&d, piece);
            assert!(p.is_some(), "the pieces are read on a plain document ({piece} bytes)");
            assert!(p.as_ref() == Some(&whole), "{piece} bytes");
        }
        // errors too: the first by position, with its index
        let bad = d.replacen(r#""chain": "c", "handle": 5,"#, r#""chain": "nope", "handle": 5,"#, 1);
        let whole = one_pass(&bad).unwrap();
        assert!(whole.as_ref().is_err_and(|e| e.to_string().contains("nftables[9]") && e.to_string().contains("nope")), "{whole:?}");
        assert_eq!(in_pieces(&bad, 100), Some(whole));
    }

    #[test]
    fn cuts_inside_elements_are_caught() {
        // what a cut looks for, inside rules: a statement list holding an object keyed "rule"
        // (not nft's, but JSON), and comments (whose quotes are escaped: never a match)
        let comments: Vec<String> = (0..600).map(|i| format!("}}, {{\"rule\": {{ {i}")).collect();
        let d = doc(&comments, r#", {"counter": {"packets": 0}}, {"rule": {"x": 1}}"#);
        let whole = one_pass(&d).unwrap();
        let mut fell_back = 0;
        for piece in [1, 10, 100, 1000, 10_000] {
            let p = in_pieces(&d, piece);
            fell_back += usize::from(p.is_none());
            assert!(p.is_none() || p.as_ref() == Some(&whole), "{piece} bytes");
        }
        assert!(fell_back > 0, "the cuts did land inside elements");
    }

    #[test]
    fn other_shapes_are_not_read_in_pieces() {
        let d = doc(&vec!["a".to_string(); 50], "");
        let trailing = format!("{}, ]}}", &d[..d.len() - 2]);
        assert!(one_pass(&trailing).is_none());
        agree(&trailing);
        assert!(in_pieces(&trailing, 100).is_none());
        let extra_key = format!("{}, \"x\": 1}}", &d[..d.len() - 1]);
        assert!(in_pieces(&extra_key, 100).is_none());
        assert!(in_pieces(r#"{"nftables": []}"#, 100).is_some_and(|r| r.is_ok_and(|r| r.tables.is_empty())));
        assert!(in_pieces(r#"[{"nftables": []}]"#, 100).is_none());
        // what serde_json refuses and simd-json might take: the pieces must refuse it too
        for (from, to) in [
            (r#""handle": 3,"#, "\"handle\": 3\0\0\0,"),
            (r#""comment": "a""#, "\"comment\": \"a\0\""),
            (r#""comment": "a""#, r#""comment": "a \ud800""#),
            (r#""comment": "a""#, r#""comment": "a \udc00\ud800""#),
            (r#""comment": "a""#, "\"comment\": \"a\tb\""),
            (r#""comment": "a""#, "\"comment\": \"a\u{1}b\""),
            (r#""handle": 3,"#, r#""handle": 1e400,"#),
            (r#""handle": 3,"#, r#""handle": 03,"#),
            (r#""handle": 3,"#, r#""handle": 3.,"#),
            (r#""handle": 3,"#, r#""handle": -,"#),
            (r#""handle": 3,"#, r#""handle": tru,"#),
            (r#""handle": 3,"#, r#""handle": 3 4,"#),
        ] {
            let bad = d.replacen(from, to, 1);
            assert_ne!(bad, d);
            let p = in_pieces(&bad, 100);
            assert!(p.is_none() || p == one_pass(&bad), "{to:?}: {:?} / {:?}", p.map(|r| r.is_ok()), one_pass(&bad).map(|r| r.is_ok()));
        }
        // a number simd-json does not take: the slower way
        let big = d.replacen(r#""packets": 3,"#, r#""packets": 123456789012345678901234567890,"#, 1);
        assert!(in_pieces(&big, 100).is_none());
        assert!(one_pass(&big).is_some());
    }

    /// What simd-json reads otherwise than serde_json, or the tape's reader would not survive:
    /// found by a review of the fast paths, each read as serde_json reads it.
    #[test]
    fn fast_paths_read_what_serde_json_reads() {
        let d = doc(&(0..40).map(|i| format!("c{i}")).collect::<Vec<_>>(), "");
        agree(&d);
        let nest = |depth: usize| format!(r#", {{"foo": {}"x"{}}}"#, "[".repeat(depth), "]".repeat(depth));
        for (what, from, to) in [
            ("nesting deeper than serde_json reads", r#"{"accept": null}"#.to_string(), format!(r#"{{"accept": null}}{}"#, nest(200))),
            ("nesting that would overflow the stack", r#"{"accept": null}"#.to_string(), format!(r#"{{"accept": null}}{}"#, nest(100_000))),
            ("nesting serde_json reads", r#"{"accept": null}"#.to_string(), format!(r#"{{"accept": null}}{}"#, nest(40))),
            ("a lone surrogate", r#""comment": "c3""#.to_string(), r#""comment": "a\ud800b""#.to_string()),
            ("a surrogate pair", r#""comment": "c3""#.to_string(), r#""comment": "a\ud83d\ude00b""#.to_string()),
            ("-0", r#""handle": 3,"#.to_string(), r#""handle": -0,"#.to_string()),
            ("a float", r#"{"accept": null}"#.to_string(), r#"{"accept": null}, {"foo": 85510186621062260e-16}"#.to_string()),
            ("a key written twice", r#""handle": 3,"#.to_string(), r#""handle": 1, "handle": 2,"#.to_string()),
            ("\"rule\" written twice", r#"{"rule": {"family": "inet", "table": "a", "chain": "c", "handle": 3,"#.to_string(), r#"{"rule": {"x": 1}, "rule": {"family": "inet", "table": "a", "chain": "c", "handle": 3,"#.to_string()),
            ("an escaped \"rule\" with another key", r#"{"rule": {"family": "inet", "table": "a", "chain": "c", "handle": 3,"#.to_string(), r#"{"table": {}, "\u0072ule": {"family": "inet", "table": "a", "chain": "c", "handle": 3,"#.to_string()),
            ("a comparison with the largest number", r#""right": 5}"#.to_string(), r#""right": 18446744073709551615}, "op": ">""#.to_string()),
        ] {
            let bad = d.replacen(&from, &to, 1);
            assert_ne!(bad, d, "{what}");
            // past 1 MiB, parse reads it in pieces
            let big = bad.replacen(r#""c0""#, &format!("{:?}", "x".repeat(1 << 20)), 1);
            for doc in [&bad, &big] {
                let r = std::panic::catch_unwind(|| agree(doc));
                assert!(r.is_ok(), "{what}");
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Whatever the strings hold and wherever the cuts fall: what one pass reads, or nothing.
        #[test]
        fn never_reads_differently(comments in proptest::collection::vec("[\\]\\[{}\", a-z:@\\\\]{0,24}", 1..40), piece in 1usize..3000) {
            let d = doc(&comments, "");
            let p = in_pieces(&d, piece);
            prop_assert!(p.is_none() || p == one_pass(&d));
        }
    }
}
