//! What a diagnosis says: the verdict, the path, findings with evidence and fixes. This is the JSON
//! contract of `hostreach doctor` (`schema: hostreach/v1`).

use crate::facts::{DropEvent, NetworkMode, ProbeOutcome, SocketFact};
use crate::target::Proto;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;

pub const SCHEMA: &str = "hostreach/v1";

/// Verdict and finding codes. The contract's verdict codes, then the finding codes hostreach adds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Code {
    Ok,
    ContainerLoopback,
    HostAliasUnresolved,
    NameUnresolved,
    ServiceNotListening,
    LoopbackOnlyBind,
    BoundToOtherAddress,
    FirewallDrop,
    FirewallReject,
    NoRoute,
    NetworkNone,
    MacvlanHostIsolation,
    MtuBlackhole,
    MtuMismatch,
    EphemeralPortsExhausted,
    ListenBacklogOverflow,
    ConntrackFull,
    Unknown,
    // Findings beyond the verdict list.
    /// The container shares the host's network namespace (info).
    HostNetworkMode,
    /// Drop reasons could not be recorded (no tracefs, not root): the verdict rests on the probe alone.
    DropReasonsUnavailable,
    /// The service also listens only on loopback, so the fix for the target alone is not enough.
    AlsoLoopbackOnly,
    /// Reverse-path filtering (rp_filter) dropped the container's packet (drop reason IP_RPFILTER).
    RpFilterDrop,
}

impl Code {
    pub fn as_str(&self) -> &'static str {
        match self {
            Code::Ok => "OK",
            Code::ContainerLoopback => "CONTAINER_LOOPBACK",
            Code::HostAliasUnresolved => "HOST_ALIAS_UNRESOLVED",
            Code::NameUnresolved => "NAME_UNRESOLVED",
            Code::ServiceNotListening => "SERVICE_NOT_LISTENING",
            Code::LoopbackOnlyBind => "LOOPBACK_ONLY_BIND",
            Code::BoundToOtherAddress => "BOUND_TO_OTHER_ADDRESS",
            Code::FirewallDrop => "FIREWALL_DROP",
            Code::FirewallReject => "FIREWALL_REJECT",
            Code::NoRoute => "NO_ROUTE",
            Code::NetworkNone => "NETWORK_NONE",
            Code::MacvlanHostIsolation => "MACVLAN_HOST_ISOLATION",
            Code::MtuBlackhole => "MTU_BLACKHOLE",
            Code::MtuMismatch => "MTU_MISMATCH",
            Code::EphemeralPortsExhausted => "EPHEMERAL_PORTS_EXHAUSTED",
            Code::ListenBacklogOverflow => "LISTEN_BACKLOG_OVERFLOW",
            Code::ConntrackFull => "CONNTRACK_FULL",
            Code::Unknown => "UNKNOWN",
            Code::HostNetworkMode => "HOST_NETWORK_MODE",
            Code::DropReasonsUnavailable => "DROP_REASONS_UNAVAILABLE",
            Code::AlsoLoopbackOnly => "ALSO_LOOPBACK_ONLY",
            Code::RpFilterDrop => "RP_FILTER_DROP",
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Error,
}

/// The hops of the container-to-host path, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Hop {
    /// The container's own resolver view: /etc/hosts, resolv.conf, DNS.
    ContainerResolver,
    /// The container's loopback: a target that never leaves the container.
    ContainerLoopback,
    /// The container's eth0 (or its only interface).
    ContainerEth0,
    /// The host-side veth peer.
    HostVeth,
    /// The bridge (docker0, br-<id>).
    Bridge,
    /// The host's routing decision.
    HostRoute,
    /// The host's firewall on the local-delivery path (PREROUTING, INPUT).
    HostInput,
    /// The listening socket on the host.
    HostSocket,
    /// The parent interface of a macvlan/ipvlan container interface, on the host.
    MacvlanParent,
    /// The host's interface towards a target it does not own (its route's device).
    HostEgress,
    /// A tunnel device (vxlan, geneve, wireguard, ipip, gre) on the way.
    Tunnel,
}

impl Hop {
    pub fn as_str(&self) -> &'static str {
        match self {
            Hop::ContainerResolver => "container-resolver",
            Hop::ContainerLoopback => "container-loopback",
            Hop::ContainerEth0 => "container-eth0",
            Hop::HostVeth => "host-veth",
            Hop::Bridge => "bridge",
            Hop::HostRoute => "host-route",
            Hop::HostInput => "host-input",
            Hop::HostSocket => "host-socket",
            Hop::MacvlanParent => "macvlan-parent",
            Hop::HostEgress => "host-egress",
            Hop::Tunnel => "tunnel",
        }
    }
}

