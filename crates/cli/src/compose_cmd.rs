//! `hostreach compose lint [FILE...]`: what in a compose project will break container-to-host
//! traffic. The project is read by hostreach-compose (no Docker, no network); host facts come
//! from netlink in the current namespace, best effort.

use crate::cli::Format;
use crate::exit;
use anstyle::{AnsiColor, Style};
use clap::{Args, Subcommand, ValueEnum};
use hostreach_compose::{Fs, HostFacts, LintReport, Options};
use hostreach_model::Severity;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
pub struct ComposeArgs {
    #[command(subcommand)]
    pub command: ComposeCommand,
}

#[derive(Debug, Subcommand)]
pub enum ComposeCommand {
    /// What in a compose project will break container-to-host traffic: each finding with file, line, service and fix.
    Lint(LintArgs),
}

#[derive(Debug, Args)]
pub struct LintArgs {
    /// Compose files in merge order, like `docker compose -f`; default: the ones compose picks in
    /// the project directory (compose.yaml, ..., and its override file).
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,

    /// A compose file, as with `docker compose -f` (repeatable; after the positional FILEs).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Vec<PathBuf>,

    /// The project directory: where compose files are looked for and `.env` is read; default:
    /// the folder of the first file, or the current one.
    #[arg(long, value_name = "DIR")]
    pub project_directory: Option<PathBuf>,

    /// Read variables from FILE instead of the project directory's `.env` (repeatable).
    #[arg(long, value_name = "FILE")]
    pub env_file: Vec<PathBuf>,

    /// The host's egress path MTU, when known better than the default route's interface (a VPN,
    /// a cloud network): MTU_UNSET compares networks with it.
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u32).range(576..=65535))]
    pub egress_mtu: Option<u32>,

    /// Host facts (addresses, default route) from netlink: `auto` uses them when readable and
    /// says so when not, `off` never reads them, `required` exits 3 when they cannot be read.
    #[arg(long, value_enum, default_value_t = HostFactsMode::Auto)]
    pub host_facts: HostFactsMode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HostFactsMode {
    Auto,
    Off,
    Required,
}

/// The real file system: the only I/O of the lint besides netlink.
struct RealFs;

impl Fs for RealFs {
    fn read(&self, path: &Path) -> std::io::Result<String> {
        std::fs::read_to_string(path)
    }
    fn exists(&self, path: &Path) -> bool {
        path.is_file()
    }
}

pub fn run(args: &ComposeArgs, format: Format) -> i32 {
    match &args.command {
        ComposeCommand::Lint(a) => lint(a, format),
    }
}

fn lint(a: &LintArgs, format: Format) -> i32 {
    let facts = match a.host_facts {
        HostFactsMode::Off => HostFacts::unavailable("--host-facts off", a.egress_mtu),
        mode => match hostreach_collect::netlink::read_current() {
            Ok(net) => HostFacts::from_netns(net, a.egress_mtu),
            Err(e) if mode == HostFactsMode::Required => {
                exit::print_line(&format!("cannot read host facts (netlink): {e}"));
                return exit::CANNOT;
            }
            Err(e) => HostFacts::unavailable(format!("netlink: {e}"), a.egress_mtu),
        },
    };
    let opts = Options {
        files: a.files.iter().chain(&a.file).cloned().collect(),
        project_directory: a.project_directory.clone(),
        env_files: a.env_file.clone(),
        env: std::env::vars().collect(),
    };
    let report = hostreach_compose::lint_project(&opts, &RealFs, &facts);
    crate::render::print(format, &report, text);
    exit_code(&report)
}

/// 2 for bad input (with its first error on stderr), else 1 for any warning or error finding.
fn exit_code(r: &LintReport) -> i32 {
    if let Some(first) = r.errors.first() {
        let more = match r.errors.len() {
            1 => String::new(),
            n => format!(" (and {} more)", n - 1),
        };
        exit::print_line(&format!("{first}{more}"));
        return exit::USAGE;
    }
    if r.has_problems() { exit::DIAGNOSED } else { exit::OK }
}

const BOLD: Style = Style::new().bold();
const DIM: Style = Style::new().dimmed();
const RED: Style = AnsiColor::Red.on_default().bold();
const YELLOW: Style = AnsiColor::Yellow.on_default().bold();
const CYAN: Style = AnsiColor::Cyan.on_default();
const GREEN: Style = AnsiColor::Green.on_default().bold();

fn paint(s: Style, text: &str) -> String {
    format!("{s}{text}{s:#}")
}

