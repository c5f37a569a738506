//! What the collectors found. Everything here is plain data and serialises, so a bundle collected on
//! one host can be analysed on another (`hostreach doctor --save-facts` / `--facts`).

use crate::target::{Proto, Target};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};

/// All the facts one diagnosis uses.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Facts {
    /// hostreach's version that collected them.
    pub collector_version: String,
    /// The Docker daemon, when the subject is a Docker container.
    pub daemon: Option<DaemonFacts>,
    /// Who is diagnosed: a container, a PID or a namespace path.
    pub subject: Subject,
    /// The network namespace the probe runs in (the container's side of the wire).
    pub subject_net: Option<NetnsFacts>,
    /// The host's network namespace (the one dockerd runs in; where docker0 lives).
    pub host_net: Option<NetnsFacts>,
    /// Sockets in the host's network namespace, with their owners.
    pub host_sockets: Vec<SocketFact>,
    /// The target as typed, and how the subject resolves it.
    pub target: Option<Target>,
    pub resolution: Option<Resolution>,
    /// The active probe, when one ran.
    pub probe: Option<ProbeResult>,
    /// Drop reasons recorded by `skb:kfree_skb` during the probe.
    pub drops: DropTrace,
    /// Sysctls that matter for the diagnosis, read in the namespace they belong to.
    pub sysctls: Vec<SysctlFact>,
    /// What could not be collected, and why (privileges, missing tracefs, ...).
    pub skipped: Vec<Skipped>,
    /// Pressure of the host's and the subject's namespaces: ephemeral ports, accept queues,
    /// conntrack (issue 5).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pressure: Vec<crate::pressure::PressureFacts>,
    /// The MTU search (DF probes from inside the subject's namespace), when it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<crate::wire::MtuSearch>,
    /// The firewall's answer for the probe's packet, read when the probe pointed at the firewall.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firewall: Option<FirewallFacts>,
    /// Other running containers and their networks, read when a name did not resolve (it may be one of them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<PeerContainer>,
}

/// Which rule decides the probe's packet, from this host's live rules (hostreach-firewall), and
/// whether the rule's counter moved while the probe was sent again.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirewallFacts {
    /// accept, drop or reject.
    pub decision: String,
    pub backend: Option<String>,
    pub table: Option<String>,
    pub chain: Option<String>,
    /// The deciding rule as the user writes it (the policy when no rule decides).
    pub rule: String,
    /// ufw, firewalld, docker, plain.
    pub manager: String,
    /// Every match was evaluated, or the unknown ones cannot change the decision.
    pub certain: bool,
    /// Packets the deciding rule counted while the probe was sent again; None without counters.
    pub counter_delta: Option<u64>,
    /// The fixes in the manager's language, each verified by walking the packet again with it.
    pub fixes: Vec<crate::report::Fix>,
    pub notes: Vec<String>,
    /// Docker's firewall backend: as the daemon reports it (GET /info, Docker 28.1+), else inferred
    /// from the rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_firewall_backend: Option<DockerFirewallBackend>,
}

/// Docker's firewall backend, and how it is known.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DockerFirewallBackend {
    /// `iptables`, `iptables+firewalld`, `nftables`; None when neither the daemon nor the rules say.
    pub driver: Option<String>,
    /// `daemon` (reported) or `inferred` (from the rules).
    pub source: String,
    /// One sentence for people.
    pub summary: String,
}

impl DockerFirewallBackend {
    /// Docker's nftables backend: no DOCKER-USER chain.
    pub fn is_nftables(&self) -> bool {
        self.driver.as_deref().is_some_and(|d| d.starts_with("nftables"))
    }
}

/// Another running container: its name and the Docker networks it is on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerContainer {
    pub name: String,
    pub networks: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DaemonFacts {
    pub version: Option<String>,
    pub api_version: Option<String>,
    pub os: Option<String>,
    pub kernel_version: Option<String>,
    /// `GET /info` `FirewallBackend` (Docker 28.1+); None on older daemons.
    pub firewall_backend: Option<String>,
    /// The socket hostreach talked to.
    pub endpoint: String,
    /// The daemon's settings that matter for container-to-host traffic, from its configuration file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<DaemonSettings>,
}

