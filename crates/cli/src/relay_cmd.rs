//! `hostreach relay`: serve a host service on a container's own localhost, without a sidecar.
//!
//! The engine is `hostreach_collect::relay`; this file turns the command line into pairs and a subject,
//! prints what the relay reports (stderr in text, JSON lines on stdout with `--format json`), prints
//! `--stats`, and wires Ctrl-C to a clean stop through the cleanup registry.

use crate::cli::{Format, parse_duration};
use crate::exit::{self, Failure};
use clap::{Args, ValueEnum};
use hostreach_collect::CollectError;
use hostreach_collect::cleanup;
use hostreach_collect::docker::{self, DockerClient};
use hostreach_collect::relay::{self, Control, CopyMode, Event, EventSink, Options, Pair, RelayError, StatsSnapshot, Subject};
use hostreach_model::Proto;
use serde::Serialize;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("subject").required(true).args(["container", "pid", "netns"])))]
pub struct RelayArgs {
    #[command(flatten)]
    pub subject: crate::subject::SubjectArgs,

    /// Where to listen inside the container: ADDR:PORT, [IPv6]:PORT or PORT (127.0.0.1). Repeat for
    /// several services; the n-th --listen pairs with the n-th --to. Prefix udp: for a UDP pair.
    #[arg(long, value_name = "ADDR:PORT", required = true)]
    pub listen: Vec<String>,

    /// Where the service is, as hostreach (on the host) reaches it: ADDR:PORT, [IPv6]:PORT or PORT
    /// (127.0.0.1).
    #[arg(long, value_name = "ADDR:PORT", required = true)]
    pub to: Vec<String>,

    /// Relay UDP instead of TCP (every pair; `--listen udp:ADDR:PORT` for one pair).
    #[arg(long)]
    pub udp: bool,

    /// Print connections, bytes and errors on stderr every N seconds.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub stats: Option<u64>,

    /// How long connecting to the service may take before the client is reset: 500ms, 3s, or seconds.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub connect_timeout: Duration,

    /// How bytes are moved (for measurements): splice through a pipe, or read/write through a buffer.
    #[arg(long, value_enum, default_value_t = CopyArg::Splice, hide = true)]
    pub copy: CopyArg,

    /// Largest pipe (or buffer) per direction, in bytes (for measurements).
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20, hide = true)]
    pub buffer: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CopyArg {
    Splice,
    ReadWrite,
}

/// The `--listen`/`--to` lists as pairs, in order.
pub fn parse_pairs(listen: &[String], to: &[String], udp: bool) -> Result<Vec<Pair>, String> {
    if listen.len() != to.len() {
        return Err(format!(
            "{} --listen but {} --to: each --listen needs its --to (the n-th --listen pairs with the n-th --to)",
            listen.len(),
            to.len()
        ));
    }
    let default_proto = if udp { Proto::Udp } else { Proto::Tcp };
    let mut pairs = Vec::with_capacity(listen.len());
    for (l, t) in listen.iter().zip(to) {
        let (lp, la) = parse_endpoint(l, "--listen")?;
        let (tp, ta) = parse_endpoint(t, "--to")?;
        let proto = match (lp, tp) {
            (Some(a), Some(b)) if a != b => {
                return Err(format!("--listen {l} and --to {t} name different protocols"));
            }
            (Some(p), _) | (None, Some(p)) => p,
            (None, None) => default_proto,
        };
        pairs.push(Pair { proto, listen: la, to: ta });
    }
    for (i, p) in pairs.iter().enumerate() {
        if pairs[..i].iter().any(|q| q.proto == p.proto && q.listen == p.listen) {
            return Err(format!("--listen {} is given twice", p.listen));
        }
    }
    Ok(pairs)
}

/// `[tcp:|udp:]ADDR:PORT`, `[IPv6]:PORT`, `localhost:PORT` or `PORT`.
fn parse_endpoint(s: &str, flag: &str) -> Result<(Option<Proto>, SocketAddr), String> {
    let (proto, rest) = if let Some(r) = s.strip_prefix("tcp:") {
        (Some(Proto::Tcp), r)
    } else if let Some(r) = s.strip_prefix("udp:") {
        (Some(Proto::Udp), r)
    } else {
        (None, s)
    };
    let bad = |why: &str| format!("{flag} {s:?}: {why}; write ADDR:PORT, [IPv6]:PORT or PORT, e.g. 127.0.0.1:5432");
    let addr = if let Ok(port) = rest.parse::<u16>() {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
    } else if let Ok(a) = rest.parse::<SocketAddr>() {
        a
    } else if let Some(port) = rest.strip_prefix("localhost:") {
        let port: u16 = port.parse().map_err(|_| bad("not a port number"))?;
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
    } else if rest.contains(':') && !rest.starts_with('[') && rest.parse::<IpAddr>().is_err() {
        let host = rest.rsplit_once(':').map(|(h, _)| h).unwrap_or(rest);
        return Err(bad(&format!("{host:?} is not an IP address (names are not resolved here)")));
    } else {
        return Err(bad("not an address with a port"));
    };
    if addr.port() == 0 {
        return Err(bad("port 0"));
    }
    Ok((proto, addr))
}

