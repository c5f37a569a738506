//! What `compose lint` reports: findings (code, severity, file, line, service, summary, evidence,
//! fix), errors in the input (file, line, message), and notes on what was not checked.

use hostreach_model::{Fix, Severity};
use serde::Serialize;
use std::fmt;

/// The finding codes of `compose lint` (docs/compose-lint.md). CONTAINER_LOOPBACK and
/// HOST_NETWORK_MODE mean what they mean in `doctor`; the others are lint's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LintCode {
    /// host.docker.internal is used, but the service does not map it (extra_hosts).
    HostAliasNotMapped,
    /// A literal bridge or gateway address (172.17.0.1 and the like).
    HardcodedGateway,
    /// localhost / 127.0.0.1 / ::1 in a connection string for something outside the container.
    ContainerLoopback,
    /// network_mode: host.
    HostNetworkMode,
    /// A network compose creates has no MTU option while the host's egress MTU is below 1500.
    MtuUnset,
}

impl LintCode {
    pub fn as_str(&self) -> &'static str {
        match self {
            LintCode::HostAliasNotMapped => "HOST_ALIAS_NOT_MAPPED",
            LintCode::HardcodedGateway => "HARDCODED_GATEWAY",
            LintCode::ContainerLoopback => "CONTAINER_LOOPBACK",
            LintCode::HostNetworkMode => "HOST_NETWORK_MODE",
            LintCode::MtuUnset => "MTU_UNSET",
        }
    }
}

impl fmt::Display for LintCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One finding. `file` and `line` say where the problem is written; `service` is null only for
/// a network-level finding (MTU_UNSET), which names its `network`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LintFinding {
    pub code: LintCode,
    pub severity: Severity,
    pub file: String,
    pub line: usize,
    pub service: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// The compose key the value sits under, e.g. `services.web.environment.DATABASE_URL`.
    pub key: String,
    pub summary: String,
    pub evidence: Vec<LintEvidence>,
    pub fix: Vec<Fix>,
}

/// A fact a finding rests on.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum LintEvidence {
    /// A line of a compose file or env file, as written.
    Compose {
        file: String,
        line: usize,
        key: String,
        text: String,
    },
    /// A variable that interpolation substituted into the value.
    Variable {
        name: String,
        value: Option<String>,
        source: String,
    },
    /// An address this host owns, and the interface that owns it (netlink).
    Address {
        address: String,
        interface: String,
        interface_kind: Option<String>,
    },
    /// An address no interface of this host owns (netlink).
    NotLocal { address: String },
    /// The host's egress: the default route's interface and MTU (netlink).
    Egress {
        interface: String,
        mtu: u32,
        route_mtu: Option<u32>,
    },
    /// How the service is attached: network mode, networks, namespace sharing.
    Network { detail: String },
    /// Something that could not be checked, and why.
    Missing { what: String, why: String },
}

/// Bad input: unreadable YAML, an unknown key, a malformed value or variable. The rest is linted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LintError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for LintError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}: {}", self.file, self.line, self.message)
        } else {
            write!(f, "{}: {}", self.file, self.message)
        }
    }
}

/// What was not checked (or was assumed), and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LintNote {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for LintNote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, "{file}:{line}: {}", self.message),
            (Some(file), None) => write!(f, "{file}: {}", self.message),
            _ => f.write_str(&self.message),
        }
    }
}

/// The whole answer of `compose lint` (the JSON of `--format json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LintReport {
    pub schema: String,
    pub findings: Vec<LintFinding>,
    /// The files linted, in merge order.
    pub files: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env_file: Option<String>,
    pub errors: Vec<LintError>,
    pub notes: Vec<LintNote>,
}

impl LintReport {
    /// Any finding of warning or error severity.
    pub fn has_problems(&self) -> bool {
        self.findings
            .iter()
            .any(|f| f.severity >= Severity::Warning)
    }
}
