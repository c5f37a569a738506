//! The walk: one packet through the hooks of its path, every base chain of every backend on each hook
//! in priority order. A drop or reject anywhere is final; an accept ends only its own base chain.
//! Matches that cannot be evaluated are branch points: the main walk takes them as not matching,
//! and every combination is explored (up to a bound) to give the possible outcomes.
//! A walk keeps snapshots of where it went (chain entries, rules with unknown matches, deciding
//! rules): a walk that agrees with it up to one of them (other choices from a point on, a fix's
//! rule inserted there) continues from that snapshot instead of walking the rules before again.

use crate::ir::{self, Backend, ChainKind, Field, Hook, NatKind, Policy, Stmt, Table, Test, Val, Verdict, addrtype};
use crate::packet::{CtState, Packet, PathKind, Proto};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// How many walks may be made to explore the matches that cannot be evaluated.
pub const MAX_WALKS: usize = 256;
const MAX_STEPS: usize = 5_000_000;
const MAX_DEPTH: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Accept,
    Drop,
    Reject,
    /// NFQUEUE / queue: a userspace program decides.
    Queue,
}

impl Decision {
    pub fn as_str(&self) -> &'static str {
        match self {
            Decision::Accept => "accept",
            Decision::Drop => "drop",
            Decision::Reject => "reject",
            Decision::Queue => "queue",
        }
    }
}

/// Where a decision was made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decider {
    pub backend: Backend,
    pub family: String,
    pub table: String,
    pub chain: String,
    /// The base chain the walk entered (the chain of the hook), when the rule is in a user chain.
    pub base_chain: String,
    pub hook: Hook,
    pub prio: i32,
    /// The deciding rule as the user writes it; the policy when no rule decides.
    pub rule: String,
    pub policy: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handle: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counters: Option<(u64, u64)>,
    /// Index of the table in the model (to build fixes).
    #[serde(skip)]
    pub table_idx: usize,
    #[serde(skip)]
    pub rule_idx: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Event {
    /// The walk enters a base chain (from its hook).
    Enter,
    /// A rule matched and acted (the action follows in `detail`).
    Match,
    Jump,
    Goto,
    /// Back to the calling chain (RETURN, or the end of a user chain).
    Return,
    /// The base chain's policy decided.
    Policy,
    /// A NAT statement rewrote the packet.
    Nat,
    Mark,
    Log,
    /// A match that could not be evaluated: taken as not matching on this walk.
    Unknown,
    /// A match treated as matching (limit), said so.
    Assumed,
    /// A nat base chain not run (the connection is not new, or NAT was already set up).
    Skip,
    /// The routing decision after PREROUTING.
    Route,
    /// The verdict of a base chain: accept goes on to the next base chain, drop/reject end the walk.
    Verdict,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub event: Event,
    pub hook: Hook,
    pub backend: Backend,
    pub family: String,
    pub table: String,
    pub chain: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handle: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A match the walk could not evaluate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Point {
    pub backend: Backend,
    pub table: String,
    pub chain: String,
    pub rule: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// What could not be evaluated, and why.
    pub what: String,
    pub reason: String,
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub decision: Decision,
    pub reject_with: Option<String>,
    pub decider: Option<Decider>,
    pub walk: Vec<Step>,
    pub points: Vec<Point>,
    pub notes: Vec<String>,
    /// The path actually taken (DNAT in PREROUTING can change it when local addresses are known).
    pub path: PathKind,
    /// The destination after DNAT, when it changed.
    pub dnat: Option<(IpAddr, Option<u16>)>,
    /// Snapshots of the walk (chain entries, rules with unknown matches, rules that ended a base
    /// chain), in order: walks that agree with this one up to one of them continue from it.
    pub(crate) trace: Vec<Snap>,
    /// For each point, the index in `trace` of the arrival at its rule.
    pub(crate) point_snaps: Vec<usize>,
}

enum Tri {
    Yes,
    No,
    Unknown(String),
}

enum Fv<'a> {
    Str(&'a str),
    Addr(IpAddr),
    Num(u64),
    Flags(u32),
    /// The field does not exist for this packet (a port of an ICMP packet): the test fails, negated or not.
    Absent,
    Unknown(String),
}

/// The packet as the walk rewrites it.
#[derive(Clone, Copy)]
struct St<'a> {
    pkt: &'a Packet,
    v6: bool,
    src: IpAddr,
    dst: IpAddr,
    sport: Option<u16>,
    dport: Option<u16>,
    mark: u32,
    ct_status: u32,
    hook: Hook,
    path: PathKind,
    /// DNAT happened: --dst-type LOCAL is no longer known from the path alone.
    dst_rewritten: bool,
}

/// [`St`] without the packet it started as: what a [`Snap`] keeps.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Saved {
    src: IpAddr,
    dst: IpAddr,
    sport: Option<u16>,
    dport: Option<u16>,
    mark: u32,
    ct_status: u32,
    hook: Hook,
    path: PathKind,
    dst_rewritten: bool,
}