/// What dockerd was configured with (daemon.json and its command line), for the keys that shape
/// container-to-host traffic. Absent keys are Docker's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonSettings {
    /// The file read (`--config-file`, else /etc/docker/daemon.json); None if there is none.
    pub config_file: Option<String>,
    /// The dockerd process found in this network namespace.
    pub pid: Option<u32>,
    pub bip: Option<String>,
    pub default_address_pools: Vec<String>,
    pub mtu: Option<u32>,
    pub host_gateway_ip: Option<String>,
    /// `iptables: false`: Docker manages no firewall rules.
    pub iptables: Option<bool>,
    pub userland_proxy: Option<bool>,
    pub dns: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Subject {
    #[default]
    None,
    Container(Box<ContainerFacts>),
    Pid { pid: u32, name: Option<String> },
    Netns { path: String },
}

impl Subject {
    pub fn container(&self) -> Option<&ContainerFacts> {
        match self {
            Subject::Container(c) => Some(c),
            _ => None,
        }
    }
    /// The PID whose root filesystem holds the subject's /etc/hosts and resolv.conf.
    pub fn pid(&self) -> Option<u32> {
        match self {
            Subject::Container(c) => c.pid,
            Subject::Pid { pid, .. } => Some(*pid),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NetworkMode {
    /// The default bridge (docker0).
    Bridge,
    /// A user-defined bridge network (compose networks).
    UserBridge,
    Host,
    None,
    /// `container:<id>`: shares another container's namespace.
    Container,
    Macvlan,
    Ipvlan,
    Overlay,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerFacts {
    pub id: String,
    pub name: String,
    pub image: Option<String>,
    pub running: bool,
    pub status: String,
    pub pid: Option<u32>,
    /// HostConfig.NetworkMode as Docker reports it (`default`, `bridge`, `host`, `none`, `container:ID`, a network name).
    pub network_mode_raw: String,
    pub network_mode: NetworkMode,
    pub networks: Vec<NetworkAttachment>,
    /// HostConfig.ExtraHosts (`--add-host`, compose `extra_hosts`), as given (`host.docker.internal:host-gateway`).
    pub extra_hosts: Vec<String>,
    /// HostConfig.Dns (`--dns`).
    pub dns: Vec<String>,
    /// The subject's /etc/hosts, parsed (read through /proc/PID/root).
    pub hosts: Vec<HostsEntry>,
    /// The subject's resolv.conf, parsed.
    pub resolv: Option<ResolvConf>,
}

/// The parts of a container's configuration that name what it connects to (environment, command,
/// labels). Deliberately not serialisable: environments hold secrets and are never saved as facts.
#[derive(Debug, Clone, Default)]
pub struct ContainerConfig {
    /// `KEY=VALUE` entries of Config.Env.
    pub env: Vec<String>,
    /// Entrypoint then Cmd.
    pub command: Vec<String>,
    pub labels: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkAttachment {
    pub name: String,
    pub network_id: String,
    pub driver: Option<String>,
    pub ip: Option<IpAddr>,
    pub prefix_len: Option<u8>,
    pub gateway: Option<IpAddr>,
    pub ipv6: Option<IpAddr>,
    pub ipv6_gateway: Option<IpAddr>,
    pub mac: Option<String>,
    pub subnet: Option<String>,
    /// The host bridge behind the network (docker0, br-<id>), when known.
    pub bridge: Option<String>,
}

/// One line of an /etc/hosts file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostsEntry {
    pub line: usize,
    pub address: IpAddr,
    pub names: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvConf {
    pub nameservers: Vec<IpAddr>,
    pub search: Vec<String>,
    pub options: Vec<String>,
}

/// Links, addresses and routes of one network namespace, read through netlink inside it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NetnsFacts {
    /// The namespace's inode (`/proc/PID/ns/net`), to tell namespaces apart.
    pub inode: Option<u64>,
    pub links: Vec<LinkFact>,
    pub addresses: Vec<AddrFact>,
    pub routes: Vec<RouteFact>,
}

impl NetnsFacts {
    pub fn link(&self, index: u32) -> Option<&LinkFact> {
        self.links.iter().find(|l| l.index == index)
    }
    pub fn link_by_name(&self, name: &str) -> Option<&LinkFact> {
        self.links.iter().find(|l| l.name == name)
    }
    pub fn addrs_of(&self, index: u32) -> impl Iterator<Item = &AddrFact> {
        self.addresses.iter().filter(move |a| a.index == index)
    }
    /// The link that owns `ip`, if this namespace owns it.
    pub fn owner_of(&self, ip: &IpAddr) -> Option<&LinkFact> {
        self.addresses.iter().find(|a| &a.address == ip).and_then(|a| self.link(a.index))
    }
    pub fn owns(&self, ip: &IpAddr) -> bool {
        self.addresses.iter().any(|a| &a.address == ip)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkFact {
    pub index: u32,
    pub name: String,
    /// veth, bridge, macvlan, vxlan, ... (IFLA_INFO_KIND); None for physical and loopback devices.
    pub kind: Option<String>,
    pub mtu: Option<u32>,
    pub up: bool,
    /// IFF_LOWER_UP (carrier).
    pub lower_up: bool,
    pub mac: Option<String>,
    /// IFLA_MASTER: the bridge this link is enslaved to.
    pub master: Option<u32>,
    /// IFLA_LINK: for a veth, the peer's ifindex (in the peer's namespace).
    pub peer_index: Option<u32>,
    /// IFLA_LINK_NETNSID: set when the peer lives in another namespace.
    pub peer_netnsid: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddrFact {
    pub index: u32,
    pub address: IpAddr,
    pub prefix_len: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteFact {
    /// None for the default route.
    pub destination: Option<IpAddr>,
    pub prefix_len: u8,
    pub gateway: Option<IpAddr>,
    pub oif: Option<u32>,
    pub table: u32,
    /// unicast, local, broadcast, unreachable, blackhole, prohibit, ...
    pub kind: String,
    pub preferred_source: Option<IpAddr>,
    pub mtu: Option<u32>,
}

/// One socket from sock_diag, with its owner from the /proc fd scan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocketFact {
    pub proto: Proto,
    pub local_address: IpAddr,
    pub local_port: u16,
    pub remote_address: Option<IpAddr>,
    pub remote_port: Option<u16>,
    /// LISTEN, ESTABLISHED, TIME_WAIT, ... (UDP: UNCONN or ESTABLISHED). Borrowed from a static
    /// name when collected (no allocation per socket on hosts with very many), owned when loaded.
    pub state: std::borrow::Cow<'static, str>,
    /// For AF_INET6 sockets: IPV6_V6ONLY. A `[::]` listener without it also takes IPv4.
    pub v6only: Option<bool>,
    /// The device the socket is bound to (SO_BINDTODEVICE), if any.
    pub bound_device: Option<u32>,
    pub inode: u64,
    pub uid: u32,
    /// Accept queue: current length (rqueue) and the backlog limit (wqueue) for listeners.
    pub recv_q: u32,
    pub send_q: u32,
    /// Shared by every socket of the process (a server holding 25,000 connections has one).
    pub process: Option<std::sync::Arc<ProcessRef>>,
}

impl SocketFact {
    pub fn is_listener(&self) -> bool {
        match self.proto {
            Proto::Tcp => self.state == "LISTEN",
            Proto::Udp => self.remote_address.is_none_or(|a| crate::target::is_unspecified(&a)),
        }
    }
    /// `ss`-style local endpoint: `127.0.0.1:5432`, `[::1]:5432`, `*:80`.
    pub fn local_endpoint(&self) -> String {
        std::net::SocketAddr::new(self.local_address, self.local_port).to_string()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRef {
    pub pid: u32,
    pub name: String,
    /// The command line, space-joined, when it could be read.
    pub cmdline: Option<String>,
}

/// How the subject resolved the target's name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolution {
    /// The name looked up; None when the target was an address or `host`.
    pub name: Option<String>,
    /// The address the probe will use, if any.
    pub address: Option<IpAddr>,
    /// Every address found.
    pub addresses: Vec<IpAddr>,
    pub source: ResolutionSource,
    /// DNS servers asked, with what each answered.
    pub dns_queries: Vec<DnsQuery>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ResolutionSource {
    /// The target was an address.
    Literal,
    /// `host`: the gateway of the container's network (or loopback in host mode).
    HostKeyword { network: Option<String>, via: String },
    /// A line of the subject's /etc/hosts.
    HostsFile { path: String, entry: HostsEntry },
    /// An answer from a DNS server of the subject's resolv.conf.
    Dns { server: IpAddr },
    /// `localhost` without a hosts entry: it is the loopback address by definition.
    Localhost,
    /// Nothing answered with an address.
    Unresolved,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsQuery {
    pub server: IpAddr,
    pub qtype: String,
    /// NOERROR, NXDOMAIN, SERVFAIL, REFUSED, timeout, connection-refused, error: ...
    pub outcome: String,
    pub answers: Vec<IpAddr>,
    pub elapsed_ms: u64,
}

/// The result of the active probe, run inside the subject's network namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeResult {
    pub proto: Proto,
    pub destination: SocketAddr,
    /// The local address the kernel chose.
    pub source: Option<SocketAddr>,
    pub outcome: ProbeOutcome,
    /// errno of the failure, and its name (ECONNREFUSED, ...).
    pub errno: Option<i32>,
    pub error: Option<String>,
    pub elapsed_ms: u64,
    pub timeout_ms: u64,
    /// The probe stopped early because the kernel reported a drop of its packet.
    pub concluded_by_drop: bool,
    /// The kernel thread id that sent the probe (used to attribute drop events).
    pub tid: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProbeOutcome {
    /// TCP handshake completed.
    Connected,
    /// TCP RST (ECONNREFUSED).
    Refused,
    /// ICMP unreachable (port, host, admin-prohibited) came back.
    Unreachable,
    /// No answer before the timeout (or before a drop was reported).
    NoAnswer,
    /// UDP: datagram sent, no ICMP error within the wait; says nothing about delivery.
    UdpNoError,
    /// The kernel had no route (ENETUNREACH) before sending anything.
    NoRoute,
    /// EADDRNOTAVAIL: no free local port / address.
    AddressNotAvailable,
    /// Another local error.
    Error,
}

/// Drop reasons from `skb:kfree_skb`, recorded in a private tracefs instance during the probe.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DropTrace {
    /// Whether tracing ran; when not, why.
    pub status: TraceStatus,
    pub events: Vec<DropEvent>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", content = "detail", rename_all = "kebab-case")]
pub enum TraceStatus {
    #[default]
    NotRun,
    Recorded,
    Unavailable(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DropEvent {
    /// The reason's name as the running kernel prints it (NO_SOCKET, NETFILTER_DROP, ...).
    pub reason: String,
    /// Where it was freed: `nft_do_chain+0x3c2/0x6a0`.
    pub location: String,
    /// Ethertype of the packet (2048 = IPv4, 34525 = IPv6).
    pub protocol: u16,
    pub pid: u32,
    pub comm: String,
    pub cpu: u32,
    /// Trace clock timestamp in seconds.
    pub timestamp: f64,
    /// The drop happened in the probe's own thread context: it is the probe's packet.
    pub attributed: bool,
    /// The trace line as the kernel wrote it.
    pub raw: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SysctlFact {
    pub name: String,
    pub value: String,
    /// host or subject.
    pub namespace: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// What was not collected (drop-reasons, socket-owners, ...).
    pub what: String,
    /// Why, and what would make it possible.
    pub why: String,
}
