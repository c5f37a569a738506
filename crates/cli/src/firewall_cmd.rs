//! `hostreach firewall explain`: which rule, in which backend, decides one packet.

use crate::cli::Format;
use crate::exit;
use clap::{Args, Subcommand, ValueEnum};
use hostreach_firewall::docker::DaemonAnswer;
use hostreach_firewall::ufw::UfwConfig;
use hostreach_firewall::{Context, CtState, Decision, Packet, PathKind, Proto, Rulesets};
use std::net::IpAddr;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct FirewallArgs {
    #[command(subcommand)]
    pub command: FirewallCommand,
}

#[derive(Debug, Subcommand)]
pub enum FirewallCommand {
    /// Which rule, in which backend, decides one packet (this host's live rules, or saved ones).
    Explain(ExplainArgs),
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The interface the packet comes in on (docker0, br-1a2b3c4d5e6f).
    #[arg(long = "in", value_name = "IFACE")]
    pub iif: String,
    /// The interface it leaves by, on the forwarding path (evaluates -o / oifname matches there).
    #[arg(long = "out", value_name = "IFACE")]
    pub oif: Option<String>,
    #[arg(long, value_name = "IP")]
    pub src: IpAddr,
    #[arg(long, value_name = "IP")]
    pub dst: IpAddr,
    #[arg(long, value_enum, default_value_t = ProtoArg::Tcp)]
    pub proto: ProtoArg,
    /// Destination port (tcp and udp).
    #[arg(long, value_name = "N")]
    pub dport: Option<u16>,
    /// Source port; without it, source-port matches are reported as not evaluable.
    #[arg(long, value_name = "N")]
    pub sport: Option<u16>,
    /// ICMP type for --proto icmp (default: echo-request).
    #[arg(long, value_name = "N")]
    pub icmp_type: Option<u8>,
    /// Conntrack state of the packet (a connection's first packet is new).
    #[arg(long, value_enum, default_value_t = StateArg::New)]
    pub state: StateArg,
    /// iptables-save (or ip6tables-save) output to evaluate instead of the live rules; may be repeated.
    #[arg(long, value_name = "FILE")]
    pub iptables_save: Vec<PathBuf>,
    /// `nft -j list ruleset` output to evaluate instead of the live rules.
    #[arg(long, value_name = "FILE")]
    pub nft_json: Option<PathBuf>,
    /// input (local delivery) or forward; default: input when this host owns --dst, forward otherwise.
    #[arg(long, value_enum)]
    pub path: Option<PathArg>,
    /// A saved copy of UFW's files (default-ufw or default/ufw, ufw.conf, the *.rules) to read
    /// instead of this host's /etc/default/ufw and /etc/ufw.
    #[arg(long, value_name = "DIR")]
    pub ufw_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProtoArg {
    Tcp,
    Udp,
    Icmp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PathArg {
    Input,
    Forward,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StateArg {
    New,
    Established,
    Related,
    Invalid,
}

pub fn run(rt: &tokio::runtime::Runtime, args: &FirewallArgs, format: Format, docker_host: Option<&str>) -> i32 {
    match &args.command {
        FirewallCommand::Explain(a) => match explain(rt, a, docker_host) {
            Ok(e) => {
                print(format, &e);
                match e.decision {
                    Decision::Accept => exit::OK,
                    _ => exit::DIAGNOSED,
                }
            }
            Err(f) => {
                exit::print_line(&f.message);
                f.code
            }
        },
    }
}

fn print(format: Format, e: &hostreach_firewall::Explanation) {
    crate::render::print(format, e, hostreach_firewall::text::render);
}

fn read_file(p: &PathBuf) -> Result<String, exit::Failure> {
    std::fs::read(p)
        .map_err(|e| exit::Failure::usage(format!("cannot read {}: {e}", p.display())))
        .and_then(|b| String::from_utf8(b).map_err(|_| exit::Failure::usage(format!("{}: not UTF-8 text", p.display()))))
}

/// UFW's files as the firewall engine takes them, and notes on what could not be read.
pub fn ufw_config(files: hostreach_collect::ufw::UfwFiles) -> UfwConfig {
    let read: Vec<(String, String, String)> = files.files.into_iter().map(|f| (f.path, f.read_from.display().to_string(), f.text)).collect();
    UfwConfig::from_files(
        read.iter().map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str())),
        files.missing,
        files.saved_copy.map(|d| d.display().to_string()),
    )
}

/// What the Docker daemon says about itself, if one answers within a second or two; `None` otherwise.
pub fn daemon_answer(rt: &tokio::runtime::Runtime, docker_host: Option<&str>) -> Option<DaemonAnswer> {
    let endpoint = hostreach_collect::docker::endpoint(docker_host);
    rt.block_on(async {
        let ask = async {
            let client = hostreach_collect::docker::DockerClient::connect(&endpoint).await.ok()?;
            client.daemon().await.ok()
        };
        tokio::time::timeout(std::time::Duration::from_secs(2), ask).await.ok().flatten()
    })
    .map(|d| DaemonAnswer { version: d.version, firewall_backend: d.firewall_backend })
}

/// The network of the ingress interface's address that holds `src` (fd00:6872::/64, 172.17.0.0/16).
fn src_network(h: &hostreach_model::NetnsFacts, iif: &str, src: IpAddr) -> Option<String> {
    let link = h.link_by_name(iif)?;
    h.addresses.iter().filter(|a| a.index == link.index && a.address.is_ipv4() == src.is_ipv4()).find_map(|a| {
        let full = if a.address.is_ipv4() { 32 } else { 128 };
        if a.prefix_len == 0 || a.prefix_len >= full || !hostreach_firewall::ir::net_contains(a.address, a.prefix_len, src) {
            return None;
        }
        let net = match a.address {
            IpAddr::V4(v) => IpAddr::from(std::net::Ipv4Addr::from(u32::from(v) & (u32::MAX << (32 - a.prefix_len as u32)))),
            IpAddr::V6(v) => IpAddr::from(std::net::Ipv6Addr::from(u128::from(v) & (u128::MAX << (128 - a.prefix_len as u32)))),
        };
        Some(format!("{net}/{}", a.prefix_len))
    })
}

fn explain(rt: &tokio::runtime::Runtime, a: &ExplainArgs, docker_host: Option<&str>) -> Result<hostreach_firewall::Explanation, exit::Failure> {
    let proto = match a.proto {
        ProtoArg::Tcp => Proto::Tcp,
        ProtoArg::Udp => Proto::Udp,
        ProtoArg::Icmp => Proto::Icmp,
    };
    if proto.has_ports() && a.dport.is_none() {
        return Err(exit::Failure::usage(format!("--proto {proto} needs --dport N")));
    }
    if a.src.is_ipv4() != a.dst.is_ipv4() {
        return Err(exit::Failure::usage("--src and --dst must be of the same family (both IPv4 or both IPv6)"));
    }
    if a.iif.is_empty() || a.iif.len() > 15 {
        return Err(exit::Failure::usage(format!("--in {:?} is not an interface name", a.iif)));
    }
    // The rules: files, or this host's live ones.
    let saved = !a.iptables_save.is_empty() || a.nft_json.is_some();
    let (rules, mut notes) = if saved {
        let texts: Vec<(String, String)> = a.iptables_save.iter().map(|p| Ok((p.display().to_string(), read_file(p)?))).collect::<Result<_, exit::Failure>>()?;
        let nft = match &a.nft_json {
            Some(p) => Some((p.display().to_string(), read_file(p)?)),
            None => None,
        };
        let rs = Rulesets::from_texts(texts.iter().map(|(n, t)| (n.as_str(), t.as_str())), nft.as_ref().map(|(n, t)| (n.as_str(), t.as_str())))
            .map_err(|e| exit::Failure::usage(e.to_string()))?;
        (rs, Vec::new())
    } else {
        let live = hostreach_collect::firewall::read_live().map_err(exit::Failure::from_collect)?;
        let mut notes = Vec::new();
        if let Some(g) = live.gaps() {
            notes.push(format!("partial answer: {g}"));
        }
        let rs = Rulesets::from_texts(
            live.iptables.iter().map(|c| (c.tool.as_str(), c.text.as_str())),
            live.nft_json.as_ref().map(|c| (c.tool.as_str(), c.text.as_str())),
        )
        .map_err(|e| exit::Failure::cannot(format!("the live rules could not be parsed: {e} (please report it)")))?;
        (rs, notes)
    };
    // UFW's files: the saved copy given, else this host's (live rules only).
    let ufw = match &a.ufw_dir {
        Some(dir) => Some(ufw_config(hostreach_collect::ufw::read_saved(dir).map_err(|e| exit::Failure::usage(format!("--ufw-dir: {e}")))?)),
        None if !saved => Some(ufw_config(hostreach_collect::ufw::read_live())),
        None => None,
    };
    // Docker's word on its firewall backend: only about this host's live rules.
    let docker = if saved { None } else { daemon_answer(rt, docker_host) };
    // The path: given, or from this host's addresses (not read for saved rules of a given path:
    // they say nothing about another host).
    let mut network = None;
    let wants_local = a.path.is_none() || !saved;
    let local: Option<Vec<IpAddr>> = match wants_local.then(hostreach_collect::netlink::read_current) {
        None => None,
        Some(Ok(f)) => {
            network = src_network(&f, &a.iif, a.src);
            Some(f.addresses.iter().map(|a| a.address).collect())
        }
        Some(Err(e)) => {
            if a.path.is_none() {
                return Err(exit::Failure::cannot(format!("cannot tell whether this host owns {} (give --path input|forward): {e}", a.dst)));
            }
            None
        }
    };
    let path = match a.path {
        Some(PathArg::Input) => PathKind::Input,
        Some(PathArg::Forward) => PathKind::Forward,
        None => {
            let owns = local.as_ref().is_some_and(|l| l.contains(&a.dst)) || a.dst.is_loopback();
            if owns { PathKind::Input } else { PathKind::Forward }
        }
    };
    let mut pkt = Packet::new(a.iif.clone(), a.src, a.dst, proto, a.dport, path);
    pkt.oif = a.oif.clone();
    pkt.sport = a.sport;
    pkt.icmp_type = a.icmp_type;
    pkt.ct_state = match a.state {
        StateArg::New => CtState::New,
        StateArg::Established => CtState::Established,
        StateArg::Related => CtState::Related,
        StateArg::Invalid => CtState::Invalid,
    };
    if wants_local {
        pkt.local_addresses = local;
        pkt.src_network = network;
    }
    let cx = Context { ufw, docker, live: !saved };
    let mut e = hostreach_firewall::explain_with(&rules, &pkt, &cx);
    notes.append(&mut e.notes);
    e.notes = notes;
    // The command ends with this answer: freeing tens of thousands of parsed rules one by one
    // would only delay it (the process exits right after printing).
    std::mem::forget(rules);
    Ok(e)
}
