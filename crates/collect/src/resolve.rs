//! Name resolution the subject's way: its own /etc/hosts and resolv.conf (through /proc/PID/root), then
//! DNS queries sent from inside its network namespace (Docker's embedded DNS at 127.0.0.11 only exists
//! there). Only the servers in the subject's resolv.conf are asked.

use crate::error::Result;
use crate::netns::Netns;
use hostreach_model::parse;
use hostreach_model::{DnsQuery, HostsEntry, ResolvConf, Resolution, ResolutionSource, Skipped};
use simple_dns::{CLASS, Name, Packet, PacketFlag, QCLASS, QTYPE, Question, RCODE, TYPE, rdata::RData};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// The subject's /etc/hosts and resolv.conf.
#[derive(Debug, Default, Clone)]
pub struct SubjectFiles {
    pub hosts_path: String,
    pub hosts: Vec<HostsEntry>,
    pub resolv: Option<ResolvConf>,
    pub skipped: Vec<Skipped>,
}

/// Reads /etc/hosts and /etc/resolv.conf of a process's root (`/proc/PID/root`), or of this host when
/// `pid` is None (a bare `--netns` subject).
pub fn subject_files(pid: Option<u32>) -> SubjectFiles {
    let root = pid.map(|p| format!("/proc/{p}/root")).unwrap_or_default();
    let hosts_path = format!("{root}/etc/hosts");
    let resolv_path = format!("{root}/etc/resolv.conf");
    let mut out = SubjectFiles { hosts_path: hosts_path.clone(), ..Default::default() };
    match std::fs::read_to_string(&hosts_path) {
        Ok(t) => out.hosts = parse::hosts_file(&t),
        Err(e) => out.skipped.push(Skipped { what: "hosts-file".into(), why: format!("reading {hosts_path}: {e}") }),
    }
    match std::fs::read_to_string(&resolv_path) {
        Ok(t) => out.resolv = Some(parse::resolv_conf(&t)),
        // No resolv.conf: glibc and musl then ask 127.0.0.1.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => out.resolv = None,
        Err(e) => out.skipped.push(Skipped { what: "resolv-conf".into(), why: format!("reading {resolv_path}: {e}") }),
    }
    out
}

/// Resolves `name` as the subject would: hosts file first, `localhost` by definition, then DNS from
/// inside `netns` (None: the current namespace). IPv4 answers come first, as most clients try them first.
pub fn resolve_name(name: &str, files: &SubjectFiles, netns: Option<&Netns>, budget: Duration) -> Result<Resolution> {
    let hits = parse::hosts_lookup(&files.hosts, name);
    if !hits.is_empty() {
        let mut addresses: Vec<IpAddr> = hits.iter().map(|e| e.address).collect();
        addresses.sort_by_key(|a| a.is_ipv6());
        return Ok(Resolution {
            name: Some(name.to_string()),
            address: addresses.first().copied(),
            addresses,
            source: ResolutionSource::HostsFile { path: files.hosts_path.clone(), entry: hits[0].clone() },
            dns_queries: vec![],
        });
    }
    if hostreach_model::target::is_localhost_name(name) {
        let a = IpAddr::V4(Ipv4Addr::LOCALHOST);
        return Ok(Resolution {
            name: Some(name.to_string()),
            address: Some(a),
            addresses: vec![a, IpAddr::V6(Ipv6Addr::LOCALHOST)],
            source: ResolutionSource::Localhost,
            dns_queries: vec![],
        });
    }
    let rc = files.resolv.clone().unwrap_or_default();
    let servers = if rc.nameservers.is_empty() { vec![IpAddr::V4(Ipv4Addr::LOCALHOST)] } else { rc.nameservers.clone() };
    let candidates = search_candidates(name, &rc);
    let query = move || -> Result<DnsOutcome> {
        let deadline = Instant::now() + budget;
        let mut log = Vec::new();
        for fqdn in &candidates {
            for server in &servers {
                for qtype in [TYPE::A, TYPE::AAAA] {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok((log, None));
                    }
                    let per_query = left.min(Duration::from_millis(1500));
                    let q = dns_query(fqdn, *server, qtype, per_query);
                    let answered = !q.answers.is_empty();
                    let answers = q.answers.clone();
                    let definitive = q.outcome == "NXDOMAIN";
                    log.push(q);
                    if answered {
                        return Ok((log, Some((*server, answers))));
                    }
                    if definitive {
                        break; // NXDOMAIN for A means the name does not exist: AAAA won't differ.
                    }
                }
            }
        }
        Ok((log, None))
    };
    let (dns_queries, found) = match netns {
        Some(ns) => ns.run("hr-dns", query)?,
        None => query()?,
    };
    Ok(match found {
        Some((server, mut addresses)) => {
            addresses.sort_by_key(|a| a.is_ipv6());
            Resolution {
                name: Some(name.to_string()),
                address: addresses.first().copied(),
                addresses,
                source: ResolutionSource::Dns { server },
                dns_queries,
            }
        }
        None => Resolution {
            name: Some(name.to_string()),
            address: None,
            addresses: vec![],
            source: ResolutionSource::Unresolved,
            dns_queries,
        },
    })
}

/// The queries sent, and the server that answered with its addresses.
type DnsOutcome = (Vec<DnsQuery>, Option<(IpAddr, Vec<IpAddr>)>);

