//! `hostreach sockets`: what listens (and what is connected) on the host or in a container's
//! namespace, owned by which process, reachable from which interfaces; plus the pressure on the
//! namespace's ephemeral ports, accept queues and conntrack table.

use crate::cli::Format;
use crate::exit::{self, Failure};
use clap::Args;
use hostreach_collect::netlink;
use hostreach_collect::netns::Netns;
use hostreach_collect::pressure;
use hostreach_collect::sockets::{self, SocketQuery};
use hostreach_model::{NetnsFacts, PressureFacts, Proto, SCHEMA, SocketFact};
use serde::Serialize;
use std::io::Write;

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("sockets_subject").multiple(false).args(["container", "pid", "netns"])))]
pub struct SocketsArgs {
    /// Only sockets whose local port is N.
    #[arg(long, value_name = "N")]
    pub port: Option<u16>,
    /// Only listeners (TCP LISTEN, unconnected UDP).
    #[arg(long, short = 'l')]
    pub listening: bool,
    /// Only TCP.
    #[arg(long, conflicts_with = "udp")]
    pub tcp: bool,
    /// Only UDP.
    #[arg(long)]
    pub udp: bool,
    #[command(flatten)]
    pub subject: crate::subject::SubjectArgs,

    /// Do not look up owning processes (faster on hosts with very many sockets).
    #[arg(long)]
    pub no_owners: bool,
}

#[derive(Serialize)]
struct Output<'a> {
    schema: &'static str,
    namespace: String,
    sockets: Vec<Row<'a>>,
    /// Ephemeral ports, accept queues and conntrack of the namespace (issue 5).
    #[serde(skip_serializing_if = "Option::is_none")]
    pressure: Option<hostreach_rules::pressure::Summary>,
}

#[derive(Serialize)]
struct Row<'a> {
    #[serde(flatten)]
    socket: &'a SocketFact,
    #[serde(skip_serializing_if = "Option::is_none")]
    reachable_from: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reach: Option<hostreach_rules::socket::Reach>,
}

pub fn run(rt: &tokio::runtime::Runtime, args: &SocketsArgs, format: Format, docker_host: Option<&str>) -> i32 {
    match rt.block_on(collect(args, docker_host)) {
        Ok((label, ns_facts, socks, pressure)) => {
            let summary = pressure.map(|p| hostreach_rules::pressure::summary(&p, &socks));
            print(format, &label, &ns_facts, &socks, summary);
            exit::OK
        }
        Err(f) => {
            exit::print_line(&f.message);
            f.code
        }
    }
}

type Collected = (String, NetnsFacts, Vec<SocketFact>, Option<PressureFacts>);

async fn collect(args: &SocketsArgs, docker_host: Option<&str>) -> Result<Collected, Failure> {
    let q = SocketQuery {
        tcp: !args.udp,
        udp: !args.tcp,
        listening_only: args.listening,
        port: args.port,
        owners: !args.no_owners,
    };
    let any_subject = args.subject.any();
    if !any_subject {
        let (links, socks, pressure) = std::thread::scope(|s| {
            let l = s.spawn(netlink::read_current);
            let p = s.spawn(|| pressure::read_here("host", pressure::Want { to: None }));
            let so = sockets::read_current(&q);
            (l.join(), so, p.join().ok())
        });
        let links = links.map_err(|_| Failure::cannot("the netlink reader panicked"))?.map_err(Failure::from_collect)?;
        let socks = socks.map_err(Failure::from_collect)?;
        return Ok(("host".into(), links, socks, pressure));
    }
    let r = crate::subject::resolve(args.subject.container.as_deref(), args.subject.pid, args.subject.netns.as_deref(), docker_host).await?;
    let label = crate::subject::label(&r.subject);
    let ns: Netns = r.netns.ok_or_else(|| {
        Failure::cannot(format!("cannot enter the network namespace of {label}: it needs CAP_SYS_ADMIN (run hostreach as root)"))
    })?;
    let links = netlink::read(&ns).map_err(Failure::from_collect)?;
    let socks = sockets::read(&ns, &q).map_err(Failure::from_collect)?;
    let pressure = pressure::read(&ns, "subject", pressure::Want { to: None }).ok();
    Ok((label, links, socks, pressure))
}