impl<'a> St<'a> {
    fn new(pkt: &'a Packet) -> St<'a> {
        St {
            pkt,
            v6: pkt.is_v6(),
            src: pkt.src,
            dst: pkt.dst,
            sport: pkt.sport,
            dport: pkt.dport,
            mark: 0,
            ct_status: 0,
            hook: Hook::Prerouting,
            path: pkt.path,
            dst_rewritten: false,
        }
    }

    fn save(&self) -> Saved {
        Saved {
            src: self.src,
            dst: self.dst,
            sport: self.sport,
            dport: self.dport,
            mark: self.mark,
            ct_status: self.ct_status,
            hook: self.hook,
            path: self.path,
            dst_rewritten: self.dst_rewritten,
        }
    }

    fn load(pkt: &'a Packet, s: &Saved) -> St<'a> {
        St {
            pkt,
            v6: pkt.is_v6(),
            src: s.src,
            dst: s.dst,
            sport: s.sport,
            dport: s.dport,
            mark: s.mark,
            ct_status: s.ct_status,
            hook: s.hook,
            path: s.path,
            dst_rewritten: s.dst_rewritten,
        }
    }
}

impl St<'_> {
    fn value(&self, f: &Field) -> Fv<'_> {
        let p = self.pkt;
        match f {
            Field::Iif => Fv::Str(&p.iif),
            Field::Oif => match self.hook {
                Hook::Prerouting | Hook::Input => Fv::Str(""),
                _ => match &p.oif {
                    Some(o) => Fv::Str(o),
                    None => Fv::Unknown("the output interface of a forwarded packet (give --out)".into()),
                },
            },
            Field::Saddr => Fv::Addr(self.src),
            Field::Daddr => Fv::Addr(self.dst),
            Field::L4Proto => Fv::Num(p.proto.number(self.v6) as u64),
            Field::Sport(want) | Field::Dport(want) => {
                if !p.proto.has_ports() {
                    return Fv::Absent;
                }
                if let Some(w) = want
                    && *w != p.proto.number(self.v6) {
                        return Fv::Absent;
                    }
                let v = if matches!(f, Field::Sport(_)) { self.sport } else { self.dport };
                match v {
                    Some(v) => Fv::Num(v as u64),
                    None if matches!(f, Field::Sport(_)) => Fv::Unknown("the source port (an ephemeral port; give --sport)".into()),
                    None => Fv::Unknown("the destination port (give --dport)".into()),
                }
            }
            Field::CtState => Fv::Flags(p.ct_state.bit()),
            Field::CtStatus => Fv::Flags(self.ct_status),
            Field::DstType => match self.addr_type(self.dst, true) {
                Some(t) => Fv::Flags(t),
                None => Fv::Unknown("the route type of the destination".into()),
            },
            Field::SrcType => match self.addr_type(self.src, false) {
                Some(t) => Fv::Flags(t),
                None => Fv::Unknown("whether the source is one of this host's addresses".into()),
            },
            Field::IcmpType => {
                if p.proto == Proto::Icmp {
                    Fv::Num(p.icmp_type_or_default() as u64)
                } else {
                    Fv::Absent
                }
            }
            Field::IcmpCode => {
                if p.proto == Proto::Icmp {
                    Fv::Num(0)
                } else {
                    Fv::Absent
                }
            }
            Field::TcpFlags => {
                if p.proto != Proto::Tcp {
                    Fv::Absent
                } else if p.ct_state == CtState::New {
                    Fv::Num(2) // SYN
                } else {
                    Fv::Num(16) // ACK
                }
            }
            Field::Fragment => Fv::Num(0),
            Field::PktType => Fv::Num(match self.dst {
                IpAddr::V4(a) if a.is_broadcast() => 1,
                a if a.is_multicast() => 2,
                _ => 0,
            }),
            Field::Mark => Fv::Num(self.mark as u64),
            Field::NfProto => Fv::Num(if self.v6 { 10 } else { 2 }),
            Field::Other(name) => Fv::Unknown(format!("{name} is not evaluated by hostreach")),
        }
    }

    fn addr_type(&self, a: IpAddr, is_dst: bool) -> Option<u32> {
        if a.is_multicast() {
            return Some(addrtype::MULTICAST);
        }
        if let IpAddr::V4(v) = a
            && v.is_broadcast() {
                return Some(addrtype::BROADCAST);
            }
        if let Some(local) = &self.pkt.local_addresses {
            return Some(if local.contains(&a) || a.is_loopback() { addrtype::LOCAL } else { addrtype::UNICAST });
        }
        if is_dst && !self.dst_rewritten {
            // The path says it: local delivery is for addresses this host owns.
            return Some(match self.path {
                PathKind::Input => addrtype::LOCAL,
                PathKind::Forward => addrtype::UNICAST,
            });
        }
        None
    }
}

fn val_matches(fv: &Fv<'_>, v: &Val) -> bool {
    match (fv, v) {
        (Fv::Str(s), Val::Iface { name, wildcard }) => ir::iface_matches(name, *wildcard, s),
        (Fv::Addr(a), Val::Net { addr, len }) => ir::net_contains(*addr, *len, *a),
        (Fv::Addr(a), Val::AddrRange(lo, hi)) => ir::addr_in_range(*lo, *hi, *a),
        (Fv::Num(n), Val::Range(lo, hi)) => lo <= n && n <= hi,
        (Fv::Num(n), Val::Masked { value, mask }) => (n & mask) == *value,
        (Fv::Flags(f), Val::Flags(b)) => f & b != 0,
        (Fv::Flags(f), Val::Range(lo, hi)) => (*lo..=*hi).contains(&(*f as u64)),
        _ => false,
    }
}

