//! The one model both backends are lowered into: tables of chains of rules, each rule a sequence of
//! tests and actions. iptables rules become `tests…, target`; nft rules keep their statement order.

use crate::packet::{PathKind, Proto};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    /// iptables with the legacy x_tables kernel backend (`iptables-legacy-save`).
    IptablesLegacy,
    /// iptables with the nf_tables kernel backend (`iptables-nft-save`).
    IptablesNft,
    /// iptables-save output that does not say which backend wrote it.
    Iptables,
    /// Native nftables (`nft -j list ruleset`).
    Nftables,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::IptablesLegacy => "iptables-legacy",
            Backend::IptablesNft => "iptables-nft",
            Backend::Iptables => "iptables",
            Backend::Nftables => "nftables",
        }
    }
    pub fn is_iptables(self) -> bool {
        !matches!(self, Backend::Nftables)
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Ip,
    Ip6,
    Inet,
    Arp,
    Bridge,
    Netdev,
}

impl Family {
    /// Does a table of this family see an IPv4 (or IPv6) packet on the IP hooks?
    pub fn sees(self, v6: bool) -> bool {
        match self {
            Family::Ip => !v6,
            Family::Ip6 => v6,
            Family::Inet => true,
            _ => false,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Ip => "ip",
            Family::Ip6 => "ip6",
            Family::Inet => "inet",
            Family::Arp => "arp",
            Family::Bridge => "bridge",
            Family::Netdev => "netdev",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Hook {
    Ingress,
    Prerouting,
    Input,
    Forward,
    Output,
    Postrouting,
    Egress,
}

impl Hook {
    pub fn as_str(self) -> &'static str {
        match self {
            Hook::Ingress => "ingress",
            Hook::Prerouting => "prerouting",
            Hook::Input => "input",
            Hook::Forward => "forward",
            Hook::Output => "output",
            Hook::Postrouting => "postrouting",
            Hook::Egress => "egress",
        }
    }
    /// The hooks a packet crosses on a path, in order.
    pub fn path(path: PathKind) -> &'static [Hook] {
        match path {
            PathKind::Input => &[Hook::Prerouting, Hook::Input],
            PathKind::Forward => &[Hook::Prerouting, Hook::Forward, Hook::Postrouting],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChainKind {
    Filter,
    Nat,
    Route,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    Accept,
    Drop,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Base {
    pub hook: Hook,
    pub prio: i32,
    pub policy: Policy,
    pub kind: ChainKind,
}

/// What a rule looks at.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Field {
    Iif,
    Oif,
    Saddr,
    Daddr,
    /// The layer-4 protocol number (`-p`, `meta l4proto`, `ip protocol`, `ip6 nexthdr`).
    L4Proto,
    /// Source port; `Some(p)` implies protocol `p` (tcp 6, udp 17), `None` any protocol with ports.
    Sport(Option<u8>),
    Dport(Option<u8>),
    CtState,
    /// Conntrack status bits (SNAT 16, DNAT 32), also `--ctstate SNAT|DNAT`.
    CtStatus,
    /// `-m addrtype --dst-type`, `fib daddr type`: route type bits, see [`addrtype`].
    DstType,
    SrcType,
    IcmpType,
    /// ICMP code (0 for echo-request).
    IcmpCode,
    /// TCP flags of the packet (SYN for a new connection).
    TcpFlags,
    /// 1 for a non-first fragment (`-f`): never the packet explained here.
    Fragment,
    /// Link-layer packet type: 0 host/unicast, 1 broadcast, 2 multicast.
    PktType,
    Mark,
    /// `meta nfproto`: 2 IPv4, 10 IPv6.
    NfProto,
    /// Anything else: the answer names it as not evaluable.
    Other(String),
}

/// Route types as `-m addrtype` numbers them (1 << RTN_*).
pub mod addrtype {
    pub const UNSPEC: u32 = 1;
    pub const UNICAST: u32 = 2;
    pub const LOCAL: u32 = 4;
    pub const BROADCAST: u32 = 8;
    pub const ANYCAST: u32 = 16;
    pub const MULTICAST: u32 = 32;
    pub const BLACKHOLE: u32 = 64;
    pub const UNREACHABLE: u32 = 128;
    pub const PROHIBIT: u32 = 256;
    pub const THROW: u32 = 512;
    pub const NAT: u32 = 1024;
    pub const XRESOLVE: u32 = 2048;
    pub const NAMES: &[(&str, u32)] = &[
        ("UNSPEC", UNSPEC),
        ("UNICAST", UNICAST),
        ("LOCAL", LOCAL),
        ("BROADCAST", BROADCAST),
        ("ANYCAST", ANYCAST),
        ("MULTICAST", MULTICAST),
        ("BLACKHOLE", BLACKHOLE),
        ("UNREACHABLE", UNREACHABLE),
        ("PROHIBIT", PROHIBIT),
        ("THROW", THROW),
        ("NAT", NAT),
        ("XRESOLVE", XRESOLVE),
    ];
}

/// Conntrack state and status bits.
pub mod ct {
    pub const INVALID: u32 = 1;
    pub const ESTABLISHED: u32 = 2;
    pub const RELATED: u32 = 4;
    pub const NEW: u32 = 8;
    pub const UNTRACKED: u32 = 64;
    pub const STATUS_SNAT: u32 = 16;
    pub const STATUS_DNAT: u32 = 32;
    pub fn state_bit(name: &str) -> Option<u32> {
        Some(match name.to_ascii_lowercase().as_str() {
            "invalid" => INVALID,
            "established" => ESTABLISHED,
            "related" => RELATED,
            "new" => NEW,
            "untracked" => UNTRACKED,
            _ => return None,
        })
    }
}

/// A constant a field is compared with.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Val {
    /// Interface name; `wildcard` means a prefix (`docker+`, `"br-*"`).
    Iface { name: String, wildcard: bool },
    Net { addr: IpAddr, len: u8 },
    AddrRange(IpAddr, IpAddr),
    /// Numbers: ports, protocols, ICMP types, marks. A single number is `Range(n, n)`.
    Range(u64, u64),
    /// `(field & mask) == value` (marks).
    Masked { value: u64, mask: u64 },
    /// Flag sets (ct state, addrtype): matches when the packet's flags intersect.
    Flags(u32),
}

impl Val {
    pub fn num(n: u64) -> Val {
        Val::Range(n, n)
    }
}

/// The fields a match compares: almost always one (`tcp dport`), kept inline.
pub type Fields = smallvec::SmallVec<[Field; 1]>;
/// One value per field of the key.
pub type Tuple = smallvec::SmallVec<[Val; 1]>;
/// The alternatives a match accepts: almost always one, kept inline (a rule lowers with no
/// allocation per match).
pub type Alts = smallvec::SmallVec<[Tuple; 1]>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Test {
    /// Matches when some element of `any` matches every field of `key`, inverted by `neg`.
    Match { key: Fields, neg: bool, any: Alts },
    /// Treated as matching, and said so (`-m limit`: a rate nobody can know in advance).
    Assume { what: String, note: String },
    /// Cannot be evaluated from the rules alone (`-m set`, an unknown module, `fib`).
    Unknown { what: String, reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "verdict", content = "arg")]
pub enum Verdict {
    Accept,
    Drop,
    /// With the reject type (`icmp-port-unreachable`, `tcp-reset`, …).
    Reject(String),
    Return,
    Jump(String),
    Goto(String),
    Continue,
    /// NFQUEUE / queue: a userspace program decides.
    Queue,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NatKind {
    Dnat,
    Snat,
    Masquerade,
    Redirect,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nat {
    pub kind: NatKind,
    pub addr: Option<IpAddr>,
    pub port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stmt {
    Test(Test),
    Verdict(Verdict),
    /// `meta l4proto vmap { tcp : jump x, ... }`, `iifname vmap @m`.
    Vmap { key: Vec<Field>, entries: Vec<(Vec<Val>, Verdict)> },
    /// NAT statements end the rule with accept (for their table).
    Nat(Nat),
    /// `mark = (mark & !mask) ^ value` (MARK --set-xmark, meta mark set).
    SetMark { value: u32, mask: u32 },
    /// LOG, NFLOG, counter, comment…: evaluation continues. The text says what it was.
    Continue(String),
    /// An action whose effect on the packet is not modelled: evaluation continues, and the answer says so.
    UnknownAction(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Shared with the parsed ruleset: cloning a model (to try a fix) copies no statements.
    pub stmts: Arc<[Stmt]>,
    /// The rule as the user writes it (`-A INPUT -i docker0 ... -j DROP`, nft rule text).
    pub text: Arc<str>,
    /// Line in the iptables-save input.
    pub line: Option<usize>,
    /// nft rule handle.
    pub handle: Option<u64>,
    pub counters: Option<(u64, u64)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    pub name: String,
    pub rules: Vec<Rule>,
    pub base: Option<Base>,
    /// How a policy is written in this backend (`-P INPUT DROP`, `policy drop` in chain …).
    pub policy_text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub backend: Backend,
    pub family: Family,
    pub name: String,
    pub chains: Vec<Chain>,
    pub index: HashMap<String, usize>,
}

impl Table {
    pub fn new(backend: Backend, family: Family, name: impl Into<String>) -> Table {
        Table { backend, family, name: name.into(), chains: Vec::new(), index: HashMap::new() }
    }
    pub fn chain(&self, name: &str) -> Option<&Chain> {
        self.index.get(name).map(|&i| &self.chains[i])
    }
    pub fn chain_idx(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }
    pub fn push_chain(&mut self, chain: Chain) -> usize {
        let i = self.chains.len();
        self.index.insert(chain.name.clone(), i);
        self.chains.push(chain);
        i
    }
    /// iptables-style table name for `-t` (nft tables keep their own name).
    pub fn rule_count(&self) -> usize {
        self.chains.iter().map(|c| c.rules.len()).sum()
    }
}

/// Protocol names and numbers as iptables and nft spell them.
pub fn proto_number(name: &str) -> Option<u8> {
    Some(match name.to_ascii_lowercase().as_str() {
        "tcp" => 6,
        "udp" => 17,
        "icmp" => 1,
        "icmpv6" | "ipv6-icmp" | "icmp6" => 58,
        "sctp" => 132,
        "dccp" => 33,
        "udplite" => 136,
        "gre" => 47,
        "esp" => 50,
        "ah" => 51,
        "ipip" | "ipencap" => 4,
        "ipv6" => 41,
        "igmp" => 2,
        "ospf" => 89,
        "vrrp" => 112,
        "all" => return None,
        n => return n.parse().ok(),
    })
}

pub fn proto_name(n: u8) -> String {
    match n {
        6 => "tcp".into(),
        17 => "udp".into(),
        1 => "icmp".into(),
        58 => "ipv6-icmp".into(),
        132 => "sctp".into(),
        47 => "gre".into(),
        50 => "esp".into(),
        _ => n.to_string(),
    }
}

pub fn proto_of(p: Proto, v6: bool) -> u8 {
    p.number(v6)
}

/// Parses `a.b.c.d`, `a.b.c.d/len`, `a.b.c.d/m.a.s.k`, IPv6 forms. Non-contiguous masks are refused.
pub fn parse_net(s: &str) -> Option<Val> {
    let (a, l) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let addr: IpAddr = a.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = match l {
        None => max,
        Some(l) => match l.parse::<u8>() {
            Ok(n) if n <= max => n,
            Ok(_) => return None,
            Err(_) => {
                let m: IpAddr = l.parse().ok()?;
                let bits: u128 = match (addr, m) {
                    (IpAddr::V4(_), IpAddr::V4(m)) => (u32::from(m) as u128) << 96,
                    (IpAddr::V6(_), IpAddr::V6(m)) => u128::from(m),
                    _ => return None,
                };
                let ones = bits.leading_ones();
                if bits.checked_shl(ones).unwrap_or(0) != 0 {
                    return None;
                }
                ones as u8
            }
        },
    };
    Some(Val::Net { addr, len })
}

fn addr_bits(a: IpAddr) -> (u128, u8) {
    match a {
        IpAddr::V4(v) => (u32::from(v) as u128, 32),
        IpAddr::V6(v) => (u128::from(v), 128),
    }
}

pub fn net_contains(net: IpAddr, len: u8, a: IpAddr) -> bool {
    if net.is_ipv4() != a.is_ipv4() {
        return false;
    }
    let (n, max) = addr_bits(net);
    let (x, _) = addr_bits(a);
    if len == 0 {
        return true;
    }
    let shift = (max - len.min(max)) as u32;
    (n >> shift) == (x >> shift)
}

pub fn addr_in_range(lo: IpAddr, hi: IpAddr, a: IpAddr) -> bool {
    if lo.is_ipv4() != a.is_ipv4() || hi.is_ipv4() != a.is_ipv4() {
        return false;
    }
    let (l, _) = addr_bits(lo);
    let (h, _) = addr_bits(hi);
    let (x, _) = addr_bits(a);
    l <= x && x <= h
}

/// Interface pattern match: exact, or a prefix when `wildcard`.
pub fn iface_matches(pattern: &str, wildcard: bool, name: &str) -> bool {
    if wildcard { name.starts_with(pattern) } else { name == pattern }
}

impl fmt::Display for Val {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Val::Iface { name, wildcard } => write!(f, "{name}{}", if *wildcard { "*" } else { "" }),
            Val::Net { addr, len } => {
                let max = if addr.is_ipv4() { 32 } else { 128 };
                if *len == max { write!(f, "{addr}") } else { write!(f, "{addr}/{len}") }
            }
            Val::AddrRange(a, b) => write!(f, "{a}-{b}"),
            Val::Range(a, b) if a == b => write!(f, "{a}"),
            Val::Range(a, b) => write!(f, "{a}-{b}"),
            Val::Masked { value, mask } => write!(f, "{value:#x}/{mask:#x}"),
            Val::Flags(b) => write!(f, "{b:#x}"),
        }
    }
}