impl fmt::Display for Hop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The whole answer of `hostreach doctor` for one subject and target.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub schema: String,
    pub verdict: Verdict,
    pub target: TargetReport,
    pub container: Option<ContainerReport>,
    pub path: Vec<PathHop>,
    pub findings: Vec<Finding>,
    /// What could not be checked, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<crate::facts::Skipped>,
    /// The Docker daemon: version, firewall backend, the settings that matter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daemon: Option<crate::facts::DaemonFacts>,
    /// `doctor --all`: where in the container's configuration the target was found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovered_from: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub code: Code,
    pub summary: String,
    pub hop: Option<Hop>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetReport {
    pub input: String,
    pub address: Option<IpAddr>,
    pub port: u16,
    pub proto: Proto,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerReport {
    pub id: String,
    pub name: String,
    pub pid: Option<u32>,
    pub network_mode: NetworkMode,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HopStatus {
    /// The packet passed this hop.
    Passed,
    /// The packet failed here.
    Failed,
    /// The packet never got here.
    NotReached,
    /// Not enough evidence to say.
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathHop {
    pub hop: Hop,
    /// The interface or chain or socket this hop is (eth0, veth1a2b3c, docker0, INPUT, 127.0.0.1:5432).
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    pub status: HopStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub code: Code,
    pub severity: Severity,
    pub summary: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hop: Option<Hop>,
    pub evidence: Vec<Evidence>,
    pub fix: Vec<Fix>,
}

/// A fact the kernel, the daemon or a file gave, quoted in a finding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Evidence {
    /// The active probe's outcome.
    Probe {
        proto: Proto,
        source: Option<String>,
        destination: String,
        outcome: ProbeOutcome,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        elapsed_ms: u64,
        /// Namespace the probe ran in (the container's, or the host's).
        netns: String,
    },
    /// A drop reported by `skb:kfree_skb`.
    DropReason {
        reason: String,
        location: String,
        pid: u32,
        comm: String,
        attributed: bool,
        line: String,
    },
    /// A socket table line, as sock_diag reported it, with its owner.
    Socket {
        proto: Proto,
        local: String,
        state: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        v6only: Option<bool>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pid: Option<u32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        process: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        cmdline: Option<String>,
    },
    /// A firewall rule that decided (issue: firewall explain fills it).
    Rule {
        backend: String,
        table: String,
        chain: String,
        rule: String,
        /// ufw, firewalld, docker, plain: who manages the rule.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        manager: Option<String>,
        /// Packets the rule counted while the probe was sent again.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        counter_delta: Option<u64>,
        /// Every match of the walk was evaluated (or the unknown ones cannot change the answer).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        certain: Option<bool>,
    },
    /// A route or the lack of one.
    Route { netns: String, detail: String },
    /// A line of the subject's /etc/hosts, or the fact that no line matched.
    Hosts {
        path: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        line: Option<usize>,
        #[serde(skip_serializing_if = "Option::is_none")]
        entry: Option<String>,
        detail: String,
    },
    /// A DNS query from inside the subject's namespace.
    Dns { server: String, qtype: String, outcome: String, answers: Vec<String> },
    /// A sysctl value.
    Sysctl { name: String, value: String, namespace: String },
    /// Something Docker's Engine API reported.
    Docker { field: String, value: String },
    /// An address the host owns, and on which interface.
    Address { address: String, interface: String },
    /// Evidence that could not be collected, and why: never replaced by a guess.
    Missing { what: String, why: String },
    /// A resource against its limit in one namespace (issue 5): `ephemeral-ports`, `accept-queue`,
    /// `listen-overflows`, `conntrack`, with the numbers.
    Pressure {
        resource: String,
        namespace: String,
        used: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        limit: Option<u64>,
        detail: String,
    },
    /// An MTU: of an interface or route on the path, or what the DF probes found (`path_mtu`, in `probes`).
    Mtu {
        detail: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        path_mtu: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        probes: Option<u32>,
    },
}

impl Evidence {
    pub fn socket(s: &SocketFact) -> Evidence {
        Evidence::Socket {
            proto: s.proto,
            local: s.local_endpoint(),
            state: s.state.to_string(),
            v6only: s.v6only,
            pid: s.process.as_ref().map(|p| p.pid),
            process: s.process.as_ref().map(|p| p.name.clone()),
            cmdline: s.process.as_ref().and_then(|p| p.cmdline.clone()),
        }
    }

    pub fn drop(d: &DropEvent) -> Evidence {
        Evidence::DropReason {
            reason: d.reason.clone(),
            location: d.location.clone(),
            pid: d.pid,
            comm: d.comm.clone(),
            attributed: d.attributed,
            line: d.raw.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fix {
    pub summary: String,
    /// Exact commands or config lines, one per entry.
    pub commands: Vec<String>,
}

impl Fix {
    pub fn new(summary: impl Into<String>, commands: impl IntoIterator<Item = String>) -> Fix {
        Fix { summary: summary.into(), commands: commands.into_iter().collect() }
    }
}

/// `doctor --all`: one report per container and target.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AllReport {
    pub schema: String,
    pub results: Vec<Report>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_serialise_as_the_contract_spells_them() {
        for c in [Code::Ok, Code::LoopbackOnlyBind, Code::HostAliasUnresolved, Code::FirewallReject, Code::Unknown] {
            assert_eq!(serde_json::to_value(c).unwrap(), serde_json::Value::String(c.as_str().into()));
        }
        assert_eq!(serde_json::to_value(Hop::HostSocket).unwrap(), "host-socket");
        assert_eq!(serde_json::to_value(Severity::Warning).unwrap(), "warning");
    }

    #[test]
    fn evidence_is_tagged_by_kind() {
        let e = Evidence::Missing { what: "drop-reasons".into(), why: "no tracefs".into() };
        let v = serde_json::to_value(e).unwrap();
        assert_eq!(v["kind"], "missing");
        let e = Evidence::DropReason {
            reason: "NO_SOCKET".into(),
            location: "tcp_v4_rcv+0x1".into(),
            pid: 1,
            comm: "x".into(),
            attributed: true,
            line: String::new(),
        };
        assert_eq!(serde_json::to_value(e).unwrap()["kind"], "drop-reason");
    }
}
