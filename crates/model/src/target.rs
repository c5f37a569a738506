//! TARGET as the contract defines it: `host:PORT`, `IP:PORT`, `[IPv6]:PORT`, `NAME:PORT`, or a URL
//! `scheme://[user[:pass]@]host[:port][/...]` with the scheme's default port.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Transport protocol of a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}

impl std::str::FromStr for Proto {
    type Err = TargetError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Ok(Proto::Tcp),
            "udp" => Ok(Proto::Udp),
            _ => Err(TargetError::BadProto(s.to_string())),
        }
    }
}

/// Where the target points, before resolution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "kebab-case")]
pub enum TargetHost {
    /// The literal word `host`: the host as this container reaches it (its bridge gateway).
    Host,
    Ip(IpAddr),
    Name(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// What the user typed.
    pub input: String,
    pub host: TargetHost,
    pub port: u16,
    pub proto: Proto,
    /// The URL scheme, when the target was a URL.
    pub scheme: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("empty target: give host:PORT, IP:PORT, NAME:PORT or a URL such as postgres://host/db")]
    Empty,
    #[error("target {0:?} has no port: write it as {0}:PORT, or use a URL whose scheme has a default port")]
    NoPort(String),
    #[error("target {0:?}: port {1:?} is not a number from 1 to 65535")]
    BadPort(String, String),
    #[error("target {0:?}: the URL scheme {1:?} has no default port; add one, as in {1}://HOST:PORT")]
    NoDefaultPort(String, String),
    #[error("target {0:?} is not a valid URL: {1}")]
    BadUrl(String, String),
    #[error("target {0:?}: {1:?} is not a valid host name or address")]
    BadHost(String, String),
    #[error("protocol {0:?} is not tcp or udp")]
    BadProto(String),
}

/// The default port of a URL scheme, as the contract lists them.
pub fn default_port(scheme: &str) -> Option<u16> {
    Some(match scheme.to_ascii_lowercase().as_str() {
        "postgres" | "postgresql" => 5432,
        "mysql" | "mariadb" => 3306,
        "redis" | "rediss" => 6379,
        "mongodb" => 27017,
        "amqp" => 5672,
        "http" | "ws" => 80,
        "https" | "wss" => 443,
        _ => return None,
    })
}

impl Target {
    /// Parses a TARGET. `proto` comes from `--proto`.
    pub fn parse(input: &str, proto: Proto) -> Result<Target, TargetError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(TargetError::Empty);
        }
        if let Some(idx) = s.find("://") {
            return Self::parse_url(input, s, &s[..idx], proto);
        }
        let (host_part, port_part) = if let Some(rest) = s.strip_prefix('[') {
            let end = rest
                .find(']')
                .ok_or_else(|| TargetError::BadHost(input.into(), s.into()))?;
            let host = &rest[..end];
            let after = &rest[end + 1..];
            let port = after
                .strip_prefix(':')
                .ok_or_else(|| TargetError::NoPort(input.into()))?;
            (host, port)
        } else {
            // Exactly one colon: host:port. More than one without brackets is a bare IPv6 address.
            match s.rfind(':') {
                None => return Err(TargetError::NoPort(input.into())),
                Some(i) => {
                    let (h, p) = (&s[..i], &s[i + 1..]);
                    if h.contains(':') {
                        return Err(TargetError::BadHost(
                            input.into(),
                            format!("{h} (write IPv6 addresses as [ADDR]:PORT)"),
                        ));
                    }
                    (h, p)
                }
            }
        };
        let port = parse_port(input, port_part)?;
        let host = parse_host(input, host_part)?;
        Ok(Target { input: input.to_string(), host, port, proto, scheme: None })
    }

    fn parse_url(input: &str, s: &str, scheme: &str, proto: Proto) -> Result<Target, TargetError> {
        let url = url::Url::parse(s).map_err(|e| TargetError::BadUrl(input.into(), e.to_string()))?;
        let host_str = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| TargetError::BadUrl(input.into(), "it names no host".into()))?;
        let host_str = host_str.trim_start_matches('[').trim_end_matches(']');
        // url keeps the port of special schemes only when it is not the default; ask both ways.
        let port = match url.port() {
            Some(p) => p,
            None => {
                // `url` drops an explicit default port for special schemes (http://h:80): the default is the same.
                default_port(scheme).ok_or_else(|| TargetError::NoDefaultPort(input.into(), scheme.to_string()))?
            }
        };
        if port == 0 {
            return Err(TargetError::BadPort(input.into(), "0".into()));
        }
        let host = parse_host(input, host_str)?;
        Ok(Target {
            input: redact_password(input, &url),
            host,
            port,
            proto,
            scheme: Some(scheme.to_ascii_lowercase()),
        })
    }

    /// The name to resolve, if the target is a name.
    pub fn name(&self) -> Option<&str> {
        match &self.host {
            TargetHost::Name(n) => Some(n),
            _ => None,
        }
    }
}