fn eval_test(st: &St, t: &Test) -> Tri {
    match t {
        Test::Assume { .. } => Tri::Yes,
        Test::Unknown { reason, .. } => Tri::Unknown(reason.clone()),
        Test::Match { key, neg, any } if key.len() == 1 => {
            // the common case, without allocating
            let fv = match st.value(&key[0]) {
                Fv::Absent => return Tri::No,
                Fv::Unknown(r) => return Tri::Unknown(r),
                v => v,
            };
            let hit = any.iter().any(|elem| elem.len() == 1 && val_matches(&fv, &elem[0]));
            if hit != *neg { Tri::Yes } else { Tri::No }
        }
        Test::Match { key, neg, any } => {
            let mut vals = Vec::with_capacity(key.len());
            let mut unknown = None;
            for f in key {
                match st.value(f) {
                    Fv::Absent => return Tri::No,
                    Fv::Unknown(r) => {
                        unknown.get_or_insert(r);
                        vals.push(Fv::Absent);
                    }
                    v => vals.push(v),
                }
            }
            if let Some(r) = unknown {
                return Tri::Unknown(r);
            }
            let hit = any.iter().any(|elem| elem.len() == vals.len() && elem.iter().zip(&vals).all(|(v, fv)| val_matches(fv, v)));
            if hit != *neg { Tri::Yes } else { Tri::No }
        }
    }
}

/// What a chain walk ended with.
enum End {
    Accept(Decider),
    Drop(Decider),
    Reject(Decider, String),
    Queue(Decider),
}

/// A rule inserted into a chain of the model, as a fix would put it: the walk sees it where it
/// goes, and the model is not copied. Inserts apply in order, each `pos` counted in the chain as
/// the inserts before it left it (and at most its length then).
#[derive(Debug, Clone)]
pub(crate) struct Insert {
    pub ti: usize,
    pub ci: usize,
    pub pos: usize,
    pub rule: ir::Rule,
}

/// The length of a chain with the inserts.
pub(crate) fn chain_len(tables: &[Table], patch: &[Insert], ti: usize, ci: usize) -> usize {
    tables[ti].chains[ci].rules.len() + patch.iter().filter(|p| p.ti == ti && p.ci == ci).count()
}

/// Rule `ri` of a chain with the inserts.
fn rule_at<'m>(tables: &'m [Table], patch: &'m [Insert], ti: usize, ci: usize, ri: usize) -> Option<&'m ir::Rule> {
    let rules = &tables[ti].chains[ci].rules;
    if patch.is_empty() {
        return rules.get(ri);
    }
    let mut i = ri;
    for p in patch.iter().rev() {
        if p.ti == ti && p.ci == ci {
            if i == p.pos {
                return Some(&p.rule);
            }
            if i > p.pos {
                i -= 1;
            }
        }
    }
    rules.get(i)
}

/// The whole state of a walk as it arrives at a rule (or at the end of a chain): a walk that
/// agrees with this one up to here (another model that differs only from here on, other choices
/// from this rule's unknown matches on) continues from it instead of walking the rules before
/// again. The walk, points and notes so far are the first `*_len` of the walk's own.
#[derive(Debug, Clone)]
pub(crate) struct Snap {
    /// The arrival at a chain's first position (a jump, a goto, a base chain's start); otherwise
    /// at a rule that met an unknown match or ended its base chain.
    pub(crate) entry: bool,
    pub(crate) ti: usize,
    pub(crate) ci: usize,
    pub(crate) ri: usize,
    st: Saved,
    hooks: HookList,
    hi: usize,
    k: usize,
    nat_done: bool,
    filter_accept: Option<Decider>,
    /// Frames (chain, next rule); the last is (ci, ri).
    stack: Vec<(usize, usize)>,
    n_points: usize,
    steps: usize,
    walk_len: usize,
    points_len: usize,
    notes_len: usize,
}

type HookList = smallvec::SmallVec<[Hook; 4]>;

/// The counters as a rule is reached, to snapshot the arrival once the rule turns out to need it.
#[derive(Clone, Copy)]
struct Arrival<'a> {
    st: St<'a>,
    n_points: usize,
    steps: usize,
    walk_len: usize,
    points_len: usize,
    notes_len: usize,
}

struct Walker<'m> {
    tables: &'m [Table],
    patch: &'m [Insert],
    choices: &'m [bool],
    n_points: usize,
    points: Vec<Point>,
    walk: Vec<Step>,
    notes: Vec<String>,
    steps: usize,
    trace: Vec<Snap>,
    /// For each point, the snapshot of the arrival at its rule.
    point_snaps: Vec<usize>,
    // Where the walk is: the hooks of the path, the hook, the base chain on it.
    hooks: HookList,
    hi: usize,
    k: usize,
    nat_done: bool,
    filter_accept: Option<Decider>,
}

impl<'m> Walker<'m> {
    /// The next unknown point: true when this walk takes it as matching.
    fn choose(&mut self) -> bool {
        let c = self.choices.get(self.n_points).copied().unwrap_or(false);
        self.n_points += 1;
        c
    }

