//! The one packet whose fate is explained.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
    Icmp,
}

impl Proto {
    /// The IP protocol number (ICMPv6 for an IPv6 packet).
    pub fn number(self, v6: bool) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
            Proto::Icmp if v6 => 58,
            Proto::Icmp => 1,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Icmp => "icmp",
        }
    }
    pub fn has_ports(self) -> bool {
        matches!(self, Proto::Tcp | Proto::Udp)
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which way the kernel sends the packet after the routing decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PathKind {
    /// Local delivery: PREROUTING, routing (local), INPUT. Container to any address the host owns.
    Input,
    /// Forwarding: PREROUTING, routing, FORWARD, POSTROUTING.
    Forward,
}

impl PathKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PathKind::Input => "input",
            PathKind::Forward => "forward",
        }
    }
}

/// Connection-tracking state of the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CtState {
    New,
    Established,
    Related,
    Invalid,
    Untracked,
}

impl CtState {
    /// Bit in the flag set shared by iptables (`--ctstate`) and nft (`ct state`).
    pub fn bit(self) -> u32 {
        match self {
            CtState::Invalid => 1,
            CtState::Established => 2,
            CtState::Related => 4,
            CtState::New => 8,
            CtState::Untracked => 64,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Packet {
    /// Ingress interface (docker0, br-1a2b3c4d5e6f, eth0).
    pub iif: String,
    /// Egress interface, forwarding path only; `None` makes `-o`/`oifname` matches not evaluable there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oif: Option<String>,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: Proto,
    /// Source port; `None` (an ephemeral port nobody knows) makes `--sport` matches not evaluable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sport: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dport: Option<u16>,
    /// ICMP type for `--proto icmp` (echo-request, 8, when not given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp_type: Option<u8>,
    pub ct_state: CtState,
    pub path: PathKind,
    /// The addresses this host owns, when known: evaluates `--src-type LOCAL` and re-routes after DNAT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_addresses: Option<Vec<IpAddr>>,
    /// The source's network (172.18.0.0/16), when known: used in fixes (`ufw allow from ...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_network: Option<String>,
}

impl Packet {
    /// A NEW connection's first packet.
    pub fn new(iif: impl Into<String>, src: IpAddr, dst: IpAddr, proto: Proto, dport: Option<u16>, path: PathKind) -> Packet {
        Packet {
            iif: iif.into(),
            oif: None,
            src,
            dst,
            proto,
            sport: None,
            dport,
            icmp_type: None,
            ct_state: CtState::New,
            path,
            local_addresses: None,
            src_network: None,
        }
    }
    pub fn is_v6(&self) -> bool {
        self.dst.is_ipv6()
    }
    pub fn icmp_type_or_default(&self) -> u8 {
        self.icmp_type.unwrap_or(if self.is_v6() { 128 } else { 8 })
    }
}

impl fmt::Display for Packet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let port = |p: Option<u16>| p.map(|p| format!(":{p}")).unwrap_or_default();
        let host = |a: IpAddr| if a.is_ipv6() { format!("[{a}]") } else { a.to_string() };
        write!(
            f,
            "{} {}{} -> {}{} in on {}",
            self.proto,
            host(self.src),
            port(self.sport),
            host(self.dst),
            port(self.dport),
            self.iif
        )?;
        if let Some(o) = &self.oif {
            write!(f, " out on {o}")?;
        }
        Ok(())
    }
}
