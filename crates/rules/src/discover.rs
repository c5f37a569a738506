//! Which host targets a container intends to reach, found in its configuration: URLs, `HOST:PORT`
//! tokens and `*_HOST`/`*_PORT` pairs in its environment, command and labels, that point at the host
//! (host.docker.internal and kin, a gateway address, an address the host owns) or at localhost.
//! Values are scanned here and never kept: environments hold secrets.

use hostreach_model::target::{default_port, is_host_alias, is_localhost_name};
use hostreach_model::{ContainerConfig, ContainerFacts, NetnsFacts, Proto, Target, TargetHost};
use std::collections::BTreeMap;
use std::net::IpAddr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovered {
    /// A TARGET for `doctor --to` (a URL keeps its scheme; its password is `***`).
    pub target: String,
    /// Where it was found: `env DATABASE_URL`, `label com.example.api`, `command`.
    pub source: String,
}

/// Default ports for `*_HOST` variables without a `*_PORT` beside them, by the variable's prefix.
fn port_for_prefix(prefix: &str) -> Option<u16> {
    let p = prefix.to_ascii_lowercase();
    let table: &[(&str, u16)] = &[
        ("postgres", 5432),
        ("pg", 5432),
        ("redis", 6379),
        ("mysql", 3306),
        ("mariadb", 3306),
        ("mongo", 27017),
        ("rabbit", 5672),
        ("amqp", 5672),
    ];
    table.iter().find(|(k, _)| p.contains(k)).map(|(_, v)| *v)
}

/// Is `host` (a name or address as written) the host, from this container's point of view?
fn host_like(host: &str, c: &ContainerFacts, host_net: Option<&NetnsFacts>) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    if h.eq_ignore_ascii_case("host") {
        return false; // a bare word in configuration is a service name, not hostreach's keyword
    }
    if is_host_alias(h) || is_localhost_name(h) {
        return true;
    }
    let Ok(ip) = h.parse::<IpAddr>() else { return false };
    if hostreach_model::target::is_loopback(&ip) {
        return true;
    }
    if c.networks.iter().any(|n| n.gateway == Some(ip) || n.ipv6_gateway == Some(ip)) {
        return true;
    }
    if ip == IpAddr::from([172, 17, 0, 1]) {
        return true; // docker0's usual address, hardcoded (it may not be this container's gateway)
    }
    host_net.is_some_and(|h| h.owns(&ip))
}

/// Finds the host targets in a container's configuration, deduplicated, in a stable order.
pub fn host_targets(cfg: &ContainerConfig, c: &ContainerFacts, host_net: Option<&NetnsFacts>) -> Vec<Discovered> {
    let mut out: Vec<Discovered> = Vec::new();
    let mut push = |target: String, source: String| {
        if !out.iter().any(|d| d.target == target) {
            out.push(Discovered { target, source });
        }
    };

    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for kv in &cfg.env {
        if let Some((k, v)) = kv.split_once('=') {
            env.insert(k.to_string(), v.to_string());
        }
    }
    // Values: URLs and HOST:PORT tokens.
    let mut sources: Vec<(String, &str)> = env.iter().map(|(k, v)| (format!("env {k}"), v.as_str())).collect();
    sources.extend(cfg.command.iter().map(|a| ("command".to_string(), a.as_str())));
    sources.extend(cfg.labels.iter().map(|(k, v)| (format!("label {k}"), v.as_str())));
    for (source, value) in &sources {
        for t in scan_value(value) {
            if let Some(d) = to_target(&t, c, host_net) {
                push(d, source.clone());
            }
        }
    }
    // `*_HOST` / `*_PORT` pairs.
    for (k, v) in &env {
        let upper = k.to_ascii_uppercase();
        let prefix = ["_HOSTNAME", "_HOST", "_ADDR", "_ADDRESS", "_SERVER"]
            .iter()
            .find_map(|suf| upper.strip_suffix(suf).map(|p| (p.to_string(), *suf)));
        let Some((prefix, _)) = prefix else { continue };
        let host = v.trim();
        if host.contains(':') && !host.starts_with('[') && host.parse::<IpAddr>().is_err() {
            continue; // HOST:PORT in one value: handled by the token scan
        }
        if !host_like(host, c, host_net) {
            continue;
        }
        let port = env
            .iter()
            .find(|(pk, _)| pk.to_ascii_uppercase() == format!("{prefix}_PORT"))
            .and_then(|(_, pv)| pv.trim().parse::<u16>().ok())
            .filter(|p| *p > 0)
            .or_else(|| port_for_prefix(&prefix));
        if let Some(port) = port {
            let h = if host.parse::<std::net::Ipv6Addr>().is_ok() { format!("[{host}]") } else { host.to_string() };
            push(format!("{h}:{port}"), format!("env {k}"));
        }
    }
    out
}