/// The URL as typed, with its password (if any) replaced by `***`: reports are shared and logged.
fn redact_password(input: &str, url: &url::Url) -> String {
    match url.password() {
        Some(pw) if !pw.is_empty() => {
            let user = url.username();
            input.replacen(&format!("{user}:{pw}@"), &format!("{user}:***@"), 1)
        }
        _ => input.to_string(),
    }
}

fn parse_port(input: &str, p: &str) -> Result<u16, TargetError> {
    if p.is_empty() {
        return Err(TargetError::NoPort(input.into()));
    }
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(TargetError::BadPort(input.into(), p.into())),
        Ok(n) => Ok(n),
    }
}

fn parse_host(input: &str, h: &str) -> Result<TargetHost, TargetError> {
    if h.is_empty() {
        return Err(TargetError::BadHost(input.into(), h.into()));
    }
    if h.eq_ignore_ascii_case("host") {
        return Ok(TargetHost::Host);
    }
    if let Ok(ip) = h.parse::<IpAddr>() {
        return Ok(TargetHost::Ip(ip));
    }
    if h.contains(':') {
        return Err(TargetError::BadHost(input.into(), h.into()));
    }
    let valid = h.len() <= 253
        && h.trim_end_matches('.').split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                && !label.starts_with('-')
        });
    if !valid {
        return Err(TargetError::BadHost(input.into(), h.into()));
    }
    Ok(TargetHost::Name(h.trim_end_matches('.').to_ascii_lowercase()))
}

/// Names that mean "the host" on Docker Desktop and with `--add-host NAME:host-gateway`.
pub const HOST_ALIASES: &[&str] = &[
    "host.docker.internal",
    "gateway.docker.internal",
    "host.containers.internal",
    "host-gateway",
];

pub fn is_host_alias(name: &str) -> bool {
    HOST_ALIASES.iter().any(|a| a.eq_ignore_ascii_case(name))
}

/// `localhost` and its usual spellings: they resolve inside the container, to the container.
pub fn is_localhost_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n == "localhost" || n.ends_with(".localhost") || n == "ip6-localhost" || n == "ip6-loopback"
}

pub fn is_loopback(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|m| m.is_loopback()),
    }
}

