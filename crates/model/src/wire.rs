//! The wire beyond the socket (issue 4): what `hostreach path` and `hostreach trace` report, and the
//! facts of the MTU search. Plain data, serialisable, no I/O.

use crate::facts::{DropEvent, NetworkMode, ProbeResult};
use crate::report::{ContainerReport, Finding, PathHop, TargetReport};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};

/// Link kinds (IFLA_INFO_KIND) that encapsulate: their MTU is the payload left after the tunnel's header.
pub const TUNNEL_KINDS: &[&str] =
    &["vxlan", "geneve", "wireguard", "ipip", "gre", "gretap", "ip6gre", "ip6gretap", "ip6tnl", "sit", "vti", "vti6", "bareudp", "erspan"];

/// Is a link of this kind a tunnel?
pub fn is_tunnel_kind(kind: Option<&str>) -> bool {
    kind.is_some_and(|k| TUNNEL_KINDS.contains(&k))
}

/// `hostreach path`: the container's side of the wire, one object (`schema: hostreach/v1`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PathReport {
    pub schema: String,
    pub container: Option<ContainerReport>,
    /// bridge, user-bridge, host, none, container, macvlan, ipvlan, overlay, other.
    pub network_mode: Option<NetworkMode>,
    /// HostConfig.NetworkMode as Docker reports it (`container:<id>` names the namespace's owner).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network_mode_raw: Option<String>,
    /// The Docker networks the container is attached to.
    pub networks: Vec<NetworkReport>,
    /// The interfaces of the container's namespace, with their peers on the host.
    pub interfaces: Vec<InterfaceReport>,
    /// The routes of the container's namespace (main table).
    pub routes: Vec<RouteReport>,
    /// With `--to`: the target, as resolved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<TargetReport>,
    /// The hops from the container's interface towards the target (or towards the host's bridge without
    /// `--to`), each with its MTU.
    pub hops: Vec<PathHop>,
    /// The MTUs along the hops compared.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtu: Option<MtuComparison>,
    /// What the wire alone shows (NO_ROUTE, MTU_MISMATCH risk, MACVLAN_HOST_ISOLATION, ...).
    pub findings: Vec<Finding>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<crate::facts::Skipped>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkReport {
    pub name: String,
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    /// docker0, br-<id> for bridge networks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bridge: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subnet: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceReport {
    pub name: String,
    pub index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    pub up: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// `172.17.0.2/16`, `fe80::1/64`.
    pub addresses: Vec<String>,
    /// Its other end on the host: the veth peer (by IFLA_LINK), or a macvlan/ipvlan's parent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_side: Option<HostSide>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostSide {
    /// `veth-peer` or `parent`.
    pub relation: String,
    pub index: u32,
    /// None when the host's links could not be read (the index is still IFLA_LINK's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// The bridge the peer is enslaved to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub master: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteReport {
    /// `default` or `172.17.0.0/16`.
    pub destination: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dev: Option<String>,
    /// unicast, unreachable, blackhole, ...
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<IpAddr>,
}

/// The MTUs along the path, compared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MtuComparison {
    /// The MTU of the container's interface towards the target: the largest packet it sends.
    pub container: Option<u32>,
    /// The smallest MTU on the hops (interfaces and route metrics).
    pub smallest: Option<u32>,
    /// The hop with the smallest MTU.
    pub smallest_at: Option<String>,
    /// A tunnel on the way (its kind), which lowers the MTU by its header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<String>,
    /// The container sends packets larger than some hop carries.
    pub mismatch: bool,
}

