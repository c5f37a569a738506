//! `hostreach doctor`: collect the facts (Docker, netlink, sock_diag, the subject's files), probe from
//! inside the subject's namespace while recording drop reasons, then let the rules decide.

use crate::cli::DoctorArgs;
use crate::exit::Failure;
use hostreach_collect::netns::Netns;
use hostreach_collect::probe::{self, ProbeSpec};
use hostreach_collect::resolve;
use hostreach_collect::sockets::{self, SocketQuery};
use hostreach_collect::{CollectError, netlink};
use hostreach_model::{
    Facts, NetworkMode, Proto, Report, Resolution, ResolutionSource, Skipped, Subject, Target, TargetHost, TraceStatus,
};
use std::net::SocketAddr;
use std::time::Duration;

/// The result of one doctor run.
pub struct Outcome {
    pub report: Report,
    /// Exit code per the contract: 0 reachable, 1 diagnosed, 3 could not diagnose.
    pub code: i32,
    /// One line for stderr when the diagnosis was incomplete.
    pub note: Option<String>,
}

pub async fn run(args: &DoctorArgs, docker_host: Option<&str>) -> Result<Outcome, Failure> {
    let facts = if let Some(path) = &args.facts {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Failure::usage(format!("cannot read facts file {}: {e}", path.display())))?;
        let f: Facts = serde_json::from_str(&text)
            .map_err(|e| Failure::usage(format!("{} is not a hostreach facts file: {e}", path.display())))?;
        if f.target.is_none() {
            return Err(Failure::usage(format!("{} holds no target", path.display())));
        }
        f
    } else {
        collect(args, docker_host).await?
    };
    if let Some(path) = &args.save_facts {
        let text = serde_json::to_string_pretty(&facts).expect("facts serialise");
        std::fs::write(path, text + "\n")
            .map_err(|e| Failure::cannot(format!("cannot write facts to {}: {e}", path.display())))?;
    }
    let report = hostreach_rules::diagnose(&facts);
    let (code, note) = exit_code(&facts, &report);
    Ok(Outcome { report, code, note })
}

