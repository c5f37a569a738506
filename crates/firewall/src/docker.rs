//! Docker's firewall backend: what the daemon says (`GET /info` `FirewallBackend.Driver`, Docker
//! 28.1 and later: `iptables`, `iptables+firewalld`, `nftables`), or, when it does not say (older
//! daemons, saved rules without a daemon), what its rules show. No I/O.

use crate::manager::{Detected, Manager};
use serde::Serialize;

/// What the Docker daemon answered about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DaemonAnswer {
    /// `GET /version` Version.
    pub version: Option<String>,
    /// `GET /info` FirewallBackend.Driver; `None` on daemons older than 28.1.
    pub firewall_backend: Option<String>,
}

/// Where the backend was learnt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendSource {
    /// The daemon reported it (`GET /info` FirewallBackend.Driver).
    Daemon,
    /// The daemon did not report it (or was not asked): read from Docker's chains and tables in the rules.
    Inferred,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FirewallBackend {
    /// `iptables`, `iptables+firewalld`, `nftables` (the daemon's words, or what the rules show);
    /// `null` when neither the daemon nor the rules say.
    pub driver: Option<String>,
    pub source: BackendSource,
    /// The daemon's version, when one answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub daemon_version: Option<String>,
    /// One sentence for people.
    pub summary: String,
}

impl FirewallBackend {
    /// Docker's nftables backend (Docker 29, experimental): no DOCKER-USER chain.
    pub fn is_nftables(&self) -> bool {
        self.driver.as_deref().is_some_and(|d| d.starts_with("nftables"))
    }
}

fn what(driver: &str) -> &'static str {
    if driver.starts_with("nftables") {
        "Docker's rules are nftables tables `ip docker-bridges` and `ip6 docker-bridges`; there is no DOCKER-USER chain"
    } else if driver.contains("firewalld") {
        "Docker's rules are iptables chains (DOCKER, DOCKER-USER, ...), and its bridges are in firewalld's `docker` zone"
    } else {
        "Docker's rules are iptables chains (DOCKER, DOCKER-USER, ...)"
    }
}