    fn arrival<'a>(&self, st: &St<'a>) -> Arrival<'a> {
        Arrival { st: *st, n_points: self.n_points, steps: self.steps, walk_len: self.walk.len(), points_len: self.points.len(), notes_len: self.notes.len() }
    }

    /// Records the arrival at frame `stack`'s top, at rule `ri` of its chain; returns its index.
    fn snap(&mut self, entry: bool, ti: usize, stack: &[(usize, usize)], ri: usize, a: &Arrival) -> usize {
        let mut stack = stack.to_vec();
        let top = stack.last_mut().expect("frame");
        top.1 = ri;
        let ci = top.0;
        self.trace.push(Snap {
            entry,
            ti,
            ci,
            ri,
            st: a.st.save(),
            hooks: self.hooks.clone(),
            hi: self.hi,
            k: self.k,
            nat_done: self.nat_done,
            filter_accept: self.filter_accept.clone(),
            stack,
            n_points: a.n_points,
            steps: a.steps,
            walk_len: a.walk_len,
            points_len: a.points_len,
            notes_len: a.notes_len,
        });
        self.trace.len() - 1
    }

    fn step(&mut self, st: &St, t: &Table, chain: &str, event: Event, rule: Option<&ir::Rule>, detail: Option<String>) {
        self.walk.push(Step {
            event,
            hook: st.hook,
            backend: t.backend,
            family: t.family.as_str().into(),
            table: t.name.clone(),
            chain: chain.to_string(),
            rule: rule.map(|r| r.text.to_string()),
            line: rule.and_then(|r| r.line),
            handle: rule.and_then(|r| r.handle),
            detail,
        });
    }

    fn decider(&self, ti: usize, t: &Table, chain: &ir::Chain, base: &ir::Chain, st: &St, rule: Option<(usize, &ir::Rule)>) -> Decider {
        let b = base.base.as_ref().expect("base chain");
        Decider {
            backend: t.backend,
            family: t.family.as_str().into(),
            table: t.name.clone(),
            chain: chain.name.clone(),
            base_chain: base.name.clone(),
            hook: st.hook,
            prio: b.prio,
            rule: rule.map(|(_, r)| r.text.to_string()).unwrap_or_else(|| chain.policy_text.clone()),
            policy: rule.is_none(),
            line: rule.and_then(|(_, r)| r.line),
            handle: rule.and_then(|(_, r)| r.handle),
            counters: rule.and_then(|(_, r)| r.counters),
            table_idx: ti,
            rule_idx: rule.map(|(i, _)| i),
        }
    }

    /// Walks one base chain, from its start or (`stack`) from a snapshot inside it. Returns how it
    /// ended, and whether a NAT statement set up a mapping.
    fn run_base(&mut self, ti: usize, ci: usize, st: &mut St<'m>, stack: Option<Vec<(usize, usize)>>) -> (End, bool) {
        let tables: &'m [Table] = self.tables;
        let patch: &'m [Insert] = self.patch;
        let t = &tables[ti];
        let base = &t.chains[ci];
        // (chain index, next rule index)
        let mut stack = match stack {
            Some(s) => s,
            None => {
                self.step(st, t, &base.name, Event::Enter, None, base.base.as_ref().map(|b| format!("hook {} priority {}", b.hook.as_str(), b.prio)));
                vec![(ci, 0)]
            }
        };
        loop {
            let Some(&(cur, ri)) = stack.last() else { unreachable!() };
            let arrived = self.arrival(st);
            if ri == 0 {
                self.snap(true, ti, &stack, ri, &arrived);
            }
            // the arrival's snapshot, once taken
            let mut snapped: Option<usize> = None;
            self.steps += 1;
            if self.steps > MAX_STEPS {
                self.notes.push("the walk took too many steps (a loop between chains?); it stopped at the base chain's policy".into());
                return (self.policy_end(ti, ci, st), false);
            }
            let chain = &t.chains[cur];
            let Some(rule) = rule_at(tables, patch, ti, cur, ri) else {
                if stack.len() == 1 {
                    return (self.policy_end(ti, ci, st), false);
                }
                stack.pop();
                let back = &t.chains[stack.last().expect("caller").0].name;
                self.step(st, t, &chain.name, Event::Return, None, Some(format!("end of chain, back to {back}")));
                continue;
            };
            stack.last_mut().expect("frame").1 += 1;
            let mut next_rule = false;
            for s in rule.stmts.iter() {
                match s {
                    Stmt::Test(test) => match eval_test(st, test) {
                        Tri::Yes => {
                            if let Test::Assume { what, note } = test {
                                self.step(st, t, &chain.name, Event::Assumed, Some(rule), Some(format!("{what}: {note}")));
                            }
                        }
                        Tri::No => {
                            next_rule = true;
                            break;
                        }
                        Tri::Unknown(reason) => {
                            let what = match test {
                                Test::Unknown { what, .. } => what.clone(),
                                Test::Match { key, .. } => key.iter().map(field_name).collect::<Vec<_>>().join(" . "),
                                Test::Assume { what, .. } => what.clone(),
                            };
                            let at = *snapped.get_or_insert_with(|| self.snap(false, ti, &stack, ri, &arrived));
                            self.point_snaps.push(at);
                            let taken = self.choose();
                            self.points.push(Point {
                                backend: t.backend,
                                table: t.name.clone(),
                                chain: chain.name.clone(),
                                rule: rule.text.to_string(),
                                line: rule.line,
                                what: what.clone(),
                                reason: reason.clone(),
                            });
                            self.step(
                                st,
                                t,
                                &chain.name,
                                Event::Unknown,
                                Some(rule),
                                Some(format!("{what}: cannot evaluate ({reason}); {}", if taken { "taken as matching on this walk" } else { "taken as not matching" })),
                            );
                            if !taken {
                                next_rule = true;
                                break;
                            }
                        }
                    },
                    Stmt::Verdict(_) | Stmt::Vmap { .. } => {
                        let v = match s {
                            Stmt::Verdict(v) => v.clone(),
                            Stmt::Vmap { key, entries } => match self.vmap_lookup(st, key, entries) {
                                Ok(Some(v)) => v,
                                Ok(None) => {
                                    next_rule = true;
                                    break;
                                }
                                Err(reason) => {
                                    // a map lookup has no single "matching" branch: this walk takes no element
                                    let at = *snapped.get_or_insert_with(|| self.snap(false, ti, &stack, ri, &arrived));
                                    self.point_snaps.push(at);
                                    self.choose();
                                    self.points.push(Point {
                                        backend: t.backend,
                                        table: t.name.clone(),
                                        chain: chain.name.clone(),
                                        rule: rule.text.to_string(),
                                        line: rule.line,
                                        what: "verdict map key".into(),
                                        reason: reason.clone(),
                                    });
                                    self.step(
                                        st,
                                        t,
                                        &chain.name,
                                        Event::Unknown,
                                        Some(rule),
                                        Some(format!("verdict map: cannot evaluate the key ({reason}); taken as no element")),
                                    );
                                    next_rule = true;
                                    break;
                                }
                            },
                            _ => unreachable!(),
                        };
                        if matches!(v, Verdict::Accept | Verdict::Drop | Verdict::Reject(_) | Verdict::Queue) && snapped.is_none() {
                            snapped = Some(self.snap(false, ti, &stack, ri, &arrived));
                        }
                        match v {
                            Verdict::Continue => {}
                            Verdict::Accept => {
                                self.step(st, t, &chain.name, Event::Match, Some(rule), Some("accept".into()));
                                return (End::Accept(self.decider(ti, t, chain, base, st, Some((ri, rule)))), false);
                            }
                            Verdict::Drop => {
                                self.step(st, t, &chain.name, Event::Match, Some(rule), Some("drop".into()));
                                return (End::Drop(self.decider(ti, t, chain, base, st, Some((ri, rule)))), false);
                            }
                            Verdict::Reject(with) => {
                                self.step(st, t, &chain.name, Event::Match, Some(rule), Some(format!("reject with {with}")));
                                return (End::Reject(self.decider(ti, t, chain, base, st, Some((ri, rule))), with), false);
                            }
                            Verdict::Queue => {
                                self.step(st, t, &chain.name, Event::Match, Some(rule), Some("queue: a userspace program decides".into()));
                                return (End::Queue(self.decider(ti, t, chain, base, st, Some((ri, rule)))), false);
                            }
                            Verdict::Return => {
                                if stack.len() == 1 {
                                    self.step(st, t, &chain.name, Event::Match, Some(rule), Some("return from the base chain: its policy applies".into()));
                                    return (self.policy_end(ti, ci, st), false);
                                }
                                stack.pop();
                                let back = t.chains[stack.last().expect("caller").0].name.clone();
                                self.step(st, t, &chain.name, Event::Return, Some(rule), Some(format!("back to {back}")));
                                next_rule = true;
                                break;
                            }
                            Verdict::Jump(ref target) | Verdict::Goto(ref target) => {
                                let goto = matches!(v, Verdict::Goto(_));
                                match t.chain_idx(target) {
                                    Some(tc) => {
                                        if stack.len() >= MAX_DEPTH {
                                            self.notes.push(format!("jumps nest deeper than {MAX_DEPTH} chains at {}: stopped", chain.name));
                                            return (self.policy_end(ti, ci, st), false);
                                        }
                                        self.step(st, t, &chain.name, if goto { Event::Goto } else { Event::Jump }, Some(rule), Some(target.clone()));
                                        if goto {
                                            // a goto replaces the frame: the end of the target returns to the chain below
                                            // (or, from a base chain, ends at its policy)
                                            *stack.last_mut().expect("frame") = (tc, 0);
                                        } else {
                                            stack.push((tc, 0));
                                        }
                                        next_rule = true;
                                        break;
                                    }
                                    None => {
                                        self.notes.push(format!("{} jumps to {target}, which does not exist in table {}: taken as continuing", rule.text, t.name));
                                    }
                                }
                            }
                        }
                    }
                    Stmt::Nat(nat) => {
                        if snapped.is_none() {
                            self.snap(false, ti, &stack, ri, &arrived);
                        }
                        let detail = apply_nat(st, nat);
                        self.step(st, t, &chain.name, Event::Nat, Some(rule), Some(detail));
                        return (End::Accept(self.decider(ti, t, chain, base, st, Some((ri, rule)))), true);
                    }
                    Stmt::SetMark { value, mask } => {
                        st.mark = (st.mark & !mask) ^ value;
                        self.step(st, t, &chain.name, Event::Mark, Some(rule), Some(format!("mark set to {:#x}", st.mark)));
                    }
                    Stmt::Continue(what) => {
                        if what.starts_with("LOG") || what.starts_with("NFLOG") || what.starts_with("log") {
                            self.step(st, t, &chain.name, Event::Log, Some(rule), Some(format!("{what} (logs and continues)")));
                        }
                    }
                    Stmt::UnknownAction(what) => {
                        self.notes.push(format!("{}: {what}", rule.text));
                    }
                }
            }
            let _ = next_rule;
        }
    }

    fn vmap_lookup(&self, st: &St, key: &[Field], entries: &[(Vec<Val>, Verdict)]) -> Result<Option<Verdict>, String> {
        let mut vals = Vec::new();
        for f in key {
            match st.value(f) {
                Fv::Absent => return Ok(None),
                Fv::Unknown(r) => return Err(r),
                v => vals.push(v),
            }
        }
        for (k, v) in entries {
            if k.len() == vals.len() && k.iter().zip(&vals).all(|(kv, fv)| val_matches(fv, kv)) {
                return Ok(Some(v.clone()));
            }
        }
        Ok(None)
    }

    fn policy_end(&mut self, ti: usize, ci: usize, st: &St) -> End {
        let t = &self.tables[ti];
        let base = &t.chains[ci];
        let b = base.base.as_ref().expect("base chain");
        let d = self.decider(ti, t, base, base, st, None);
        self.step(st, t, &base.name, Event::Policy, None, Some(format!("policy {}", if b.policy == Policy::Drop { "drop" } else { "accept" })));
        match b.policy {
            Policy::Accept => End::Accept(d),
            Policy::Drop => End::Drop(d),
        }
    }
}

