//! `hostreach path`: the container's side of the wire (no probe): its interfaces and routes, the host veth
//! found through the link index, the bridge and its Docker network, the gateway, the network mode, and
//! with `--to` the hops towards the target with each hop's MTU. Also the steps doctor borrows from issue 4:
//! the rp_filter sysctls and the MTU search.

use crate::cli::{Format, ProtoArg};
use crate::exit::{self, Failure};
use clap::Args;
use hostreach_collect::docker::{self, DockerClient};
use hostreach_collect::mtu::{self, MtuSpec};
use hostreach_collect::netns::Netns;
use hostreach_collect::{netlink, resolve};
use hostreach_model::{
    Facts, HopStatus, NetworkMode, PathReport, Proto, Resolution, ResolutionSource, Severity, Skipped, Subject, SysctlFact, Target,
    TargetHost,
};
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("subject").required(true).args(["container", "pid", "netns"])))]
pub struct PathArgs {
    #[command(flatten)]
    pub subject: crate::subject::SubjectArgs,

    /// Also the hops towards this target: host:PORT, IP:PORT, NAME:PORT or a URL (no traffic is sent,
    /// except DNS queries to the container's own resolvers for a NAME).
    #[arg(long, value_name = "TARGET")]
    pub to: Option<String>,
    #[arg(long, value_enum, default_value_t = ProtoArg::Tcp)]
    pub proto: ProtoArg,
}

/// The subject and the facts of both sides of the wire.
pub struct Gathered {
    pub facts: Facts,
    pub netns: Option<Netns>,
    pub host_ns: Netns,
}

impl Gathered {
    /// The subject's namespace when it is not the host's.
    pub fn foreign_ns(&self) -> Option<&Netns> {
        self.netns.as_ref().filter(|ns| !ns.same_as(&self.host_ns))
    }
}

