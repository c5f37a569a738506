//! The host's listening sockets against the target: who listens on the port, on which addresses, and
//! whether one of them accepts the address the container targets.

use hostreach_model::target::{is_loopback, is_unspecified};
use hostreach_model::{Proto, SocketFact};
use std::net::IpAddr;

/// What the socket table says about one (address, port, proto).
#[derive(Debug, Clone, PartialEq)]
pub enum Listening<'a> {
    /// A listener accepts this exact destination.
    Accepts(Vec<&'a SocketFact>),
    /// Nothing listens on the port at all.
    Nothing,
    /// Listeners exist, all on loopback addresses.
    LoopbackOnly(Vec<&'a SocketFact>),
    /// Listeners exist on specific addresses, none of them the target (some may be loopback).
    OtherAddresses(Vec<&'a SocketFact>),
}

/// The listeners on `port`/`proto`.
pub fn listeners_on(sockets: &[SocketFact], proto: Proto, port: u16) -> Vec<&SocketFact> {
    sockets.iter().filter(|s| s.proto == proto && s.local_port == port && s.is_listener()).collect()
}

/// Does a listener bound to `s.local_address` accept packets addressed to `dst`?
pub fn accepts(s: &SocketFact, dst: &IpAddr) -> bool {
    let local = s.local_address;
    match (local, dst) {
        (IpAddr::V4(l), IpAddr::V4(d)) => l.is_unspecified() || l == *d,
        (IpAddr::V6(l), IpAddr::V6(d)) => l.is_unspecified() || l == *d,
        // An AF_INET6 socket without IPV6_V6ONLY takes IPv4 too: [::] for any, [::ffff:a.b.c.d] for one.
        (IpAddr::V6(l), IpAddr::V4(d)) => {
            if s.v6only == Some(true) {
                return false;
            }
            l.is_unspecified() || l.to_ipv4_mapped() == Some(*d)
        }
        (IpAddr::V4(_), IpAddr::V6(d)) => d.to_ipv4_mapped().is_some_and(|m| IpAddr::V4(m) == local || is_unspecified(&local)),
    }
}

pub fn classify<'a>(sockets: &'a [SocketFact], proto: Proto, dst: &IpAddr, port: u16) -> Listening<'a> {
    let ls = listeners_on(sockets, proto, port);
    if ls.is_empty() {
        return Listening::Nothing;
    }
    let ok: Vec<&SocketFact> = ls.iter().copied().filter(|s| accepts(s, dst)).collect();
    if !ok.is_empty() {
        return Listening::Accepts(ok);
    }
    if ls.iter().all(|s| is_loopback(&s.local_address)) {
        Listening::LoopbackOnly(ls)
    } else {
        Listening::OtherAddresses(ls)
    }
}

/// Which well-known service a listener is, from its process name, command line and port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Postgres,
    Redis,
    Mysql,
    Other,
}

pub fn service_of(listeners: &[&SocketFact], port: u16, scheme: Option<&str>) -> Service {
    for s in listeners {
        if let Some(p) = &s.process {
            let n = p.name.to_ascii_lowercase();
            let cmd = p.cmdline.as_deref().unwrap_or("").to_ascii_lowercase();
            if n.starts_with("postgres") || n == "postmaster" || cmd.contains("postgres") {
                return Service::Postgres;
            }
            if n.starts_with("redis") || cmd.contains("redis-server") {
                return Service::Redis;
            }
            if n.starts_with("mysqld") || n.starts_with("mariadbd") || cmd.contains("mysqld") || cmd.contains("mariadbd") {
                return Service::Mysql;
            }
        }
    }
    // Only when no process was seen: fall back on the scheme and the well-known port.
    if listeners.iter().all(|s| s.process.is_none()) {
        match (scheme, port) {
            (Some("postgres" | "postgresql"), _) | (None, 5432) => return Service::Postgres,
            (Some("redis" | "rediss"), _) | (None, 6379) => return Service::Redis,
            (Some("mysql" | "mariadb"), _) | (None, 3306) => return Service::Mysql,
            _ => {}
        }
    }
    Service::Other
}

#[cfg(test)]
mod tests {
    use super::*;
    use hostreach_model::ProcessRef;

    pub fn sock(addr: &str, port: u16, v6only: Option<bool>, proc_name: Option<&str>) -> SocketFact {
        SocketFact {
            proto: Proto::Tcp,
            local_address: addr.parse().unwrap(),
            local_port: port,
            remote_address: None,
            remote_port: None,
            state: "LISTEN".into(),
            v6only,
            bound_device: None,
            inode: 1,
            uid: 0,
            recv_q: 0,
            send_q: 128,
            process: proc_name.map(|n| ProcessRef { pid: 42, name: n.into(), cmdline: None }),
        }
    }

    #[test]
    fn classification() {
        let gw: IpAddr = "172.17.0.1".parse().unwrap();
        assert_eq!(classify(&[], Proto::Tcp, &gw, 5432), Listening::Nothing);
        let lo = [sock("127.0.0.1", 5432, None, None), sock("::1", 5432, Some(true), None)];
        assert!(matches!(classify(&lo, Proto::Tcp, &gw, 5432), Listening::LoopbackOnly(v) if v.len() == 2));
        let other = [sock("198.18.0.1", 5432, None, None), sock("127.0.0.1", 5432, None, None)];
        assert!(matches!(classify(&other, Proto::Tcp, &gw, 5432), Listening::OtherAddresses(_)));
        let any = [sock("0.0.0.0", 5432, None, None)];
        assert!(matches!(classify(&any, Proto::Tcp, &gw, 5432), Listening::Accepts(_)));
        // [::] dual-stack takes IPv4; with V6ONLY it does not.
        let dual = [sock("::", 5432, Some(false), None)];
        assert!(matches!(classify(&dual, Proto::Tcp, &gw, 5432), Listening::Accepts(_)));
        let v6only = [sock("::", 5432, Some(true), None)];
        assert!(matches!(classify(&v6only, Proto::Tcp, &gw, 5432), Listening::OtherAddresses(_)));
        let exact = [sock("172.17.0.1", 5432, None, None)];
        assert!(matches!(classify(&exact, Proto::Tcp, &gw, 5432), Listening::Accepts(_)));
        // Another port does not count.
        assert_eq!(classify(&exact, Proto::Tcp, &gw, 5433), Listening::Nothing);
    }

    #[test]
    fn services() {
        let pg = sock("127.0.0.1", 5433, None, Some("postgres"));
        assert_eq!(service_of(&[&pg], 5433, None), Service::Postgres);
        let r = sock("127.0.0.1", 7000, None, Some("redis-server"));
        assert_eq!(service_of(&[&r], 7000, None), Service::Redis);
        let m = sock("127.0.0.1", 3306, None, Some("mariadbd"));
        assert_eq!(service_of(&[&m], 3306, None), Service::Mysql);
        let s = sock("127.0.0.1", 5432, None, Some("socat"));
        assert_eq!(service_of(&[&s], 5432, None), Service::Other, "a known process wins over the port");
        let anon = sock("127.0.0.1", 5432, None, None);
        assert_eq!(service_of(&[&anon], 5432, None), Service::Postgres);
    }
}