/// The report for a person: each finding as `file:line: severity CODE [service]`, its summary,
/// the line as written, the evidence, the fix lines; then errors, notes and a count.
pub fn text(r: &LintReport) -> String {
    let mut o = String::new();
    for f in &r.findings {
        let (sev, st) = match f.severity {
            Severity::Error => ("error", RED),
            Severity::Warning => ("warning", YELLOW),
            Severity::Info => ("info", CYAN),
        };
        let who = match (&f.service, &f.network) {
            (Some(s), _) => format!("service {s}"),
            (None, Some(n)) => format!("network {n}"),
            _ => String::new(),
        };
        let _ = writeln!(o, "{}: {} {}  {}", paint(BOLD, &format!("{}:{}", f.file, f.line)), paint(st, sev), paint(st, f.code.as_str()), paint(DIM, &who));
        let _ = writeln!(o, "  {}", f.summary);
        for e in &f.evidence {
            let _ = writeln!(o, "  {}", paint(DIM, &evidence_line(e)));
        }
        for x in &f.fix {
            let _ = writeln!(o, "  {} {}", paint(GREEN, "fix:"), x.summary);
            for c in &x.commands {
                let _ = writeln!(o, "      {c}");
            }
        }
        o.push('\n');
    }
    if !r.errors.is_empty() {
        let _ = writeln!(o, "{}", paint(RED, "errors (bad input; the rest was linted):"));
        for e in &r.errors {
            let _ = writeln!(o, "  {e}");
        }
        o.push('\n');
    }
    for n in &r.notes {
        let _ = writeln!(o, "{} {n}", paint(DIM, "note:"));
    }
    let count = |s: Severity| r.findings.iter().filter(|f| f.severity == s).count();
    let (e, w, i) = (count(Severity::Error), count(Severity::Warning), count(Severity::Info));
    let files = if r.files.is_empty() { "no compose file".to_string() } else { r.files.join(", ") };
    let summary = if r.findings.is_empty() {
        format!("no findings in {files}")
    } else {
        format!("{} finding{} ({e} error{}, {w} warning{}, {i} info) in {files}", r.findings.len(), plural(r.findings.len()), plural(e), plural(w))
    };
    let style = if e > 0 || !r.errors.is_empty() { RED } else if w > 0 { YELLOW } else { GREEN };
    let _ = writeln!(o, "{}", paint(style, &summary));
    o
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn evidence_line(e: &hostreach_compose::LintEvidence) -> String {
    use hostreach_compose::LintEvidence as E;
    match e {
        E::Compose { file, line, text, .. } => format!("{file}:{line} | {text}"),
        E::Variable { name, value, source } => {
            format!("${name} = {} (from {source})", value.as_deref().map(|v| format!("{v:?}")).unwrap_or_else(|| "unset".into()))
        }
        E::Address { address, interface, interface_kind } => {
            format!("{address} is on {interface}{}", interface_kind.as_deref().map(|k| format!(" ({k})")).unwrap_or_default())
        }
        E::NotLocal { address } => format!("no interface of this host has {address}"),
        E::Egress { interface, mtu, route_mtu } => {
            format!("egress: {interface} mtu {mtu}{}", route_mtu.map(|m| format!(" (route mtu {m})")).unwrap_or_default())
        }
        E::Network { detail } => detail.clone(),
        E::Missing { what, why } => format!("{what}: not read ({why})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hostreach_compose::{LintCode, LintError, LintFinding};
    use hostreach_model::Fix;

    fn report(findings: Vec<LintFinding>, errors: Vec<LintError>) -> LintReport {
        LintReport { schema: "hostreach/v1".into(), findings, files: vec!["compose.yaml".into()], env_file: None, errors, notes: vec![] }
    }

    fn finding(sev: Severity) -> LintFinding {
        LintFinding {
            code: LintCode::HostAliasNotMapped,
            severity: sev,
            file: "compose.yaml".into(),
            line: 6,
            service: Some("api".into()),
            network: None,
            key: "services.api.environment.X".into(),
            summary: "service api uses host.docker.internal".into(),
            evidence: vec![],
            fix: vec![Fix::new("add", ["    extra_hosts:".to_string()])],
        }
    }

    #[test]
    fn exit_codes() {
        assert_eq!(exit_code(&report(vec![], vec![])), 0);
        assert_eq!(exit_code(&report(vec![finding(Severity::Info)], vec![])), 0);
        assert_eq!(exit_code(&report(vec![finding(Severity::Warning)], vec![])), 1);
        assert_eq!(exit_code(&report(vec![finding(Severity::Error)], vec![])), 1);
        let err = LintError { file: "compose.yaml".into(), line: 3, message: "unreadable YAML".into() };
        assert_eq!(exit_code(&report(vec![finding(Severity::Error)], vec![err])), 2);
    }

    #[test]
    fn text_has_file_line_code_and_fix_lines() {
        let t = text(&report(vec![finding(Severity::Error)], vec![]));
        let plain = String::from_utf8(anstream::adapter::strip_bytes(t.as_bytes()).into_vec()).unwrap();
        assert!(plain.contains("compose.yaml:6: error HOST_ALIAS_NOT_MAPPED  service api"), "{plain}");
        assert!(plain.contains("\n      extra_hosts:\n") || plain.contains("\n          extra_hosts:\n"), "{plain}");
        assert!(plain.contains("1 finding (1 error, 0 warnings, 0 info) in compose.yaml"), "{plain}");
    }
}
