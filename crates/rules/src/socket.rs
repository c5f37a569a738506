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
            process: proc_name.map(|n| std::sync::Arc::new(ProcessRef { pid: 42, name: n.into(), cmdline: None })),
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
    fn reachability() {
        use hostreach_model::{AddrFact, LinkFact, NetnsFacts};
        let link = |index: u32, name: &str| LinkFact {
            index,
            name: name.into(),
            kind: None,
            mtu: Some(1500),
            up: true,
            lower_up: true,
            mac: None,
            master: None,
            peer_index: None,
            peer_netnsid: None,
        };
        let ns = NetnsFacts {
            inode: None,
            links: vec![link(1, "lo"), link(3, "docker0"), link(4, "eth0")],
            addresses: vec![
                AddrFact { index: 1, address: "127.0.0.1".parse().unwrap(), prefix_len: 8 },
                AddrFact { index: 3, address: "172.17.0.1".parse().unwrap(), prefix_len: 16 },
                AddrFact { index: 4, address: "198.18.0.1".parse().unwrap(), prefix_len: 24 },
            ],
            routes: vec![],
        };
        let r = reach(&sock("127.0.0.1", 1, None, None), &ns);
        assert_eq!((r.scope.as_str(), r.interfaces), ("loopback-only", vec!["lo".to_string()]));
        let r = reach(&sock("0.0.0.0", 1, None, None), &ns);
        assert_eq!(r.scope, "all-interfaces");
        assert_eq!(r.interfaces, vec!["docker0", "eth0", "lo"]);
        // [::] V6ONLY on a host with no IPv6 address outside lo: only loopback remains.
        let r = reach(&sock("::", 1, Some(true), None), &ns);
        assert_eq!(r.interfaces, vec!["lo"]);
        let r = reach(&sock("198.18.0.1", 1, None, None), &ns);
        assert_eq!(r.scope, "specific");
        assert_eq!(r.address_on.as_deref(), Some("eth0"));
        assert!(r.interfaces.contains(&"docker0".to_string()));
        let mut dev = sock("0.0.0.0", 1, None, None);
        dev.bound_device = Some(3);
        assert_eq!(reach(&dev, &ns).interfaces, vec!["docker0"]);
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

/// Who can reach a listener: from which interfaces of its namespace its address is reachable.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Reach {
    /// `loopback-only`, `all-interfaces`, `specific` (bound to addresses of some interfaces),
    /// or `device` (SO_BINDTODEVICE).
    pub scope: String,
    /// The interfaces whose traffic reaches it (by name), loopback included where it applies.
    pub interfaces: Vec<String>,
    /// For a listener on one specific address: the interface that address sits on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address_on: Option<String>,
}

/// Reachability of a listener in the namespace described by `ns`. Bridges in the list mean the
/// containers on them reach the listener at the bridge's gateway address (local delivery).
pub fn reach(s: &SocketFact, ns: &hostreach_model::NetnsFacts) -> Reach {
    let names = |pred: &dyn Fn(&hostreach_model::LinkFact) -> bool| -> Vec<String> {
        let mut v: Vec<String> = ns.links.iter().filter(|l| pred(l)).map(|l| l.name.clone()).collect();
        v.sort();
        v.dedup();
        v
    };
    if let Some(dev) = s.bound_device {
        return Reach { scope: "device".into(), interfaces: names(&|l| l.index == dev), address_on: None };
    }
    let a = s.local_address;
    if is_loopback(&a) {
        return Reach { scope: "loopback-only".into(), interfaces: names(&|l| l.name == "lo"), address_on: None };
    }
    if is_unspecified(&a) {
        // A socket on 0.0.0.0 takes every IPv4 address of the namespace, [::] every IPv6 one (and
        // IPv4 too unless V6ONLY): any interface with such an address, and loopback.
        let v4 = a.is_ipv4() || s.v6only != Some(true);
        let v6 = a.is_ipv6();
        let has = |l: &hostreach_model::LinkFact| {
            l.name == "lo" || ns.addrs_of(l.index).any(|x| (x.address.is_ipv4() && v4) || (x.address.is_ipv6() && v6))
        };
        return Reach { scope: "all-interfaces".into(), interfaces: names(&has), address_on: None };
    }
    // A specific non-loopback address: Linux delivers locally whatever interface the packet came in
    // by (weak host model), so every interface reaches it, at that one address.
    Reach {
        scope: "specific".into(),
        interfaces: names(&|l| l.up || l.name == "lo"),
        address_on: ns.owner_of(&a).map(|l| l.name.clone()),
    }
}
