//! The command line, as ../shared/contract.md fixes it.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "hostreach",
    version,
    about = "Why can't my container reach its host? One command, the kernel's evidence, the exact fix.",
    propagate_version = true
)]
pub struct Cli {
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Format::Text)]
    pub format: Format,

    /// The Docker daemon's socket (unix:///PATH); default: $DOCKER_HOST, then unix:///var/run/docker.sock.
    #[arg(long, global = true, value_name = "URL")]
    pub docker_host: Option<String>,

    /// More log lines on stderr (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Can this container reach this target, and if not, where and why, and the fix.
    Doctor(DoctorArgs),
    /// What listens on the host (or in a container), owned by which process, reachable from which interfaces.
    Sockets(crate::sockets_cmd::SocketsArgs),
    /// Compose projects: `compose lint` says what in one will break container-to-host traffic.
    Compose(crate::compose_cmd::ComposeArgs),
    /// Which rule, in which backend, decides one packet.
    Firewall(crate::firewall_cmd::FirewallArgs),
    /// Serve a host service on a container's own localhost, without a sidecar (Ctrl-C stops it).
    Relay(crate::relay_cmd::RelayArgs),
    /// The container's side of the wire: eth0, host veth peer, bridge, gateway, routes, MTUs, network mode.
    Path(crate::path_cmd::PathArgs),
    /// Both sides of the wire captured during one probe, with kernel drop reasons (--write FILE.pcapng).
    Trace(crate::trace_cmd::TraceArgs),
}

#[derive(Debug, Clone, Args)]
#[command(group(clap::ArgGroup::new("subject").args(["container", "pid", "netns", "facts", "all"])))]
pub struct DoctorArgs {
    /// Every running container, against the host targets found in its environment, command and
    /// labels (also what `hostreach doctor` without a target does).
    #[arg(long)]
    pub all: bool,

    /// How many checks `--all` runs at once.
    #[arg(long, value_name = "N", default_value_t = 8, requires = "all")]
    pub concurrency: usize,

    #[command(flatten)]
    pub subject: crate::subject::SubjectArgs,

    /// What to reach: host:PORT, IP:PORT, [IPv6]:PORT, NAME:PORT or a URL (postgres://user@host/db).
    #[arg(long, value_name = "TARGET", conflicts_with = "all")]
    pub to: Option<String>,

    /// Transport protocol of the probe.
    #[arg(long, value_enum, default_value_t = ProtoArg::Tcp)]
    pub proto: ProtoArg,

    /// How long the probe waits for an answer: 500ms, 3s, or a number of seconds.
    #[arg(long, value_name = "DURATION", default_value = "3s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Do not record the kernel's drop reasons (no tracefs instance is created).
    #[arg(long)]
    pub no_trace: bool,

    /// Also search the path MTU with DF probes from inside the container (done anyway when the path shows a
    /// smaller MTU or a tunnel).
    #[arg(long)]
    pub mtu: bool,

    /// Also write the collected facts (JSON) to FILE, to analyse them elsewhere with --facts.
    #[arg(long, value_name = "FILE")]
    pub save_facts: Option<PathBuf>,

    /// Analyse facts saved by --save-facts instead of collecting: no probe, no I/O besides reading FILE.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["container", "pid", "netns", "to"])]
    pub facts: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProtoArg {
    Tcp,
    Udp,
}

impl From<ProtoArg> for hostreach_model::Proto {
    fn from(p: ProtoArg) -> Self {
        match p {
            ProtoArg::Tcp => hostreach_model::Proto::Tcp,
            ProtoArg::Udp => hostreach_model::Proto::Udp,
        }
    }
}

/// `500ms`, `3s`, `1.5s`, `2m`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => (&s[..i], s[i..].trim()),
        None => (s, "s"),
    };
    let n: f64 = num.parse().map_err(|_| format!("{s:?} is not a duration: write 500ms, 3s or a number of seconds"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" => n * 60.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?}; use ms, s or m")),
    };
    if !(secs.is_finite() && secs > 0.0 && secs <= 3600.0) {
        return Err(format!("{s:?}: the timeout must be more than 0 and at most one hour"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("3s").unwrap(), Duration::from_secs(3));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("3h").is_err());
        assert!(parse_duration("abc").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