/// Docker's firewall backend from the daemon's answer, else from the managers found in the rules.
/// Returns `None` when no daemon answered and the rules hold nothing of Docker's; and notes when the
/// daemon and the rules disagree.
pub fn firewall_backend(detected: &[Detected], daemon: Option<&DaemonAnswer>) -> (Option<FirewallBackend>, Vec<String>) {
    let mut notes = Vec::new();
    let docker: Vec<&Detected> = detected.iter().filter(|d| d.manager == Manager::Docker).collect();
    let nft_rules = docker.iter().any(|d| d.version.as_deref() == Some("29-nftables"));
    let ipt_rules = docker.iter().any(|d| d.version.as_deref() != Some("29-nftables"));
    let firewalld = detected.iter().any(|d| d.manager == Manager::Firewalld);
    let inferred: Option<(String, String)> = if nft_rules && !ipt_rules {
        Some(("nftables".into(), docker.iter().find(|d| d.version.as_deref() == Some("29-nftables")).map(|d| d.evidence.clone()).unwrap_or_default()))
    } else if ipt_rules {
        let d = docker.iter().find(|d| d.version.as_deref() != Some("29-nftables")).expect("ipt_rules");
        Some(("iptables".into(), format!("{}, {}", d.evidence, d.backend)))
    } else {
        None
    };
    let version = daemon.and_then(|d| d.version.clone());
    if let Some(driver) = daemon.and_then(|d| d.firewall_backend.clone()).filter(|d| !d.is_empty()) {
        let summary = format!(
            "{driver}, reported by the Docker daemon{} (GET /info FirewallBackend.Driver): {}",
            version.as_deref().map(|v| format!(" {v}")).unwrap_or_default(),
            what(&driver)
        );
        if driver.starts_with("nftables") && ipt_rules && !nft_rules {
            notes.push("the Docker daemon reports its nftables backend, yet the rules hold Docker's iptables chains and no docker-bridges table: they are left from a run with the iptables backend, or the daemon has not set up its tables yet".into());
        } else if !driver.starts_with("nftables") && nft_rules && !ipt_rules {
            notes.push(format!("the Docker daemon reports the {driver} backend, yet the rules hold Docker's nftables tables (docker-bridges) and none of its iptables chains"));
        }
        return (Some(FirewallBackend { driver: Some(driver), source: BackendSource::Daemon, daemon_version: version, summary }), notes);
    }
    let why = match (daemon, &version) {
        (Some(_), Some(v)) => format!("not reported by the Docker daemon (Docker {v}; GET /info reports FirewallBackend from Docker 28.1)"),
        (Some(_), None) => "not reported by the Docker daemon (GET /info reports FirewallBackend from Docker 28.1)".to_string(),
        (None, _) => "no Docker daemon was asked".to_string(),
    };
    match inferred {
        Some((driver, evidence)) => {
            let summary = format!(
                "{driver}, inferred from the rules ({evidence}); {why}: {}{}",
                what(&driver),
                if firewalld && driver == "iptables" { "; firewalld is present too" } else { "" }
            );
            (Some(FirewallBackend { driver: Some(driver), source: BackendSource::Inferred, daemon_version: version, summary }), notes)
        }
        None if daemon.is_some() => {
            let summary = format!("unknown: {why}, and the rules hold none of Docker's chains or tables (a daemon with iptables: false, or rules of another namespace)");
            (Some(FirewallBackend { driver: None, source: BackendSource::Inferred, daemon_version: version, summary }), notes)
        }
        None => (None, notes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::Backend;

    fn docker(version: &str, backend: Backend) -> Detected {
        Detected { manager: Manager::Docker, version: Some(version.into()), backend, evidence: format!("chains of Docker {version}") }
    }

    #[test]
    fn the_daemons_word_wins_and_each_value_is_named() {
        let rules = [docker("29-nftables", Backend::Nftables)];
        let d = DaemonAnswer { version: Some("29.0.1".into()), firewall_backend: Some("nftables".into()) };
        let (b, notes) = firewall_backend(&rules, Some(&d));
        let b = b.unwrap();
        assert_eq!((b.driver.as_deref(), b.source), (Some("nftables"), BackendSource::Daemon));
        assert!(b.is_nftables());
        assert!(b.summary.contains("no DOCKER-USER chain") && b.summary.contains("docker-bridges") && b.summary.contains("29.0.1"), "{}", b.summary);
        assert!(notes.is_empty());

        let rules = [docker("28", Backend::IptablesNft)];
        for driver in ["iptables", "iptables+firewalld"] {
            let d = DaemonAnswer { version: Some("28.3.0".into()), firewall_backend: Some(driver.into()) };
            let b = firewall_backend(&rules, Some(&d)).0.unwrap();
            assert_eq!((b.driver.as_deref(), b.source), (Some(driver), BackendSource::Daemon));
            assert!(!b.is_nftables());
            assert!(b.summary.starts_with(&format!("{driver}, reported by the Docker daemon 28.3.0")), "{}", b.summary);
            assert_eq!(b.summary.contains("firewalld's `docker` zone"), driver == "iptables+firewalld");
        }
    }

    #[test]
    fn an_older_daemon_or_none_means_inferred_from_the_rules() {
        let rules = [docker("20.10", Backend::IptablesNft)];
        let d = DaemonAnswer { version: Some("20.10.24".into()), firewall_backend: None };
        let b = firewall_backend(&rules, Some(&d)).0.unwrap();
        assert_eq!((b.driver.as_deref(), b.source), (Some("iptables"), BackendSource::Inferred));
        assert!(b.summary.contains("inferred from the rules") && b.summary.contains("not reported by the Docker daemon (Docker 20.10.24"), "{}", b.summary);
        // saved rules, no daemon
        let b = firewall_backend(&[docker("29-nftables", Backend::Nftables)], None).0.unwrap();
        assert_eq!((b.driver.as_deref(), b.source), (Some("nftables"), BackendSource::Inferred));
        assert!(b.summary.contains("no Docker daemon was asked"), "{}", b.summary);
        // nothing of Docker's, no daemon: nothing to say
        assert!(firewall_backend(&[], None).0.is_none());
        // a daemon but no Docker rules
        let b = firewall_backend(&[], Some(&d)).0.unwrap();
        assert_eq!(b.driver, None);
    }

    #[test]
    fn the_daemon_and_the_rules_disagreeing_is_noted() {
        let d = DaemonAnswer { version: Some("29.0.0".into()), firewall_backend: Some("nftables".into()) };
        let (b, notes) = firewall_backend(&[docker("28", Backend::IptablesNft)], Some(&d));
        assert!(b.unwrap().is_nftables());
        assert!(notes[0].contains("left from a run with the iptables backend"), "{notes:?}");
    }
}