/// Docker (one container, its networks), netlink on both sides, and the target resolved the subject's way.
pub async fn gather(
    container: Option<&str>,
    pid: Option<u32>,
    netns_path: Option<&std::path::Path>,
    to: Option<&str>,
    proto: Proto,
    docker_host: Option<&str>,
) -> Result<Gathered, Failure> {
    let target = match to {
        Some(t) => Some(Target::parse(t, proto).map_err(|e| Failure::usage(e.to_string()))?),
        None => None,
    };
    let mut facts = Facts { collector_version: env!("CARGO_PKG_VERSION").to_string(), ..Default::default() };
    let mut netns = None;
    let mut subject_pid = None;
    if let Some(name) = container {
        let client = DockerClient::connect(&docker::endpoint(docker_host)).await.map_err(Failure::from_collect)?;
        let c = client.container(name).await.map_err(Failure::from_collect)?;
        if !c.running {
            return Err(Failure::cannot(format!("container {} is not running (state: {}): start it with `docker start {}`", c.name, c.status, c.name)));
        }
        subject_pid = Some(c.pid.ok_or_else(|| Failure::cannot(format!("the Docker daemon reports no PID for container {}", c.name)))?);
        facts.subject = Subject::Container(Box::new(c));
    } else if let Some(p) = pid {
        let comm = std::fs::read_to_string(format!("/proc/{p}/comm")).map_err(|_| Failure::cannot(format!("no process with PID {p}")))?;
        subject_pid = Some(p);
        facts.subject = Subject::Pid { pid: p, name: Some(comm.trim().to_string()) };
    } else if let Some(path) = netns_path {
        netns = Some(Netns::open(path).map_err(Failure::from_collect)?);
        facts.subject = Subject::Netns { path: path.display().to_string() };
    }
    if let Some(p) = subject_pid {
        match Netns::of_pid(p) {
            Ok(ns) => netns = Some(ns),
            Err(e) if e.is_permission() => facts.skipped.push(Skipped { what: "subject-netns".into(), why: e.to_string() }),
            Err(e) => return Err(Failure::from_collect(e)),
        }
    }
    let host_ns = Netns::current().map_err(Failure::from_collect)?;
    // Both sides at once: the subject's on its own thread (inside its namespace), the host's here.
    let sub_thread = match &netns {
        Some(ns) if !ns.same_as(&host_ns) => {
            let ns = Netns::open(ns.path()).map_err(Failure::from_collect)?;
            Some(std::thread::spawn(move || netlink::read(&ns).map(|mut s| {
                s.inode = Some(ns.inode());
                s
            })))
        }
        _ => None,
    };
    match netlink::read_current() {
        Ok(mut h) => {
            h.inode = Some(host_ns.inode());
            facts.host_net = Some(h);
        }
        Err(e) => facts.skipped.push(Skipped { what: "host-links".into(), why: e.to_string() }),
    }
    match sub_thread {
        Some(t) => match t.join() {
            Ok(Ok(s)) => facts.subject_net = Some(s),
            Ok(Err(e)) => facts.skipped.push(Skipped { what: "subject-links".into(), why: e.to_string() }),
            Err(_) => facts.skipped.push(Skipped { what: "subject-links".into(), why: "the netlink thread panicked".into() }),
        },
        None if netns.is_some() => facts.subject_net = facts.host_net.clone(),
        None => {}
    }
    if let Some(t) = &target {
        let resolution = match &t.host {
            TargetHost::Ip(ip) => Some(Resolution { name: None, address: Some(*ip), addresses: vec![*ip], source: ResolutionSource::Literal, dns_queries: vec![] }),
            TargetHost::Host => hostreach_rules::host_keyword_address(&facts).map(|(ip, via)| Resolution {
                name: None,
                address: Some(ip),
                addresses: vec![ip],
                source: ResolutionSource::HostKeyword { network: facts.subject.container().and_then(|c| c.networks.first()).map(|n| n.name.clone()), via },
                dns_queries: vec![],
            }),
            TargetHost::Name(name) => {
                let files = resolve::subject_files(if matches!(facts.subject, Subject::Netns { .. }) { None } else { subject_pid });
                let ns = netns.as_ref().filter(|ns| !ns.same_as(&host_ns));
                Some(resolve::resolve_name(name, &files, ns, Duration::from_secs(2)).map_err(Failure::from_collect)?)
            }
        };
        facts.resolution = resolution;
        facts.target = target;
    }
    Ok(Gathered { facts, netns, host_ns })
}

pub fn run(rt: &tokio::runtime::Runtime, args: &PathArgs, format: Format, docker_host: Option<&str>) -> i32 {
    let g = match rt.block_on(gather(args.subject.container.as_deref(), args.subject.pid, args.subject.netns.as_deref(), args.to.as_deref(), args.proto.into(), docker_host)) {
        Ok(g) => g,
        Err(f) => {
            exit::print_line(&f.message);
            return f.code;
        }
    };
    if args.to.is_some() && g.facts.resolution.as_ref().and_then(|r| r.address).is_none() {
        exit::print_line(&format!("{} does not resolve for this subject: `hostreach doctor` says why", args.to.as_deref().unwrap_or("")));
        return exit::DIAGNOSED;
    }
    let report = hostreach_rules::wirepath::path_report(&g.facts);
    crate::render::print(format, &report, text);
    if report.findings.iter().any(|f| f.severity == Severity::Error) { exit::DIAGNOSED } else { exit::OK }
}