/// The names the resolver tries: with search domains first when the name has fewer dots than ndots.
fn search_candidates(name: &str, rc: &ResolvConf) -> Vec<String> {
    let ndots = rc
        .options
        .iter()
        .find_map(|o| o.strip_prefix("ndots:").and_then(|n| n.parse::<usize>().ok()))
        .unwrap_or(1);
    let with_search: Vec<String> = rc.search.iter().map(|s| format!("{name}.{s}")).collect();
    if name.matches('.').count() >= ndots {
        std::iter::once(name.to_string()).chain(with_search).collect()
    } else {
        with_search.into_iter().chain(std::iter::once(name.to_string())).collect()
    }
}

/// One DNS query over UDP from the calling thread's namespace.
fn dns_query(name: &str, server: IpAddr, qtype: TYPE, timeout: Duration) -> DnsQuery {
    let start = Instant::now();
    let qtype_name = format!("{qtype:?}");
    let done = |outcome: String, answers: Vec<IpAddr>| DnsQuery {
        server,
        qtype: qtype_name.clone(),
        outcome,
        answers,
        elapsed_ms: start.elapsed().as_millis() as u64,
    };
    let id: u16 = (std::process::id() as u16) ^ (start.elapsed().subsec_nanos() as u16) ^ 0x5a5a;
    let mut pkt = Packet::new_query(id);
    pkt.set_flags(PacketFlag::RECURSION_DESIRED);
    let Ok(qname) = Name::new(name) else { return done("error: invalid name".into(), vec![]) };
    pkt.questions.push(Question::new(qname, QTYPE::TYPE(qtype), QCLASS::CLASS(CLASS::IN), false));
    let Ok(bytes) = pkt.build_bytes_vec() else { return done("error: could not build query".into(), vec![]) };
    let bind: SocketAddr = if server.is_ipv4() { "0.0.0.0:0".parse().unwrap() } else { "[::]:0".parse().unwrap() };
    let sock = match UdpSocket::bind(bind) {
        Ok(s) => s,
        Err(e) => return done(format!("error: {e}"), vec![]),
    };
    if let Err(e) = sock.connect(SocketAddr::new(server, 53)).and_then(|_| sock.send(&bytes)) {
        return done(io_outcome(&e), vec![]);
    }
    let _ = sock.set_read_timeout(Some(timeout.max(Duration::from_millis(1))));
    let mut buf = [0u8; 4096];
    loop {
        let n = match sock.recv(&mut buf) {
            Ok(n) => n,
            Err(e) => return done(io_outcome(&e), vec![]),
        };
        let Ok(reply) = Packet::parse(&buf[..n]) else { continue };
        if reply.id() != id {
            continue;
        }
        let answers: Vec<IpAddr> = reply
            .answers
            .iter()
            .filter_map(|rr| match &rr.rdata {
                RData::A(a) => Some(IpAddr::V4(Ipv4Addr::from(a.address))),
                RData::AAAA(a) => Some(IpAddr::V6(Ipv6Addr::from(a.address))),
                _ => None,
            })
            .collect();
        let outcome = match reply.rcode() {
            RCODE::NoError => "NOERROR".to_string(),
            RCODE::NameError => "NXDOMAIN".to_string(),
            RCODE::ServerFailure => "SERVFAIL".to_string(),
            RCODE::Refused => "REFUSED".to_string(),
            other => format!("{other:?}").to_uppercase(),
        };
        return done(outcome, answers);
    }
}

fn io_outcome(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => "timeout".into(),
        std::io::ErrorKind::ConnectionRefused => "connection-refused (ICMP port unreachable: nothing listens on port 53)".into(),
        _ => format!("error: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_order_follows_ndots() {
        let rc = ResolvConf { nameservers: vec![], search: vec!["lab.test".into()], options: vec![] };
        assert_eq!(search_candidates("db", &rc), vec!["db.lab.test", "db"]);
        assert_eq!(search_candidates("db.x", &rc), vec!["db.x", "db.x.lab.test"]);
        let rc5 = ResolvConf { options: vec!["ndots:5".into()], ..rc };
        assert_eq!(search_candidates("a.b.c", &rc5)[0], "a.b.c.lab.test");
    }

    #[test]
    fn hosts_file_wins_and_localhost_is_loopback() {
        let files = SubjectFiles {
            hosts_path: "/proc/1/root/etc/hosts".into(),
            hosts: parse::hosts_file("172.17.0.1 host.docker.internal\n"),
            resolv: None,
            skipped: vec![],
        };
        let r = resolve_name("host.docker.internal", &files, None, Duration::from_millis(10)).unwrap();
        assert_eq!(r.address, Some("172.17.0.1".parse().unwrap()));
        assert!(matches!(r.source, ResolutionSource::HostsFile { .. }));
        let r = resolve_name("localhost", &files, None, Duration::from_millis(10)).unwrap();
        assert_eq!(r.source, ResolutionSource::Localhost);
    }

    #[test]
    fn dns_against_a_closed_port_fails_fast() {
        // Nothing listens on udp/53 on 127.0.0.1 here: ICMP port unreachable comes back at once.
        let files = SubjectFiles {
            hosts_path: "h".into(),
            hosts: vec![],
            resolv: Some(ResolvConf { nameservers: vec!["127.0.0.1".parse().unwrap()], ..Default::default() }),
            skipped: vec![],
        };
        let t = Instant::now();
        let r = resolve_name("nothing.invalid", &files, None, Duration::from_secs(2)).unwrap();
        assert_eq!(r.source, ResolutionSource::Unresolved);
        assert!(!r.dns_queries.is_empty());
        assert!(t.elapsed() < Duration::from_millis(1500), "{:?}", r.dns_queries);
    }
}
