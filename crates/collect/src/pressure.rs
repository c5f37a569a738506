//! Pressure of a network namespace (issue 5): the ephemeral port range and what is in use towards
//! one destination, the accept-queue cap and the listen overflow counters, the conntrack table.
//!
//! Everything is read by the thread that lives in the namespace: files under `/proc/sys/net`
//! resolve by the namespace of the task that opens them, and `/proc/thread-self/net/*` shows the
//! calling thread's namespace (`/proc/self/net` would show the main thread's). For another
//! namespace [`read`] runs on a dedicated thread inside it ([`Netns::run`]).

use crate::error::Result;
use crate::netns::Netns;
use hostreach_model::pressure::{parse_conntrack_stat, parse_netstat, parse_port_list, parse_port_range};
use hostreach_model::{PressureCounters, PressureFacts, Proto};
use std::net::SocketAddr;

const PORT_RANGE: &str = "/proc/sys/net/ipv4/ip_local_port_range";
const RESERVED: &str = "/proc/sys/net/ipv4/ip_local_reserved_ports";
const TW_REUSE: &str = "/proc/sys/net/ipv4/tcp_tw_reuse";
const SOMAXCONN: &str = "/proc/sys/net/core/somaxconn";
const CT_COUNT: &str = "/proc/sys/net/netfilter/nf_conntrack_count";
const CT_MAX: &str = "/proc/sys/net/netfilter/nf_conntrack_max";
const NETSTAT: &str = "/proc/thread-self/net/netstat";
const CT_STAT: &str = "/proc/thread-self/net/stat/nf_conntrack";

/// What to read besides the namespace-wide facts.
#[derive(Debug, Clone, Copy)]
pub struct Want {
    /// List the sockets connected to this destination (ephemeral ports in use towards it).
    pub to: Option<(SocketAddr, Proto)>,
}

fn read_trim(path: &str) -> std::io::Result<String> {
    std::fs::read_to_string(path).map(|s| s.trim().to_string())
}

/// The counters that move, in the calling thread's namespace. Unreadable ones stay None (no
/// conntrack module loaded: no conntrack counters).
pub fn counters_here() -> PressureCounters {
    let mut c = PressureCounters::default();
    if let Ok(t) = std::fs::read_to_string(NETSTAT) {
        let v = parse_netstat(&t, "TcpExt", &["ListenOverflows", "ListenDrops"]);
        c.listen_overflows = v[0];
        c.listen_drops = v[1];
    }
    c.conntrack_count = read_trim(CT_COUNT).ok().and_then(|s| s.parse().ok());
    if let Ok(t) = std::fs::read_to_string(CT_STAT) {
        let v = parse_conntrack_stat(&t, &["drop", "early_drop", "insert_failed"]);
        c.conntrack_drop = v[0];
        c.conntrack_early_drop = v[1];
        c.conntrack_insert_failed = v[2];
    }
    c
}

/// Every pressure fact of the calling thread's namespace.
pub fn read_here(namespace: &str, want: Want) -> PressureFacts {
    let mut p = PressureFacts { namespace: namespace.to_string(), ..Default::default() };
    p.inode = std::fs::metadata("/proc/thread-self/ns/net").ok().map(|m| std::os::unix::fs::MetadataExt::ino(&m));
    let mut missing = |what: &str, e: std::io::Error| p.missing.push(format!("{what}: {e}"));
    match read_trim(PORT_RANGE) {
        Ok(t) => p.port_range = parse_port_range(&t),
        Err(e) => missing(PORT_RANGE, e),
    }
    match read_trim(RESERVED) {
        Ok(t) => p.reserved_ports = parse_port_list(&t),
        Err(e) => missing(RESERVED, e),
    }
    match read_trim(TW_REUSE) {
        Ok(t) => p.tcp_tw_reuse = t.parse().ok(),
        Err(e) => missing(TW_REUSE, e),
    }
    match read_trim(SOMAXCONN) {
        Ok(t) => p.somaxconn = t.parse().ok(),
        Err(e) => missing(SOMAXCONN, e),
    }
    match read_trim(CT_MAX) {
        Ok(t) => {
            p.conntrack_max = t.parse().ok();
            p.conntrack_max_writable = Some(nix::unistd::access(CT_MAX, nix::unistd::AccessFlags::W_OK).is_ok());
        }
        // No nf_conntrack loaded: there is no table to fill.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => missing(CT_MAX, e),
    }
    p.counters = counters_here();
    if let Some((dest, proto)) = want.to {
        match crate::sockets::connected_to_current(dest, proto) {
            Ok(s) => p.to_target = Some(s),
            Err(e) => p.missing.push(format!("sockets connected to {dest}: {e}")),
        }
    }
    p
}