/// One line of `--format json`: the schema first, then the event's fields.
#[derive(Serialize)]
struct JsonLine<'a, T: Serialize> {
    schema: &'static str,
    #[serde(flatten)]
    body: &'a T,
}

#[derive(Serialize)]
#[serde(tag = "event", rename = "stats")]
struct StatsEvent {
    #[serde(flatten)]
    stats: StatsSnapshot,
}

fn print_json<T: Serialize>(body: &T) {
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer(&mut out, &JsonLine { schema: "hostreach/v1", body });
    let _ = writeln!(out);
    let _ = out.flush();
}

fn say(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "hostreach relay: {line}");
}

fn describe(e: &Event) -> String {
    match e {
        Event::Listening { proto, listen, to, subject, pid, netns_inode, again, .. } => {
            let pid = pid.map(|p| format!("pid {p}, ")).unwrap_or_default();
            let verb = if *again { "re-entered: listening again" } else { "listening" };
            format!("{verb} on {proto} {listen} in {subject} ({pid}netns net:[{netns_inode}]) -> {to} on this host")
        }
        Event::Lost { subject, why } => format!("{subject}: {why}"),
        Event::BindFailed { listen, error, .. } => format!("cannot listen on {listen} yet: {error} (retrying every second)"),
        Event::Stopped { connections_closed } => format!("stopped; {connections_closed} connections relayed in all"),
    }
}

fn human(n: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 { format!("{n} B") } else { format!("{v:.1} {}", U[i]) }
}

fn stats_line(s: &StatsSnapshot) -> String {
    let mut line = format!(
        "stats: {} connections ({} open), {} up, {} down, {} errors ({} resets, {} target unreachable)",
        s.accepted,
        s.active,
        human(s.bytes_up),
        human(s.bytes_down),
        s.errors,
        s.resets,
        s.target_failures
    );
    if s.udp_sessions > 0 {
        line.push_str(&format!(", {} udp sessions, {} datagrams", s.udp_sessions, s.udp_datagrams));
    }
    line
}

fn failure(e: RelayError) -> Failure {
    match e {
        RelayError::Invalid(m) => Failure::usage(m),
        RelayError::Collect(e) => Failure::from_collect(e),
    }
}

/// Runs the relay until Ctrl-C (the signal thread then exits with 130 once everything is closed) or
/// until the subject is gone (exit 3). Returns the exit code.
pub fn run(rt: &tokio::runtime::Runtime, args: &RelayArgs, format: Format, docker_host: Option<&str>) -> i32 {
    match run_inner(rt, args, format, docker_host) {
        Ok(code) => code,
        Err(f) => {
            exit::print_line(&f.message);
            f.code
        }
    }
}