fn print(format: Format, label: &str, ns: &NetnsFacts, socks: &[SocketFact], pressure: Option<hostreach_rules::pressure::Summary>) {
    let rows: Vec<Row> = socks
        .iter()
        .map(|s| {
            let reach = s.is_listener().then(|| hostreach_rules::socket::reach(s, ns));
            Row { socket: s, reachable_from: reach.as_ref().map(|r| r.interfaces.clone()), reach }
        })
        .collect();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    match format {
        Format::Json => {
            let o = Output { schema: SCHEMA, namespace: label.to_string(), sockets: rows, pressure };
            let _ = serde_json::to_writer(&mut out, &o);
            let _ = writeln!(out);
        }
        Format::Text => {
            let _ = writeln!(out, "{:<5} {:<11} {:<40} {:<40} {:<28} REACHABLE FROM", "PROTO", "STATE", "LOCAL", "PEER", "PROCESS");
            // Three buffers reused for every row: 100,000 sockets make no 300,000 small strings.
            use std::fmt::Write as _;
            let (mut local, mut peer, mut proc_) = (String::new(), String::new(), String::new());
            for r in &rows {
                let s = r.socket;
                local.clear();
                write_endpoint(&mut local, s.local_address, s.local_port);
                peer.clear();
                match (s.remote_address, s.remote_port) {
                    (Some(a), Some(p)) if !(hostreach_model::target::is_unspecified(&a) && p == 0) => write_endpoint(&mut peer, a, p),
                    _ => peer.push('-'),
                }
                proc_.clear();
                match &s.process {
                    Some(p) => {
                        let _ = write!(proc_, "{}/{}", p.name, p.pid);
                    }
                    None => proc_.push('-'),
                }
                let reach = match &r.reach {
                    None => String::new(),
                    Some(x) if x.scope == "loopback-only" => "loopback only".into(),
                    Some(x) if x.scope == "specific" => {
                        format!("any interface, at this address{}", x.address_on.as_deref().map(|i| format!(" (on {i})")).unwrap_or_default())
                    }
                    Some(x) if x.scope == "device" => format!("only {}", x.interfaces.join(", ")),
                    Some(x) => format!("all: {}", x.interfaces.join(", ")),
                };
                let proto = match s.proto {
                    Proto::Tcp => "tcp",
                    Proto::Udp => "udp",
                };
                let _ = writeln!(out, "{proto:<5} {:<11} {local:<40} {peer:<40} {proc_:<28} {reach}", s.state);
            }
            if let Some(p) = &pressure {
                print_pressure(&mut out, p);
            }
        }
    }
    let _ = out.flush();
}

/// `127.0.0.1:5432`, `[::1]:5432` (SocketAddr's own form), into a reused buffer.
fn write_endpoint(out: &mut String, a: std::net::IpAddr, p: u16) {
    use std::fmt::Write as _;
    let _ = write!(out, "{}", std::net::SocketAddr::new(a, p));
}

/// The pressure summary under the table: a few lines, the numbers against their limits.
fn print_pressure(out: &mut impl Write, p: &hostreach_rules::pressure::Summary) {
    let _ = writeln!(out, "\npressure");
    if let Some(e) = &p.ephemeral_ports {
        let busiest = e
            .busiest
            .as_ref()
            .map(|b| format!("; busiest destination {} with {} ({}%)", b.destination, b.in_use, b.percent))
            .unwrap_or_default();
        let reserved = if e.reserved.is_empty() { String::new() } else { format!(", {} reserved", e.reserved.iter().map(|[a, b]| if a == b { a.to_string() } else { format!("{a}-{b}") }).collect::<Vec<_>>().join(",")) };
        let _ = writeln!(
            out,
            "  ephemeral ports  range {}-{}{reserved}: {} usable per destination; {} in use{busiest}; {} TIME_WAIT; tcp_tw_reuse {}",
            e.range[0],
            e.range[1],
            e.usable,
            e.in_use,
            e.time_wait,
            e.tcp_tw_reuse.map(|v| v.to_string()).unwrap_or_else(|| "?".into())
        );
    }
    let q = &p.accept_queues;
    let fullest = q
        .fullest
        .as_ref()
        .map(|f| format!("fullest {} {} {}/{} ({}%)", f.local, f.process.as_deref().unwrap_or("-"), f.queued, f.backlog, f.percent))
        .unwrap_or_else(|| "none waiting".into());
    let opt = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_else(|| "?".into());
    let _ = writeln!(
        out,
        "  accept queues    {} listener(s) with connections waiting; {fullest}; somaxconn {}; ListenOverflows {} ListenDrops {} (cumulative)",
        q.listeners_queued,
        q.somaxconn.map(|v| v.to_string()).unwrap_or_else(|| "?".into()),
        opt(q.listen_overflows),
        opt(q.listen_drops)
    );
    match &p.conntrack {
        Some(c) => {
            let _ = writeln!(
                out,
                "  conntrack        {} of {} entries ({}%); drop {} early_drop {} insert_failed {} (cumulative)",
                c.count,
                c.max,
                c.percent,
                opt(c.drop),
                opt(c.early_drop),
                opt(c.insert_failed)
            );
        }
        None => {
            let _ = writeln!(out, "  conntrack        not loaded (no nf_conntrack in this kernel)");
        }
    }
    for w in &p.warnings {
        let _ = writeln!(out, "  warning          {w}");
    }
}