/// [`read_here`] for another namespace, on a thread inside it.
pub fn read(ns: &Netns, namespace: &str, want: Want) -> Result<PressureFacts> {
    let label = namespace.to_string();
    ns.run("hr-pressure", move || Ok(read_here(&label, want)))
}

/// [`counters_here`] for another namespace.
pub fn counters(ns: &Netns) -> Result<PressureCounters> {
    ns.run("hr-pressure", || Ok(counters_here()))
}

/// Doctor's collection around the probe: [`Session::begin`] reads the counters before the probe
/// (host and subject) and starts reading everything else on a thread of its own; [`Session::finish`]
/// reads the counters again after the probe and returns one [`PressureFacts`] per namespace.
pub struct Session {
    host_before: PressureCounters,
    subject: Option<(Netns, PressureCounters)>,
    worker: std::thread::JoinHandle<(PressureFacts, Option<Result<PressureFacts>>)>,
}

impl Session {
    /// `subject`: the subject's namespace when it is not the host's (None in host mode, or when it
    /// cannot be entered). `to`: the probe's destination.
    pub fn begin(subject: Option<&Netns>, to: Option<(SocketAddr, Proto)>, subject_is_host: bool) -> Result<Session> {
        let host_before = counters_here();
        let subject = match subject {
            Some(ns) => {
                let own = Netns::open(ns.path())?;
                let before = counters(&own)?;
                Some((own, before))
            }
            None => None,
        };
        let sub_path = subject.as_ref().map(|(ns, _)| ns.path().to_path_buf());
        let worker = std::thread::Builder::new()
            .name("hr-pressure".into())
            .spawn(move || {
                let host_want = Want { to: if subject_is_host { to } else { None } };
                let mut host = read_here("host", host_want);
                host.subject_too = subject_is_host;
                let sub = sub_path.map(|p| {
                    let ns = Netns::open(&p)?;
                    read(&ns, "subject", Want { to })
                });
                (host, sub)
            })
            .map_err(|e| crate::error::CollectError::io("spawning the pressure thread", e))?;
        Ok(Session { host_before, subject, worker })
    }

    /// Joins the reader and reads the counters after the probe. Errors of the subject's side are
    /// returned beside what was read.
    pub fn finish(self) -> (Vec<PressureFacts>, Vec<String>) {
        let mut errors = Vec::new();
        let mut out = Vec::new();
        let (mut host, sub) = match self.worker.join() {
            Ok(r) => r,
            Err(_) => return (out, vec!["the pressure reader panicked".into()]),
        };
        // Counters at the end: what the probe moved.
        host.before = Some(self.host_before);
        host.counters = counters_here();
        out.push(host);
        match (sub, self.subject) {
            (Some(Ok(mut s)), Some((ns, before))) => {
                s.before = Some(before);
                match counters(&ns) {
                    Ok(c) => s.counters = c,
                    Err(e) => errors.push(format!("subject counters after the probe: {e}")),
                }
                out.push(s);
            }
            (Some(Err(e)), _) => errors.push(e.to_string()),
            _ => {}
        }
        (out, errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn reads_this_namespace() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let dest = l.local_addr().unwrap();
        let c1 = TcpStream::connect(dest).unwrap();
        let c2 = TcpStream::connect(dest).unwrap();
        let p = read_here("host", Want { to: Some((dest, Proto::Tcp)) });
        let [lo, hi] = p.port_range.expect("ip_local_port_range is always there");
        assert!(lo <= hi, "{p:?}");
        assert!(p.somaxconn.unwrap() > 0);
        assert!(p.tcp_tw_reuse.is_some());
        assert!(p.counters.listen_overflows.is_some(), "{p:?}");
        let to = p.to_target.as_ref().unwrap();
        let mine: Vec<u16> = [&c1, &c2].iter().map(|c| c.local_addr().unwrap().port()).collect();
        assert_eq!(to.len(), 2, "only the two clients: {to:#?}");
        assert!(to.iter().all(|s| mine.contains(&s.local_port) && s.remote_port == Some(dest.port())));
        assert_eq!(p.inode, Some(std::os::unix::fs::MetadataExt::ino(&std::fs::metadata("/proc/self/ns/net").unwrap())));
    }

    #[test]
    fn a_full_accept_queue_moves_listen_overflows() {
        // backlog 0: the kernel queues one connection, the next SYNs overflow.
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into()).unwrap();
        s.listen(0).unwrap();
        let dest = s.local_addr().unwrap().as_socket().unwrap();
        let before = counters_here();
        let mut held = vec![];
        for _ in 0..4 {
            let c = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            c.set_nonblocking(true).unwrap();
            let _ = c.connect(&dest.into());
            held.push(c);
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        let after = counters_here();
        let moved = PressureCounters::delta(before.listen_overflows, after.listen_overflows).unwrap();
        assert!(moved >= 1, "ListenOverflows did not move: {before:?} -> {after:?}");
    }
}