/// The MTU search: probes with DF set from inside the subject's namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MtuSearch {
    pub destination: Option<IpAddr>,
    /// `icmp-echo` (raw ICMP socket with IP_PMTUDISC_PROBE).
    pub method: String,
    /// The MTU of the subject's interface towards the destination: the upper bound of the search.
    pub interface_mtu: Option<u32>,
    /// Every probe sent, in order. `size` is the whole IP packet.
    pub attempts: Vec<MtuAttempt>,
    /// The largest IP packet that got an answer.
    pub largest_passing: Option<u32>,
    /// The smallest IP packet that did not.
    pub smallest_failing: Option<u32>,
    /// The next-hop MTU an ICMP "fragmentation needed" (ICMPv6 "packet too big") reported, and who sent it.
    pub frag_needed_mtu: Option<u32>,
    pub frag_needed_from: Option<IpAddr>,
    /// The path MTU, when the search pinned it down (largest passing + 1 = smallest failing, or every size passed).
    pub path_mtu: Option<u32>,
    /// The TCP transfer with full-sized segments, when a TCP target was given.
    pub tcp: Option<TcpTransfer>,
    /// Why the search could not conclude (no echo reply at any size, no raw socket, ...).
    pub error: Option<String>,
    pub elapsed_ms: u64,
}

impl MtuSearch {
    pub fn probes(&self) -> usize {
        self.attempts.len()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MtuAttempt {
    /// The IP packet size (headers included).
    pub size: u32,
    pub outcome: MtuOutcome,
    /// For `frag-needed`: the MTU the ICMP error reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<IpAddr>,
    pub elapsed_us: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MtuOutcome {
    /// The echo reply came back.
    Passed,
    /// An ICMP "fragmentation needed" / "packet too big" came back.
    FragNeeded,
    /// Nothing came back before the wait ended.
    Lost,
    /// The local kernel refused to send it (EMSGSIZE and the like).
    LocalError,
    /// Another ICMP error (unreachable, ...) came back.
    Unreachable,
}

/// A TCP connection that sends full-sized segments and watches the kernel's own view (TCP_INFO).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpTransfer {
    pub destination: SocketAddr,
    pub connected: bool,
    pub bytes_sent: u64,
    pub bytes_acked: u64,
    /// All sent bytes were acknowledged before the wait ended.
    pub complete: bool,
    /// tcpi_pmtu: the path MTU the kernel uses for this connection.
    pub pmtu: Option<u32>,
    /// tcpi_snd_mss at the start and at the end.
    pub mss_start: Option<u32>,
    pub mss_end: Option<u32>,
    /// tcpi_total_retrans.
    pub retransmits: u32,
    pub elapsed_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `hostreach trace`: both sides of the wire during one probe.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TraceReport {
    pub schema: String,
    pub container: Option<ContainerReport>,
    pub target: TargetReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe: Option<ProbeResult>,
    /// One per capture point, in the packet's order (container side first).
    pub points: Vec<CapturePoint>,
    /// Every captured packet of the flow, in time order, decoded.
    pub packets: Vec<PacketSummary>,
    /// The kernel's drop reasons recorded during the probe.
    pub drops: Vec<DropEvent>,
    /// One sentence: where the flow stopped, by the capture and the drop reasons.
    pub summary: String,
    /// doctor's verdict on the same facts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<crate::report::Verdict>,
    /// The pcapng written with --write.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pcapng: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<crate::facts::Skipped>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapturePoint {
    /// container-eth0 or host-veth (the hop names of the path).
    pub hop: String,
    pub interface: String,
    /// container or host.
    pub netns: String,
    /// The kernel BPF filter attached to the socket, as text.
    pub filter: String,
    pub packets: u32,
    pub seen: Seen,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What one capture point saw of the probe's flow.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    /// The first packet of the flow (TCP SYN, the UDP datagram, the ICMP echo request), from the container.
    pub request: u32,
    /// The answer (SYN-ACK, a UDP reply, an echo reply), towards the container.
    pub reply: u32,
    /// TCP resets, and from which side (`to-container` / `from-container`).
    pub rst: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rst_directions: Vec<String>,
    /// ICMP errors about the flow (`destination unreachable (port)`, `fragmentation needed (mtu 1400)`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub icmp_errors: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PacketSummary {
    /// Microseconds since the first packet of the capture.
    pub t_us: u64,
    pub hop: String,
    pub interface: String,
    /// `in` or `out`, as the capture point's interface saw it.
    pub direction: String,
    pub length: u32,
    /// `172.17.0.2:40112 → 172.17.0.1:5432 TCP [SYN]`.
    pub summary: String,
}
