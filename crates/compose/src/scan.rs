//! The addresses a string names: URLs (`scheme://user@host:port/...`, several hosts after a
//! comma), `host:port` and `[v6]:port` pairs, DSN forms (`user@host:port`, `tcp(host:port)`)
//! and bare hosts. Only hosts that matter to container-to-host traffic are returned: loopback
//! names and addresses, `host.docker.internal`, and IP literals.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The host alias Docker Desktop provides and Linux engines map only through `extra_hosts`.
pub const HOST_ALIAS: &str = "host.docker.internal";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostClass {
    /// localhost, 127.0.0.0/8, ::1.
    Loopback,
    /// host.docker.internal.
    HostAlias,
    /// Any other IP literal.
    Ip(IpAddr),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefKind {
    /// Inside a URL with a scheme.
    Url,
    /// `host:port` without a scheme.
    HostPort,
    /// A host alone.
    Bare,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRef {
    /// The host as written (without brackets).
    pub host: String,
    pub class: HostClass,
    pub port: Option<u16>,
    /// The URL scheme, lower case.
    pub scheme: Option<String>,
    pub kind: RefKind,
    /// Byte range of the host in the scanned string.
    pub start: usize,
    pub end: usize,
}

impl HostRef {
    /// The port written, else the scheme's default (the contract's list).
    pub fn port_or_default(&self) -> Option<u16> {
        self.port
            .or_else(|| self.scheme.as_deref().and_then(default_port))
    }
}

/// Default ports of the schemes the contract names, and a few more of the same kind.
pub fn default_port(scheme: &str) -> Option<u16> {
    Some(match scheme {
        "postgres" | "postgresql" => 5432,
        "mysql" | "mariadb" => 3306,
        "redis" => 6379,
        "rediss" => 6380,
        "mongodb" => 27017,
        "amqp" => 5672,
        "amqps" => 5671,
        "http" | "ws" => 80,
        "https" | "wss" => 443,
        "nats" => 4222,
        "memcached" => 11211,
        "ldap" => 389,
        "ldaps" => 636,
        "smtp" => 25,
        "ftp" => 21,
        _ => return None,
    })
}

pub fn classify(host: &str) -> Option<HostClass> {
    let h = host.trim_end_matches('.');
    if h.eq_ignore_ascii_case("localhost")
        || h.eq_ignore_ascii_case("localhost.localdomain")
        || h.eq_ignore_ascii_case("ip6-localhost")
    {
        return Some(HostClass::Loopback);
    }
    if h.eq_ignore_ascii_case(HOST_ALIAS) {
        return Some(HostClass::HostAlias);
    }
    let ip: IpAddr = if let Ok(v4) = h.parse::<Ipv4Addr>() {
        IpAddr::V4(v4)
    } else if h.contains(':') {
        IpAddr::V6(h.parse::<Ipv6Addr>().ok()?)
    } else {
        return None;
    };
    if ip.is_loopback() {
        return Some(HostClass::Loopback);
    }
    if let IpAddr::V6(v6) = ip
        && let Some(v4) = v6.to_ipv4_mapped()
        && v4.is_loopback()
    {
        return Some(HostClass::Loopback);
    }
    Some(HostClass::Ip(ip))
}

/// Every interesting host reference in `s`, in order.
pub fn scan(s: &str) -> Vec<HostRef> {
    let mut out = Vec::new();
    let mut covered: Vec<(usize, usize)> = Vec::new();
    // URLs first
    let bytes = s.as_bytes();
    let mut from = 0;
    while let Some(rel) = s[from..].find("://") {
        let at = from + rel;
        from = at + 3;
        let mut st = at;
        while st > 0
            && (bytes[st - 1].is_ascii_alphanumeric()
                || matches!(bytes[st - 1], b'+' | b'.' | b'-'))
        {
            st -= 1;
        }
        while st < at && !bytes[st].is_ascii_alphabetic() {
            st += 1;
        }
        if st == at {
            continue;
        }
        let scheme = s[st..at].to_ascii_lowercase();
        let auth_start = at + 3;
        let auth_end = s[auth_start..]
            .find(|c: char| {
                c.is_whitespace()
                    || matches!(
                        c,
                        '/' | '?' | '#' | '"' | '\'' | '<' | '>' | ';' | ')' | '`' | '|'
                    )
            })
            .map(|i| auth_start + i)
            .unwrap_or(s.len());
        covered.push((st, auth_end));
        let auth = &s[auth_start..auth_end];
        let host_start = auth.rfind('@').map(|i| i + 1).unwrap_or(0);
        let mut off = auth_start + host_start;
        for part in auth[host_start..].split(',') {
            if let Some((h, hs, he, port)) = split_host_port(part)
                && let Some(class) = classify(h)
            {
                out.push(HostRef {
                    host: h.to_string(),
                    class,
                    port,
                    scheme: Some(scheme.clone()),
                    kind: RefKind::Url,
                    start: off + hs,
                    end: off + he,
                });
            }
            off += part.len() + 1;
        }
        from = auth_end.max(from);
    }
    // then tokens outside URLs
    let is_delim = |c: char| {
        c.is_whitespace()
            || matches!(
                c,
                '"' | '\'' | ',' | ';' | '=' | '(' | ')' | '<' | '>' | '|' | '&' | '`' | '{' | '}'
            )
    };
    let mut i = 0;
    while i < s.len() {
        let c = s[i..].chars().next().unwrap_or(' ');
        if is_delim(c) {
            i += c.len_utf8();
            continue;
        }
        let end = s[i..].find(is_delim).map(|e| i + e).unwrap_or(s.len());
        let tok_start = i;
        i = end;
        if covered.iter().any(|&(a, b)| tok_start < b && end > a) {
            continue;
        }
        let mut tok = &s[tok_start..end];
        let mut base = tok_start;
        if let Some(at) = tok.rfind('@') {
            base += at + 1;
            tok = &tok[at + 1..];
        }
        // a CIDR or a path after the host: `172.17.0.0/16` is a subnet, `localhost:5432/db` a DSN
        let (tok, had_slash) = match tok.find('/') {
            Some(sl) => (&tok[..sl], true),
            None => (tok, false),
        };
        let tok = tok.trim_end_matches(['.', ':']);
        if tok.is_empty() {
            continue;
        }
        if let Some((h, hs, he, port)) = split_host_port(tok) {
            if had_slash && port.is_none() && h.parse::<IpAddr>().is_ok() {
                continue; // a subnet, not an address to connect to
            }
            if let Some(class) = classify(h) {
                let kind = if port.is_some() {
                    RefKind::HostPort
                } else {
                    RefKind::Bare
                };
                out.push(HostRef {
                    host: h.to_string(),
                    class,
                    port,
                    scheme: None,
                    kind,
                    start: base + hs,
                    end: base + he,
                });
            }
        }
    }
    out.sort_by_key(|r| r.start);
    out
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`, or a bare IPv6 address: (host, start, end, port).
fn split_host_port(p: &str) -> Option<(&str, usize, usize, Option<u16>)> {
    if p.is_empty() {
        return None;
    }
    if let Some(rest) = p.strip_prefix('[') {
        let close = rest.find(']')?;
        let host = &rest[..close];
        let after = &rest[close + 1..];
        let port = match after.strip_prefix(':') {
            Some(d) => Some(d.parse::<u16>().ok()?),
            None if after.is_empty() => None,
            None => return None,
        };
        return Some((host, 1, 1 + close, port));
    }
    if p.matches(':').count() > 1 {
        // a bare IPv6 address (no port can be told apart without brackets)
        return p.parse::<Ipv6Addr>().ok().map(|_| (p, 0, p.len(), None));
    }
    match p.split_once(':') {
        Some((h, d)) => {
            if d.is_empty() || d.len() > 5 || !d.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            Some((h, 0, h.len(), Some(d.parse::<u16>().ok()?)))
        }
        None => Some((p, 0, p.len(), None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(s: &str) -> Vec<(String, Option<u16>, RefKind)> {
        scan(s)
            .into_iter()
            .map(|r| (r.host.clone(), r.port_or_default(), r.kind))
            .collect()
    }

    #[test]
    fn urls() {
        assert_eq!(
            hosts("postgres://app:secret@localhost:5433/app"),
            vec![("localhost".into(), Some(5433), RefKind::Url)]
        );
        assert_eq!(
            hosts("postgresql://u@127.0.0.1/db"),
            vec![("127.0.0.1".into(), Some(5432), RefKind::Url)]
        );
        assert_eq!(
            hosts("redis://[::1]:6380/0"),
            vec![("::1".into(), Some(6380), RefKind::Url)]
        );
        assert_eq!(
            hosts("http://host.docker.internal:8080/health"),
            vec![("host.docker.internal".into(), Some(8080), RefKind::Url)]
        );
        assert_eq!(
            hosts("mongodb://a:b@localhost:27017,172.17.0.1:27018/db?replicaSet=rs"),
            vec![
                ("localhost".into(), Some(27017), RefKind::Url),
                ("172.17.0.1".into(), Some(27018), RefKind::Url)
            ]
        );
        assert_eq!(hosts("https://example.com/x"), vec![]);
        assert_eq!(
            hosts("amqp://guest:guest@localhost"),
            vec![("localhost".into(), Some(5672), RefKind::Url)]
        );
    }

    #[test]
    fn pairs_dsns_and_bare_hosts() {
        assert_eq!(
            hosts("localhost:5432"),
            vec![("localhost".into(), Some(5432), RefKind::HostPort)]
        );
        assert_eq!(
            hosts("user:pw@tcp(127.0.0.1:3306)/db"),
            vec![("127.0.0.1".into(), Some(3306), RefKind::HostPort)]
        );
        assert_eq!(
            hosts("host=localhost port=5432 dbname=x"),
            vec![("localhost".into(), None, RefKind::Bare)]
        );
        assert_eq!(
            hosts("172.17.0.1"),
            vec![("172.17.0.1".into(), None, RefKind::Bare)]
        );
        assert_eq!(
            hosts("sh -c 'curl -f http://localhost:8080/ || exit 1'"),
            vec![("localhost".into(), Some(8080), RefKind::Url)]
        );
        assert_eq!(
            hosts("--db-host 172.17.0.1 --port=5432"),
            vec![("172.17.0.1".into(), None, RefKind::Bare)]
        );
        assert_eq!(
            hosts("[::1]:9000"),
            vec![("::1".into(), Some(9000), RefKind::HostPort)]
        );
        assert_eq!(hosts("::1"), vec![("::1".into(), None, RefKind::Bare)]);
        assert_eq!(
            hosts("host.docker.internal"),
            vec![("host.docker.internal".into(), None, RefKind::Bare)]
        );
    }

    #[test]
    fn not_addresses() {
        assert!(hosts("172.17.0.0/16").is_empty());
        assert!(hosts("version 1.2.3").is_empty());
        assert!(hosts("myhost.docker.internal.example").is_empty());
        assert!(hosts("localhostname:80").is_empty());
        assert!(hosts("12:30:45").is_empty());
        assert!(hosts("").is_empty());
    }

    #[test]
    fn offsets_point_at_the_host() {
        let s = "X=postgres://u@localhost:5432/d and 172.17.0.1:80";
        for r in scan(s) {
            assert_eq!(&s[r.start..r.end], r.host);
        }
    }

    #[test]
    fn classes() {
        assert_eq!(classify("LOCALHOST"), Some(HostClass::Loopback));
        assert_eq!(classify("127.0.0.53"), Some(HostClass::Loopback));
        assert_eq!(classify("::ffff:127.0.0.1"), Some(HostClass::Loopback));
        assert_eq!(classify("Host.Docker.Internal"), Some(HostClass::HostAlias));
        assert_eq!(
            classify("172.17.0.1"),
            Some(HostClass::Ip("172.17.0.1".parse().unwrap()))
        );
        assert_eq!(classify("db"), None);
    }

    proptest::proptest! {
        #[test]
        fn scanning_never_panics_and_ranges_are_valid(s in "\\PC*") {
            for r in scan(&s) {
                proptest::prop_assert!(s.get(r.start..r.end).is_some());
            }
        }
    }
}