fn mode_name(m: NetworkMode) -> String {
    serde_json::to_value(m).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

/// The report for a person.
pub fn text(r: &PathReport) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    if let Some(c) = &r.container {
        let short = &c.id[..c.id.len().min(12)];
        let raw = r.network_mode_raw.as_deref().filter(|m| m.starts_with("container:")).map(|m| format!(" ({m})")).unwrap_or_default();
        let _ = writeln!(o, "container {} ({short}) · pid {} · network mode {}{raw}", c.name, c.pid.unwrap_or(0), mode_name(c.network_mode));
    }
    for n in &r.networks {
        let mut line = format!("  network {}", n.name);
        if let Some(d) = &n.driver {
            let _ = write!(line, " ({d})");
        }
        if let Some(b) = &n.bridge {
            let _ = write!(line, " bridge {b}");
        }
        if let Some(s) = &n.subnet {
            let _ = write!(line, " subnet {s}");
        }
        if let Some(g) = n.gateway {
            let _ = write!(line, " gateway {g}");
        }
        if let Some(a) = n.address {
            let _ = write!(line, " address {a}");
        }
        let _ = writeln!(o, "{line}");
    }
    let _ = writeln!(o, "\ninterfaces");
    for i in &r.interfaces {
        let mut line = format!("  {:<10} {:<8} mtu {:<5} {}", i.name, i.kind.as_deref().unwrap_or("-"), i.mtu.map(|m| m.to_string()).unwrap_or_else(|| "?".into()), i.addresses.join(" "));
        if let Some(h) = &i.host_side {
            let _ = write!(
                line,
                "  ⇄ {} {} (ifindex {}{}{})",
                if h.relation == "parent" { "parent" } else { "host" },
                h.name.as_deref().unwrap_or("?"),
                h.index,
                h.mtu.map(|m| format!(", mtu {m}")).unwrap_or_default(),
                h.master.as_deref().map(|m| format!(", on {m}")).unwrap_or_default()
            );
        }
        let _ = writeln!(o, "{}", line.trim_end());
    }
    let _ = writeln!(o, "\nroutes");
    for rt in &r.routes {
        let mut line = format!("  {}", if rt.kind == "unicast" { rt.destination.clone() } else { format!("{} {}", rt.kind, rt.destination) });
        if let Some(g) = rt.gateway {
            let _ = write!(line, " via {g}");
        }
        if let Some(d) = &rt.dev {
            let _ = write!(line, " dev {d}");
        }
        if let Some(m) = rt.mtu {
            let _ = write!(line, " mtu {m}");
        }
        let _ = writeln!(o, "{line}");
    }
    if r.routes.is_empty() {
        let _ = writeln!(o, "  (none)");
    }
    if !r.hops.is_empty() {
        let to = r.target.as_ref().map(|t| format!(" to {}{}", t.input, t.address.map(|a| format!(" ({a})")).unwrap_or_default())).unwrap_or_default();
        let _ = writeln!(o, "\npath{to}");
        for h in &r.hops {
            let mark = match h.status {
                HopStatus::Passed => "✓",
                HopStatus::Failed => "✗",
                HopStatus::NotReached => "·",
                HopStatus::Unknown => "?",
            };
            let mut line = format!("  {mark} {:<15} {}", h.hop.as_str(), h.name);
            if let Some(a) = &h.address {
                let _ = write!(line, "  {a}");
            }
            if let Some(m) = h.mtu {
                let _ = write!(line, "  mtu {m}");
            }
            if let Some(d) = &h.detail {
                let _ = write!(line, "  {d}");
            }
            let _ = writeln!(o, "{line}");
        }
    }
    if let Some(m) = &r.mtu {
        let _ = writeln!(
            o,
            "\nmtu: container {} · smallest {}{}{}",
            m.container.map(|x| x.to_string()).unwrap_or_else(|| "?".into()),
            m.smallest.map(|x| x.to_string()).unwrap_or_else(|| "?".into()),
            m.smallest_at.as_deref().map(|s| format!(" at {s}")).unwrap_or_default(),
            m.tunnel.as_deref().map(|t| format!(" · {t} tunnel on the way")).unwrap_or_default()
        );
    }
    for f in &r.findings {
        let mark = match f.severity {
            Severity::Error => "✗",
            Severity::Warning => "!",
            Severity::Info => "i",
        };
        let _ = writeln!(o, "\n{mark} {}  {}", f.code, f.summary);
        for e in &f.evidence {
            let _ = writeln!(o, "    {}", crate::render::evidence_line(e));
        }
        for x in &f.fix {
            let _ = writeln!(o, "    → {}", x.summary);
            for c in &x.commands {
                let _ = writeln!(o, "        {c}");
            }
        }
    }
    if !r.skipped.is_empty() {
        let _ = writeln!(o, "\nnot checked");
        for s in &r.skipped {
            let _ = writeln!(o, "  - {}: {}", s.what, s.why);
        }
    }
    o
}