fn apply_nat(st: &mut St, nat: &ir::Nat) -> String {
    match nat.kind {
        NatKind::Dnat => {
            if let Some(a) = nat.addr {
                st.dst = a;
            }
            if nat.port.is_some() {
                st.dport = nat.port;
            }
            st.ct_status |= ir::ct::STATUS_DNAT;
            st.dst_rewritten = true;
            format!("DNAT to {}{}", st.dst, st.dport.map(|p| format!(":{p}")).unwrap_or_default())
        }
        NatKind::Redirect => {
            if nat.port.is_some() {
                st.dport = nat.port;
            }
            st.ct_status |= ir::ct::STATUS_DNAT;
            st.path = PathKind::Input;
            format!("REDIRECT to this host{}", nat.port.map(|p| format!(", port {p}")).unwrap_or_default())
        }
        NatKind::Snat => {
            if let Some(a) = nat.addr {
                st.src = a;
            }
            st.ct_status |= ir::ct::STATUS_SNAT;
            format!("SNAT to {}", st.src)
        }
        NatKind::Masquerade => {
            st.ct_status |= ir::ct::STATUS_SNAT;
            "MASQUERADE (source becomes the output interface's address)".into()
        }
    }
}

pub fn field_name(f: &Field) -> String {
    match f {
        Field::Iif => "iifname".into(),
        Field::Oif => "oifname".into(),
        Field::Saddr => "saddr".into(),
        Field::Daddr => "daddr".into(),
        Field::L4Proto => "l4proto".into(),
        Field::Sport(_) => "sport".into(),
        Field::Dport(_) => "dport".into(),
        Field::CtState => "ct state".into(),
        Field::CtStatus => "ct status".into(),
        Field::DstType => "daddr type".into(),
        Field::SrcType => "saddr type".into(),
        Field::IcmpType => "icmp type".into(),
        Field::IcmpCode => "icmp code".into(),
        Field::TcpFlags => "tcp flags".into(),
        Field::Fragment => "fragment".into(),
        Field::PktType => "pkttype".into(),
        Field::Mark => "mark".into(),
        Field::NfProto => "nfproto".into(),
        Field::Other(s) => s.clone(),
    }
}