pub fn is_unspecified(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => *v4 == Ipv4Addr::UNSPECIFIED,
        IpAddr::V6(v6) => *v6 == Ipv6Addr::UNSPECIFIED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Result<Target, TargetError> {
        Target::parse(s, Proto::Tcp)
    }

    #[test]
    fn host_keyword() {
        let x = t("host:5432").unwrap();
        assert_eq!(x.host, TargetHost::Host);
        assert_eq!(x.port, 5432);
        assert_eq!(t("HOST:1").unwrap().host, TargetHost::Host);
    }

    #[test]
    fn ip_forms() {
        assert_eq!(t("172.17.0.1:80").unwrap().host, TargetHost::Ip("172.17.0.1".parse().unwrap()));
        let v6 = t("[::1]:6379").unwrap();
        assert_eq!(v6.host, TargetHost::Ip("::1".parse().unwrap()));
        assert_eq!(v6.port, 6379);
        assert!(matches!(t("::1:80"), Err(TargetError::BadHost(..))));
        assert!(matches!(t("[::1]"), Err(TargetError::NoPort(..))));
    }

    #[test]
    fn names() {
        let x = t("db.example.internal:5432").unwrap();
        assert_eq!(x.host, TargetHost::Name("db.example.internal".into()));
        assert_eq!(t("Host.Docker.Internal:1").unwrap().name(), Some("host.docker.internal"));
        assert!(matches!(t("bad name:1"), Err(TargetError::BadHost(..))));
        assert!(matches!(t("-x:1"), Err(TargetError::BadHost(..))));
    }

    #[test]
    fn ports() {
        assert!(matches!(t("host"), Err(TargetError::NoPort(..))));
        assert!(matches!(t("host:"), Err(TargetError::NoPort(..))));
        assert!(matches!(t("host:0"), Err(TargetError::BadPort(..))));
        assert!(matches!(t("host:65536"), Err(TargetError::BadPort(..))));
        assert!(matches!(t("host:http"), Err(TargetError::BadPort(..))));
        assert_eq!(t("host:65535").unwrap().port, 65535);
    }

    #[test]
    fn urls() {
        let x = t("postgresql://user:secret@host.docker.internal/db?sslmode=off").unwrap();
        assert_eq!(x.port, 5432);
        assert_eq!(x.name(), Some("host.docker.internal"));
        assert_eq!(x.scheme.as_deref(), Some("postgresql"));
        assert_eq!(x.input, "postgresql://user:***@host.docker.internal/db?sslmode=off", "the password never shows");
        assert_eq!(t("redis://:pw@h").unwrap().input, "redis://:***@h");
        assert_eq!(t("redis://u@h").unwrap().input, "redis://u@h");
        assert_eq!(t("redis://172.17.0.1").unwrap().port, 6379);
        assert_eq!(t("redis://host:6380").unwrap().host, TargetHost::Host, "`host` is the host in URLs too");
        assert_eq!(t("mysql://u@db:3307/x").unwrap().port, 3307);
        assert_eq!(t("mariadb://db").unwrap().port, 3306);
        assert_eq!(t("mongodb://db").unwrap().port, 27017);
        assert_eq!(t("amqp://guest:guest@rabbit").unwrap().port, 5672);
        assert_eq!(t("http://h").unwrap().port, 80);
        assert_eq!(t("http://h:80/").unwrap().port, 80);
        assert_eq!(t("https://h/x").unwrap().port, 443);
        assert_eq!(t("http://[::1]:8080/").unwrap().host, TargetHost::Ip("::1".parse().unwrap()));
        assert!(matches!(t("foo://h"), Err(TargetError::NoDefaultPort(..))));
        assert_eq!(t("foo://h:9").unwrap().port, 9);
        assert!(matches!(t("postgres://"), Err(TargetError::BadUrl(..))));
        assert!(matches!(t("http://h:99999"), Err(TargetError::BadUrl(..))));
    }

    #[test]
    fn aliases() {
        assert!(is_host_alias("host.docker.internal"));
        assert!(!is_host_alias("db"));
        assert!(is_localhost_name("LOCALHOST"));
        assert!(is_loopback(&"::ffff:127.0.0.1".parse().unwrap()));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,64}") {
            let _ = Target::parse(&s, Proto::Tcp);
        }

        #[test]
        fn host_port_roundtrip(port in 1u16..=65535, a in 0u8..=255, b in 0u8..=255) {
            let s = format!("10.{a}.{b}.1:{port}");
            let x = Target::parse(&s, Proto::Udp).unwrap();
            proptest::prop_assert_eq!(x.port, port);
            proptest::prop_assert_eq!(x.proto, Proto::Udp);
        }
    }
}