// ---------------------------------------------------------------------------------------------
// Steps doctor runs (issue 4).

/// Reads the reverse-path filter settings that decide for this wire (host namespace): all, default and
/// the bridge/veth the container's packets come in by. Three small files; always cheap.
pub fn sysctl_step(facts: &mut Facts) {
    let addr = facts.resolution.as_ref().and_then(|r| r.address);
    let w = hostreach_rules::path::wire(facts, addr.as_ref());
    let mut names = vec!["all".to_string(), "default".to_string()];
    names.extend(w.bridge.map(|b| b.name.clone()));
    names.extend(w.host_veth.map(|v| v.name.clone()));
    let same = hostreach_rules::wirepath::shares_host_netns(facts);
    if same {
        return;
    }
    for n in names {
        let path = format!("/proc/sys/net/ipv4/conf/{n}/rp_filter");
        if let Ok(v) = std::fs::read_to_string(&path) {
            facts.sysctls.push(SysctlFact { name: format!("net.ipv4.conf.{n}.rp_filter"), value: v.trim().to_string(), namespace: "host".into() });
        }
    }
}

/// Runs the MTU search when asked (`--mtu`) or when the path shows a smaller MTU or a tunnel: DF probes
/// from inside the subject's namespace, then a TCP transfer for a TCP target that accepted the probe.
pub fn mtu_step(facts: &mut Facts, ns: Option<&Netns>, forced: bool, timeout: Duration, can_enter: bool) {
    let Some(addr) = facts.resolution.as_ref().and_then(|r| r.address) else { return };
    if facts.subject.container().is_some_and(|c| c.network_mode == NetworkMode::None) || hostreach_model::target::is_loopback(&addr) {
        return;
    }
    let why = if forced { Some("asked with --mtu".to_string()) } else { hostreach_rules::mtu::should_search(facts, &addr) };
    let Some(why) = why else { return };
    if !can_enter {
        facts.skipped.push(Skipped { what: "mtu-search".into(), why: format!("{why}, but the DF probes need root (raw socket inside the container's namespace)") });
        return;
    }
    let w = hostreach_rules::path::wire(facts, Some(&addr));
    let interface_mtu = match (w.subject_if.and_then(|i| i.mtu), w.route.and_then(|r| r.mtu)) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => a.or(b).unwrap_or(1500),
    }
    .min(65_535);
    let connected = facts.probe.as_ref().is_some_and(|p| p.outcome == hostreach_model::ProbeOutcome::Connected);
    let tcp = facts.target.as_ref().filter(|t| t.proto == Proto::Tcp && connected).map(|t| SocketAddr::new(addr, t.port));
    let spec = MtuSpec {
        destination: addr,
        interface_mtu,
        first_wait: timeout.min(Duration::from_millis(800)),
        tcp,
        tcp_wait: timeout.min(Duration::from_secs(2)),
    };
    tracing::info!("MTU search to {addr}: {why}");
    match mtu::search(ns, spec) {
        Ok(s) => {
            if let Some(e) = &s.error {
                facts.skipped.push(Skipped { what: "mtu-size".into(), why: e.clone() });
            }
            facts.mtu = Some(s);
        }
        Err(e) => facts.skipped.push(Skipped { what: "mtu-search".into(), why: e.to_string() }),
    }
}