fn run_inner(rt: &tokio::runtime::Runtime, args: &RelayArgs, format: Format, docker_host: Option<&str>) -> Result<i32, Failure> {
    let pairs = parse_pairs(&args.listen, &args.to, args.udp).map_err(Failure::usage)?;
    if args.buffer < 4096 || args.buffer > 64 << 20 {
        return Err(Failure::usage("--buffer must be between 4096 and 67108864 bytes"));
    }
    let subject = if let Some(name) = &args.subject.container {
        let endpoint = docker::endpoint(docker_host);
        let docker = rt.block_on(DockerClient::connect(&endpoint)).map_err(Failure::from_collect)?;
        Subject::Container { docker, name: name.clone() }
    } else if let Some(pid) = args.subject.pid {
        Subject::Pid(pid)
    } else if let Some(path) = &args.subject.netns {
        Subject::Netns(path.clone())
    } else {
        return Err(Failure::usage("give --container, --pid or --netns"));
    };
    let limit = relay::raise_fd_limit();
    tracing::debug!("relay: open files limit {limit}");

    let opts = Options {
        copy: match args.copy {
            CopyArg::Splice => CopyMode::Splice,
            CopyArg::ReadWrite => CopyMode::ReadWrite,
        },
        buffer: args.buffer,
        connect_timeout: args.connect_timeout,
        ..Options::default()
    };
    let sink: EventSink = Arc::new(move |e: &Event| match format {
        Format::Json => print_json(e),
        Format::Text => say(&describe(e)),
    });

    // Ctrl-C: the signal thread runs this, then exits with 130. Stop, and wait until every socket is
    // closed and the last line is printed.
    let ctl = Control::new();
    let c2 = ctl.clone();
    let token = cleanup::register(
        "relay: listeners and connections",
        Box::new(move || {
            c2.stop();
            if !c2.wait_finished(Duration::from_secs(3)) {
                tracing::warn!("relay: connections still closing after 3 s; exiting anyway");
            }
        }),
    );

    let stats_task = args.stats.map(|secs| {
        let ctl = ctl.clone();
        rt.spawn(async move {
            let mut t = tokio::time::interval(Duration::from_secs(secs));
            t.tick().await;
            loop {
                t.tick().await;
                let s = ctl.stats();
                say(&stats_line(&s));
                if format == Format::Json {
                    print_json(&StatsEvent { stats: s });
                }
            }
        })
    });

    let result = rt.block_on(relay::run(subject, pairs, opts, ctl.clone(), sink));
    if let Some(t) = stats_task {
        t.abort();
    }
    if args.stats.is_some() && result.is_ok() {
        say(&stats_line(&ctl.stats()));
    }
    let _ = std::io::stdout().flush();
    ctl.mark_finished();
    if ctl.is_stopped() {
        // Stopped by a signal: the signal thread is finishing the cleanup and exits the process.
        cleanup::forget(token);
        loop {
            std::thread::park();
        }
    }
    cleanup::forget(token);
    match result {
        Ok(()) => Ok(exit::OK),
        Err(RelayError::Collect(CollectError::Subject(m))) => Err(Failure::cannot(m)),
        Err(e) => Err(failure(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn pairs_in_order() {
        let p = parse_pairs(&s(&["127.0.0.1:5432", "6379", "udp:[::1]:53"]), &s(&["127.0.0.1:5433", "localhost:6380", "[::1]:5353"]), false)
            .unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(p[0].listen, "127.0.0.1:5432".parse().unwrap());
        assert_eq!(p[0].to, "127.0.0.1:5433".parse().unwrap());
        assert_eq!(p[1].listen, "127.0.0.1:6379".parse().unwrap());
        assert_eq!(p[1].to, "127.0.0.1:6380".parse().unwrap());
        assert_eq!((p[0].proto, p[2].proto), (Proto::Tcp, Proto::Udp));
        assert_eq!(p[2].listen, "[::1]:53".parse().unwrap());
        let u = parse_pairs(&s(&["53"]), &s(&["127.0.0.1:53"]), true).unwrap();
        assert_eq!(u[0].proto, Proto::Udp);
    }

    #[test]
    fn bad_pairs_are_one_line() {
        for (l, t) in [
            (vec!["1", "2"], vec!["3"]),
            (vec!["db:5432"], vec!["1"]),
            (vec!["127.0.0.1:0"], vec!["1"]),
            (vec!["127.0.0.1"], vec!["1"]),
            (vec!["127.0.0.1:99999"], vec!["1"]),
            (vec!["udp:1"], vec!["tcp:2"]),
            (vec!["1", "1"], vec!["2", "3"]),
            (vec![""], vec!["1"]),
        ] {
            let e = parse_pairs(&s(&l), &s(&t), false).unwrap_err();
            assert!(!e.contains('\n') && !e.is_empty(), "{l:?} {t:?}: {e}");
        }
        assert!(parse_pairs(&s(&["db:5432"]), &s(&["1"]), false).unwrap_err().contains("not an IP address"));
    }

    #[test]
    fn lines() {
        let e = Event::Listening {
            pair: 0,
            proto: "tcp",
            listen: "127.0.0.1:5432".parse().unwrap(),
            to: "127.0.0.1:5432".parse().unwrap(),
            subject: "container web".into(),
            pid: Some(42),
            netns_inode: 7,
            again: true,
        };
        assert_eq!(
            describe(&e),
            "re-entered: listening again on tcp 127.0.0.1:5432 in container web (pid 42, netns net:[7]) -> 127.0.0.1:5432 on this host"
        );
        let j = serde_json::to_string(&JsonLine { schema: "hostreach/v1", body: &e }).unwrap();
        assert!(j.starts_with(r#"{"schema":"hostreach/v1","event":"listening","#), "{j}");
        let st = serde_json::to_string(&JsonLine { schema: "hostreach/v1", body: &StatsEvent { stats: StatsSnapshot::default() } }).unwrap();
        assert!(st.starts_with(r#"{"schema":"hostreach/v1","event":"stats","accepted":0"#), "{st}");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(12), "12 B");
    }
}