/// Base chains on a hook that see this packet, in the kernel's order: by priority; at equal
/// priority, iptables-legacy (registered when its module loaded, normally first), then nft tables in
/// the order they appear.
fn base_chains(tables: &[Table], hook: Hook, v6: bool) -> Vec<(usize, usize)> {
    let mut v: Vec<(i32, u8, usize, usize)> = Vec::new();
    for (ti, t) in tables.iter().enumerate() {
        if !t.family.sees(v6) {
            continue;
        }
        for (ci, c) in t.chains.iter().enumerate() {
            if let Some(b) = &c.base
                && b.hook == hook {
                    let order = match t.backend {
                        Backend::IptablesLegacy => 0,
                        _ => 1,
                    };
                    v.push((b.prio, order, ti, ci));
                }
        }
    }
    v.sort_by_key(|&(p, o, ti, ci)| (p, o, ti, ci));
    v.into_iter().map(|(_, _, ti, ci)| (ti, ci)).collect()
}

/// One walk, with the unknown matches decided by `choices` (in the order they are met; missing = not matching).
pub fn walk(tables: &[Table], pkt: &Packet, choices: &[bool]) -> Outcome {
    walk_from(tables, &[], pkt, choices, Begin::Start)
}

/// Where a walk starts: from the start, or from a snapshot of an earlier walk's trace that the
/// caller knows it agrees with up to there (same model, packet and choices before it).
pub(crate) enum Begin<'o> {
    Start,
    /// Continues from `o.trace[snap]`, keeping what `o`'s walk had done up to it.
    Snap(&'o Outcome, usize),
    /// Continues from `o.trace[snap]` for the decision only: the outcome's walk, points, notes and
    /// trace hold only what came after the snapshot (its points count is `point_snaps.len()`), so
    /// it can be continued from only this way.
    Decision(&'o Outcome, usize),
}

/// One walk of the model with `patch` inserted, from `from`.
pub(crate) fn walk_from(tables: &[Table], patch: &[Insert], pkt: &Packet, choices: &[bool], from: Begin) -> Outcome {
    let v6 = pkt.is_v6();
    let (mut w, mut st, mut resume) = match from {
        Begin::Start => (
            Walker {
                tables,
                patch,
                choices,
                n_points: 0,
                points: Vec::new(),
                walk: Vec::new(),
                notes: Vec::new(),
                steps: 0,
                trace: Vec::new(),
                point_snaps: Vec::new(),
                hooks: Hook::path(pkt.path).iter().copied().collect(),
                hi: 0,
                k: 0,
                nat_done: false,
                filter_accept: None,
            },
            St::new(pkt),
            None,
        ),
        Begin::Snap(o, si) | Begin::Decision(o, si) => {
            let s = &o.trace[si];
            let whole = matches!(from, Begin::Snap(..));
            (
                Walker {
                    tables,
                    patch,
                    choices,
                    n_points: s.n_points,
                    points: if whole { o.points[..s.points_len].to_vec() } else { Vec::new() },
                    walk: if whole { o.walk[..s.walk_len].to_vec() } else { Vec::new() },
                    notes: if whole { o.notes[..s.notes_len].to_vec() } else { Vec::new() },
                    steps: s.steps,
                    trace: if whole { o.trace[..si].to_vec() } else { Vec::new() },
                    point_snaps: if whole { o.point_snaps[..s.n_points].to_vec() } else { vec![usize::MAX; s.n_points] },
                    hooks: s.hooks.clone(),
                    hi: s.hi,
                    k: s.k,
                    nat_done: s.nat_done,
                    filter_accept: s.filter_accept.clone(),
                },
                St::load(pkt, &s.st),
                Some(s.stack.clone()),
            )
        }
    };
    while w.hi < w.hooks.len() {
        let hook = w.hooks[w.hi];
        st.hook = hook;
        let bases = base_chains(tables, hook, v6);
        while w.k < bases.len() {
            let (ti, ci) = bases[w.k];
            let t = &tables[ti];
            let b = t.chains[ci].base.clone().expect("base");
            let stack = resume.take();
            if stack.is_none() && b.kind == ChainKind::Nat {
                let why = if pkt.ct_state != CtState::New {
                    Some("nat chains see only the first packet of a connection")
                } else if w.nat_done {
                    Some("NAT is already set up for this connection on this hook")
                } else {
                    None
                };
                if let Some(why) = why {
                    w.step(&st, t, &t.chains[ci].name, Event::Skip, None, Some(why.into()));
                    w.k += 1;
                    continue;
                }
            }
            let (end, nat) = w.run_base(ti, ci, &mut st, stack);
            w.nat_done |= nat;
            let chain_name = t.chains[ci].name.clone();
            match end {
                End::Accept(d) => {
                    w.step(&st, t, &chain_name, Event::Verdict, None, Some("accept: the packet goes on to the next base chain".into()));
                    // The accept that decides: on the filter hook, from a filter chain; a rule's
                    // accept outranks a policy's.
                    if matches!(hook, Hook::Input | Hook::Forward) && b.kind != ChainKind::Nat {
                        let keep_rule = w.filter_accept.as_ref().is_some_and(|f: &Decider| !f.policy) && d.policy;
                        if !keep_rule {
                            w.filter_accept = Some(d);
                        }
                    }
                }
                End::Drop(d) => {
                    w.step(&st, t, &chain_name, Event::Verdict, None, Some("drop: final".into()));
                    return finish(w, Decision::Drop, None, Some(d), &st);
                }
                End::Reject(d, with) => {
                    w.step(&st, t, &chain_name, Event::Verdict, None, Some(format!("reject with {with}: final")));
                    return finish(w, Decision::Reject, Some(with), Some(d), &st);
                }
                End::Queue(d) => {
                    w.step(&st, t, &chain_name, Event::Verdict, None, Some("queue: final for the rules".into()));
                    return finish(w, Decision::Queue, None, Some(d), &st);
                }
            }
            w.k += 1;
        }
        if hook == Hook::Prerouting {
            // The routing decision, with the destination as PREROUTING left it.
            let mut detail = None;
            if st.dst_rewritten {
                if let Some(local) = &pkt.local_addresses {
                    let new_path = if local.contains(&st.dst) || st.dst.is_loopback() { PathKind::Input } else { PathKind::Forward };
                    if new_path != st.path {
                        st.path = new_path;
                        w.hooks = std::iter::once(Hook::Prerouting).chain(Hook::path(new_path)[1..].iter().copied()).collect();
                    }
                } else {
                    w.notes.push(format!(
                        "DNAT rewrote the destination to {}: the kernel routes the packet again, and whether {} is this host's decides input or forward; the walk keeps the {} path",
                        st.dst,
                        st.dst,
                        st.path.as_str()
                    ));
                }
            }
            if detail.is_none() {
                detail = Some(format!(
                    "routing: {} ({}){}",
                    st.dst,
                    if st.path == PathKind::Input { "local delivery: INPUT" } else { "forwarded: FORWARD, POSTROUTING" },
                    if st.dst_rewritten { ", after DNAT" } else { "" }
                ));
            }
            w.walk.push(Step {
                event: Event::Route,
                hook: Hook::Prerouting,
                backend: Backend::Nftables,
                family: if v6 { "ip6".into() } else { "ip".into() },
                table: String::new(),
                chain: String::new(),
                rule: None,
                line: None,
                handle: None,
                detail,
            });
        }
        w.hi += 1;
        w.k = 0;
        w.nat_done = false;
    }
    let decider = w.filter_accept.take();
    finish(w, Decision::Accept, None, decider, &st)
}

fn finish(w: Walker, decision: Decision, reject_with: Option<String>, decider: Option<Decider>, st: &St) -> Outcome {
    Outcome {
        decision,
        reject_with,
        decider,
        walk: w.walk,
        points: w.points,
        notes: w.notes,
        path: st.path,
        dnat: if st.dst_rewritten || st.dport != st.pkt.dport { Some((st.dst, st.dport)) } else { None },
        trace: w.trace,
        point_snaps: w.point_snaps,
    }
}

/// Where a walk of the model with `ins` inserted (after the inserts `o`'s walk had) first differs
/// from `o`'s walk: its first arrival where the rule goes.
pub(crate) enum Divergence {
    /// The walk never gets there: it is `o`'s walk.
    Never,
    /// It gets there at this snapshot of `o`'s trace: continue from it.
    At(usize),
    /// Not known from the trace.
    Unknown,
}

pub(crate) fn divergence(o: &Outcome, ins: &Insert) -> Divergence {
    // Frames always start at a chain's first rule and go forward one rule at a time, so the first
    // arrival at rule `pos` is in the first frame of the chain that reaches it; a snapshot of an
    // arrival at `pos` in the chain's only frame so far is that first arrival.
    let mut entries = 0;
    for (i, s) in o.trace.iter().enumerate() {
        if s.ti != ins.ti || s.ci != ins.ci {
            continue;
        }
        if s.entry {
            entries += 1;
            if ins.pos == 0 {
                return Divergence::At(i);
            }
        } else if s.ri == ins.pos && entries == 1 {
            return Divergence::At(i);
        }
    }
    if entries == 0 { Divergence::Never } else { Divergence::Unknown }
}

/// A point and what the decision would be if it matched (the other unknown ones not matching).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PointOutcome {
    #[serde(flatten)]
    pub point: Point,
    /// The decision if this match held (with the walk taking the others as not matching).
    pub if_matches: Decision,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub if_matches_rule: Option<String>,
    /// The decision of the main walk, which takes it as not matching.
    pub if_not: Decision,
}