/// Candidate target strings in one value: URLs (`scheme://...`) and `host:port` tokens.
fn scan_value(v: &str) -> Vec<String> {
    let mut found = Vec::new();
    for token in v.split(|c: char| c.is_whitespace() || matches!(c, ',' | ';' | '"' | '\'' | '(' | ')' | '<' | '>')) {
        let token = token.trim_matches(|c: char| c == '=' || c == '`');
        if token.is_empty() {
            continue;
        }
        // `--db=postgres://...` or `KEY=host:1`: look after the last '=' that precedes a scheme or host.
        let token = match token.find("://") {
            Some(i) => {
                let start = token[..i].rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '+' || c == '-' || c == '.')).map(|j| j + 1).unwrap_or(0);
                &token[start..]
            }
            None => token.rsplit('=').next().unwrap_or(token),
        };
        if token.contains("://") || token.contains(':') {
            found.push(token.to_string());
        }
    }
    found
}

fn to_target(candidate: &str, c: &ContainerFacts, host_net: Option<&NetnsFacts>) -> Option<String> {
    let t = Target::parse(candidate, Proto::Tcp).ok()?;
    let host_str = match &t.host {
        TargetHost::Host => return None,
        TargetHost::Ip(ip) => ip.to_string(),
        TargetHost::Name(n) => n.clone(),
    };
    if !host_like(&host_str, c, host_net) {
        return None;
    }
    // Schemes hostreach cannot probe the meaning of still have a port: keep them as host:port.
    match &t.scheme {
        Some(s) if default_port(s).is_some() || candidate.contains(&format!(":{}", t.port)) => Some(t.input),
        Some(_) => None,
        None => Some(t.input),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hostreach_model::{NetworkAttachment, NetworkMode};

    fn container() -> ContainerFacts {
        ContainerFacts {
            id: "x".into(),
            name: "app".into(),
            image: None,
            running: true,
            status: "running".into(),
            pid: Some(1),
            network_mode_raw: "proj_default".into(),
            network_mode: NetworkMode::UserBridge,
            networks: vec![NetworkAttachment {
                name: "proj_default".into(),
                network_id: "n".into(),
                driver: Some("bridge".into()),
                ip: Some("172.18.0.2".parse().unwrap()),
                prefix_len: Some(16),
                gateway: Some("172.18.0.1".parse().unwrap()),
                ipv6: None,
                ipv6_gateway: None,
                mac: None,
                subnet: Some("172.18.0.0/16".into()),
                bridge: Some("br-0123456789ab".into()),
            }],
            extra_hosts: vec![],
            dns: vec![],
            hosts: vec![],
            resolv: None,
        }
    }

    fn targets(env: &[&str], cmd: &[&str]) -> Vec<String> {
        let cfg = ContainerConfig {
            env: env.iter().map(|s| s.to_string()).collect(),
            command: cmd.iter().map(|s| s.to_string()).collect(),
            labels: BTreeMap::new(),
        };
        host_targets(&cfg, &container(), None).into_iter().map(|d| d.target).collect()
    }

    #[test]
    fn urls_in_env() {
        assert_eq!(
            targets(&["DATABASE_URL=postgresql://app:pw@host.docker.internal:5433/db", "PATH=/usr/bin"], &[]),
            vec!["postgresql://app:***@host.docker.internal:5433/db"]
        );
        assert_eq!(targets(&["REDIS_URL=redis://172.18.0.1"], &[]), vec!["redis://172.18.0.1"]);
        // A service on the compose network is not the host.
        assert!(targets(&["DATABASE_URL=postgres://db:5432/x"], &[]).is_empty());
        assert_eq!(targets(&["API=http://localhost:8080/v1"], &[]), vec!["http://localhost:8080/v1"]);
    }

    #[test]
    fn host_port_pairs() {
        assert_eq!(targets(&["DB_HOST=host.docker.internal", "DB_PORT=5432"], &[]), vec!["host.docker.internal:5432"]);
        assert_eq!(targets(&["POSTGRES_HOST=172.17.0.1"], &[]), vec!["172.17.0.1:5432"]);
        assert!(targets(&["DB_HOST=db", "DB_PORT=5432"], &[]).is_empty());
        assert!(targets(&["FOO_HOST=host.docker.internal"], &[]).is_empty(), "no port, no guess");
        assert_eq!(targets(&["CACHE=host.docker.internal:6379"], &[]), vec!["host.docker.internal:6379"]);
    }

    #[test]
    fn command_and_flags() {
        assert_eq!(
            targets(&[], &["/app", "--db=postgres://u@127.0.0.1:5432/x", "--cache", "172.17.0.1:6379"]),
            vec!["postgres://u@127.0.0.1:5432/x", "172.17.0.1:6379"]
        );
        assert!(targets(&[], &["sleep", "3600"]).is_empty());
    }

    #[test]
    fn host_owned_addresses() {
        let mut host = NetnsFacts::default();
        host.addresses.push(hostreach_model::AddrFact { index: 4, address: "198.18.0.1".parse().unwrap(), prefix_len: 24 });
        let cfg = ContainerConfig { env: vec!["X=198.18.0.1:9000".into(), "Y=10.9.9.9:1".into()], ..Default::default() };
        let got: Vec<String> = host_targets(&cfg, &container(), Some(&host)).into_iter().map(|d| d.target).collect();
        assert_eq!(got, vec!["198.18.0.1:9000"]);
    }
}