fn exit_code(facts: &Facts, report: &Report) -> (i32, Option<String>) {
    use hostreach_model::Code;
    match report.verdict.code {
        Code::Ok => (crate::exit::OK, None),
        Code::Unknown if facts.probe.is_none() => {
            let why = facts
                .skipped
                .iter()
                .find(|s| s.what == "probe")
                .map(|s| s.why.clone())
                .unwrap_or_else(|| "the probe did not run".into());
            (3, Some(format!("could not diagnose: {why}")))
        }
        _ => (crate::exit::DIAGNOSED, None),
    }
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Collects everything one diagnosis needs.
pub async fn collect(args: &DoctorArgs, docker_host: Option<&str>) -> Result<Facts, Failure> {
    let to = args.to.as_deref().unwrap_or_default();
    let proto: Proto = args.proto.into();
    let target = Target::parse(to, proto).map_err(|e| Failure::usage(e.to_string()))?;
    let mut facts = Facts { collector_version: env!("CARGO_PKG_VERSION").to_string(), ..Default::default() };
    let root = is_root();

    // The subject and its namespace.
    let resolved = crate::subject::resolve(
        args.subject.container.as_deref(),
        args.subject.pid,
        args.subject.netns.as_deref(),
        docker_host,
    )
    .await?;
    facts.subject = resolved.subject;
    facts.daemon = resolved.daemon;
    facts.skipped.extend(resolved.skipped);
    let netns: Option<Netns> = resolved.netns;
    let subject_pid: Option<u32> = resolved.pid;

    // Privileges: say once what cannot be done.
    let can_enter = root;
    if !root {
        facts.skipped.push(Skipped {
            what: "probe".into(),
            why: "probing from inside the subject's network namespace needs CAP_SYS_ADMIN (setns): run hostreach as root".into(),
        });
    }

    // The subject's own files: /etc/hosts and resolv.conf.
    let files = if matches!(facts.subject, Subject::Netns { .. }) { resolve::subject_files(None) } else { resolve::subject_files(subject_pid) };
    facts.skipped.extend(files.skipped.iter().cloned());
    if let Subject::Container(c) = &mut facts.subject {
        c.hosts = files.hosts.clone();
        c.resolv = files.resolv.clone();
    }

    // Links, addresses and routes on both sides of the wire.
    let host_ns = Netns::current().map_err(Failure::from_collect)?;
    match netlink::read_current() {
        Ok(h) => facts.host_net = Some(h),
        Err(e) => facts.skipped.push(Skipped { what: "host-links".into(), why: e.to_string() }),
    }
    if let Some(ns) = &netns {
        if ns.same_as(&host_ns) {
            facts.subject_net = facts.host_net.clone();
        } else if can_enter {
            match netlink::read(ns) {
                Ok(s) => facts.subject_net = Some(s),
                Err(e) => facts.skipped.push(Skipped { what: "subject-links".into(), why: e.to_string() }),
            }
        }
    }

    // Where the target points, the subject's way.
    facts.target = Some(target.clone());
    let resolution = match &target.host {
        TargetHost::Ip(ip) => Some(Resolution { name: None, address: Some(*ip), addresses: vec![*ip], source: ResolutionSource::Literal, dns_queries: vec![] }),
        TargetHost::Host => hostreach_rules::host_keyword_address(&facts).map(|(ip, via)| Resolution {
            name: None,
            address: Some(ip),
            addresses: vec![ip],
            source: ResolutionSource::HostKeyword {
                network: facts.subject.container().and_then(|c| c.networks.first()).map(|n| n.name.clone()),
                via,
            },
            dns_queries: vec![],
        }),
        TargetHost::Name(name) => {
            let ns_for_dns = if can_enter { netns.as_ref().filter(|ns| !ns.same_as(&host_ns)) } else { None };
            let hosts_readable = !files.skipped.iter().any(|s| s.what == "hosts-file");
            if !hosts_readable && ns_for_dns.is_none() && netns.as_ref().is_some_and(|ns| !ns.same_as(&host_ns)) {
                facts.skipped.push(Skipped { what: "resolution".into(), why: "the subject's /etc/hosts is unreadable and DNS from its namespace needs root".into() });
                None
            } else {
                let budget = args.timeout.min(Duration::from_secs(3));
                Some(resolve::resolve_name(name, &files, ns_for_dns, budget).map_err(|e| gone(&facts, e))?)
            }
        }
    };
    facts.resolution = resolution;
    // A name that does not resolve may be another container's: learn the others and their networks.
    if facts.resolution.as_ref().is_some_and(|r| r.source == ResolutionSource::Unresolved)
        && facts.subject.container().is_some()
        && let Ok(client) = hostreach_collect::docker::DockerClient::connect(&hostreach_collect::docker::endpoint(docker_host)).await
        && let Ok(peers) = client.peers().await
    {
        facts.peers = peers;
    }

    let network_none = facts.subject.container().is_some_and(|c| c.network_mode == NetworkMode::None);
    let address = facts.resolution.as_ref().and_then(|r| r.address);

    // Host sockets are read while the probe runs.
    let sock_q = SocketQuery {
        tcp: proto == Proto::Tcp,
        udp: proto == Proto::Udp,
        listening_only: true,
        port: Some(target.port),
        owners: true,
    };
    let sockets_thread = std::thread::Builder::new()
        .name("hr-sockets".into())
        .spawn(move || sockets::read_current(&sock_q))
        .map_err(|e| Failure::cannot(format!("spawning a thread: {e}")))?;
    // Pressure (issue 5): counters before the probe, ports/queues/conntrack read while it runs,
    // counters again after it.
    let pressure = hostreach_collect::pressure::Session::begin(
        netns.as_ref().filter(|ns| can_enter && !ns.same_as(&host_ns)),
        address.map(|a| (SocketAddr::new(a, target.port), proto)),
        netns.as_ref().is_some_and(|ns| ns.same_as(&host_ns)),
    );

    if let Some(addr) = address
        && !network_none
        && can_enter
    {
        let spec = ProbeSpec {
            destination: SocketAddr::new(addr, target.port),
            proto,
            timeout: args.timeout,
            trace: !args.no_trace,
        };
        let ns = netns.as_ref().filter(|ns| !ns.same_as(&host_ns));
        match probe::run(ns, spec) {
            Ok(run) => {
                facts.probe = Some(run.result);
                facts.drops = run.drops;
            }
            Err(e) => return Err(gone(&facts, e)),
        }
        if args.no_trace {
            facts.drops.status = TraceStatus::NotRun;
        }
        if let TraceStatus::Unavailable(why) = &facts.drops.status {
            facts.skipped.push(Skipped { what: "drop-reasons".into(), why: why.clone() });
        }
        // The container may have exited while we probed: then the answer is about a namespace that is gone.
        if let Some(pid) = subject_pid
            && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        {
            return Err(Failure::cannot(format!(
                "{} exited during the probe: run hostreach again once it is running",
                subject_label(&facts)
            )));
        }
    }

    match pressure.map(|p| p.finish()) {
        Ok((p, errors)) => {
            facts.pressure = p;
            facts.skipped.extend(errors.into_iter().map(|why| Skipped { what: "pressure".into(), why }));
        }
        Err(e) => facts.skipped.push(Skipped { what: "pressure".into(), why: e.to_string() }),
    }
    match sockets_thread.join() {
        Ok(Ok(s)) => {
            if s.iter().any(|x| x.process.is_none()) && !root {
                facts.skipped.push(Skipped {
                    what: "socket-owners".into(),
                    why: "other users' processes cannot be read without root: some sockets show no owner".into(),
                });
            }
            facts.host_sockets = s;
        }
        Ok(Err(e)) => facts.skipped.push(Skipped { what: "host-sockets".into(), why: e.to_string() }),
        Err(_) => facts.skipped.push(Skipped { what: "host-sockets".into(), why: "the socket reader panicked".into() }),
    }
    // The wire (issue 4): rp_filter settings, and the MTU search when asked or when the path calls for it.
    crate::path_cmd::sysctl_step(&mut facts);
    crate::path_cmd::mtu_step(&mut facts, netns.as_ref().filter(|ns| !ns.same_as(&host_ns)), args.mtu, args.timeout, can_enter);
    // The firewall (issue 3): name the rule that decides the probe's packet, and see its counter move.
    if can_enter {
        crate::doctor_fw::step(&mut facts, netns.as_ref().filter(|ns| !ns.same_as(&host_ns)), args.timeout, !args.no_trace);
    }
    Ok(facts)
}

fn subject_label(facts: &Facts) -> String {
    crate::subject::label(&facts.subject)
}

/// A collector error about the subject's namespace: most often, the container went away.
fn gone(facts: &Facts, e: CollectError) -> Failure {
    match e {
        CollectError::Subject(_) if !matches!(facts.subject, Subject::Netns { .. }) => Failure::cannot(format!(
            "{} is gone (its network namespace no longer exists): it exited during the diagnosis",
            subject_label(facts)
        )),
        e => Failure::from_collect(e),
    }
}