/// The main walk, what each unknown match would change, and every possible decision.
pub struct Explored {
    pub main: Outcome,
    pub points: Vec<PointOutcome>,
    pub possible: Vec<Decision>,
    /// All combinations were explored (false when there were more than [`MAX_WALKS`]).
    pub complete: bool,
}

pub fn explore(tables: &[Table], pkt: &Packet) -> Explored {
    let main = walk(tables, pkt, &[]);
    let mut possible = vec![main.decision.clone()];
    let mut points = Vec::new();
    // Each point alone. That walk agrees with the main walk up to the point's rule, and continues
    // from there (only its decision is needed, and the walks that continue from it in turn). The
    // first ones are also the first combinations below: they are kept for them.
    let mut alone: Vec<Option<Outcome>> = Vec::new();
    for (j, p) in main.points.iter().enumerate() {
        let mut c = vec![false; j];
        c.push(true);
        let o = walk_from(tables, &[], pkt, &c, Begin::Decision(&main, main.point_snaps[j]));
        points.push(PointOutcome {
            point: p.clone(),
            if_matches: o.decision.clone(),
            if_matches_rule: o.decider.as_ref().map(|d| d.rule.clone()),
            if_not: main.decision.clone(),
        });
        if j < MAX_WALKS {
            alone.push(Some(o));
        }
    }
    // Every combination, depth first, bounded. A walk taking one more point as matching agrees
    // with the walk it extends up to that point's rule, and continues from there.
    let mut runs = 1;
    let mut complete = true;
    // (choices, their walk; None: the main walk)
    let mut queue: Vec<(Vec<bool>, Option<Outcome>)> = vec![(Vec::new(), None)];
    while let Some((prefix, parent)) = queue.pop() {
        let from = parent.as_ref().unwrap_or(&main);
        let k = from.point_snaps.len();
        for j in prefix.len()..k {
            if runs >= MAX_WALKS {
                complete = false;
                break;
            }
            let mut c = prefix.clone();
            c.resize(j, false);
            c.push(true);
            let o = match (&parent, alone.get_mut(j).and_then(Option::take)) {
                (None, Some(o)) => o,
                _ => walk_from(tables, &[], pkt, &c, Begin::Decision(from, from.point_snaps[j])),
            };
            runs += 1;
            if !possible.contains(&o.decision) {
                possible.push(o.decision.clone());
            }
            queue.push((c, Some(o)));
        }
        if !complete {
            break;
        }
    }
    Explored { main, points, possible, complete }
}
