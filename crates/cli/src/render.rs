//! Rendering for a person: the verdict in one line, the path hop by hop with the failing hop marked,
//! the evidence, the fix. Colour only on a terminal (anstream strips it otherwise, and honours NO_COLOR).

use anstyle::{AnsiColor, Style};
use hostreach_model::{Code, Evidence, Finding, HopStatus, PathHop, ProbeOutcome, Report, Severity};
use std::fmt::Write;

const BOLD: Style = Style::new().bold();
const DIM: Style = Style::new().dimmed();
const RED: Style = AnsiColor::Red.on_default().bold();
const GREEN: Style = AnsiColor::Green.on_default().bold();
const YELLOW: Style = AnsiColor::Yellow.on_default().bold();
const CYAN: Style = AnsiColor::Cyan.on_default();

fn paint(s: Style, text: &str) -> String {
    format!("{s}{text}{s:#}")
}

/// Prints a command's answer: pretty JSON on stdout, or the text rendering through anstream (colour
/// only on a terminal, NO_COLOR honoured).
pub fn print<T: serde::Serialize>(format: crate::cli::Format, value: &T, text: impl FnOnce(&T) -> String) {
    use std::io::Write;
    match format {
        crate::cli::Format::Json => {
            let mut out = std::io::stdout().lock();
            let _ = serde_json::to_writer_pretty(&mut out, value);
            let _ = writeln!(out);
        }
        crate::cli::Format::Text => {
            let mut out = anstream::stdout();
            let _ = write!(out, "{}", text(value));
        }
    }
}

pub fn text(r: &Report) -> String {
    let mut o = String::new();
    let ok = r.verdict.code == Code::Ok;
    let (mark, style) = if ok { ("✓", GREEN) } else { ("✗", RED) };
    let _ = writeln!(o, "{} {}  {}", paint(style, mark), paint(style, r.verdict.code.as_str()), r.verdict.summary);

    // Who and what.
    let mut who = Vec::new();
    if let Some(c) = &r.container {
        let short = &c.id[..c.id.len().min(12)];
        who.push(format!("container {} ({short})", c.name));
        who.push(match &c.network {
            Some(n) if *n == mode_name(c.network_mode) => format!("network {n}"),
            Some(n) => format!("network {n} ({})", mode_name(c.network_mode)),
            None => format!("network mode {}", mode_name(c.network_mode)),
        });
    }
    let dest = match r.target.address {
        Some(a) if a.is_ipv6() => format!("[{a}]:{}", r.target.port),
        Some(a) => format!("{a}:{}", r.target.port),
        None => format!("?:{}", r.target.port),
    };
    who.push(format!("target {} → {dest}/{}", r.target.input, r.target.proto));
    let _ = writeln!(o, "  {}", paint(DIM, &who.join(" · ")));

    // The path.
    if !r.path.is_empty() {
        let _ = writeln!(o, "\n{}", paint(BOLD, "path"));
        let chain: Vec<String> = r.path.iter().map(hop_token).collect();
        let _ = writeln!(o, "  {}", chain.join(&paint(DIM, " ─▶ ")));
        for h in &r.path {
            let (m, st) = status_mark(h.status);
            let mut line = format!("  {} {:<19} {}", paint(st, m), h.hop.as_str(), h.name);
            if let Some(a) = &h.address
                && Some(a) != Some(&h.name)
            {
                let _ = write!(line, "  {a}");
            }
            if let Some(m) = h.mtu {
                let _ = write!(line, "  mtu {m}");
            }
            if let Some(d) = &h.detail {
                let _ = write!(line, "  {}", paint(DIM, d));
            }
            let _ = writeln!(o, "{line}");
        }
    }

    let primary = &r.findings[0];
    if !primary.evidence.is_empty() {
        let _ = writeln!(o, "\n{}", paint(BOLD, "evidence"));
        for e in &primary.evidence {
            let _ = writeln!(o, "  {}", evidence_line(e));
        }
    }
    if !primary.fix.is_empty() {
        let _ = writeln!(o, "\n{}", paint(BOLD, "fix"));
        fixes(&mut o, primary);
    }
    let rest = &r.findings[1..];
    if !rest.is_empty() {
        let _ = writeln!(o, "\n{}", paint(BOLD, "also"));
        for f in rest {
            let (m, st) = match f.severity {
                Severity::Error => ("✗", RED),
                Severity::Warning => ("!", YELLOW),
                Severity::Info => ("i", CYAN),
            };
            let _ = writeln!(o, "  {} {}  {}", paint(st, m), paint(st, f.code.as_str()), f.summary);
            for e in &f.evidence {
                let _ = writeln!(o, "      {}", evidence_line(e));
            }
            for x in &f.fix {
                let _ = writeln!(o, "      → {}", x.summary);
                for c in &x.commands {
                    let _ = writeln!(o, "          {}", paint(CYAN, c));
                }
            }
        }
    }
    if !r.skipped.is_empty() {
        let _ = writeln!(o, "\n{}", paint(BOLD, "not checked"));
        for s in &r.skipped {
            let _ = writeln!(o, "  - {}: {}", s.what, s.why);
        }
    }
    o
}

fn fixes(o: &mut String, f: &Finding) {
    for (i, x) in f.fix.iter().enumerate() {
        let _ = writeln!(o, "  {}. {}", i + 1, x.summary);
        for c in &x.commands {
            let _ = writeln!(o, "       {}", paint(CYAN, c));
        }
    }
}

fn hop_token(h: &PathHop) -> String {
    let label = match h.hop {
        hostreach_model::Hop::HostInput => "host INPUT".to_string(),
        hostreach_model::Hop::HostSocket => format!("socket {}", h.name),
        hostreach_model::Hop::ContainerResolver => "resolver".to_string(),
        _ => h.name.clone(),
    };
    match h.status {
        HopStatus::Failed => paint(RED, &format!("✗ {label}")),
        HopStatus::NotReached => paint(DIM, &label),
        HopStatus::Unknown => paint(YELLOW, &format!("? {label}")),
        HopStatus::Passed => label,
    }
}

fn status_mark(s: HopStatus) -> (&'static str, Style) {
    match s {
        HopStatus::Passed => ("✓", GREEN),
        HopStatus::Failed => ("✗", RED),
        HopStatus::NotReached => ("·", DIM),
        HopStatus::Unknown => ("?", YELLOW),
    }
}

fn mode_name(m: hostreach_model::NetworkMode) -> String {
    serde_json::to_value(m).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

fn outcome_text(o: ProbeOutcome) -> &'static str {
    match o {
        ProbeOutcome::Connected => "connected",
        ProbeOutcome::Refused => "refused",
        ProbeOutcome::Unreachable => "unreachable (ICMP error)",
        ProbeOutcome::NoAnswer => "no answer",
        ProbeOutcome::UdpNoError => "sent, no ICMP error",
        ProbeOutcome::NoRoute => "no route",
        ProbeOutcome::AddressNotAvailable => "no local address/port available",
        ProbeOutcome::Error => "error",
    }
}

pub fn evidence_line(e: &Evidence) -> String {
    match e {
        Evidence::Probe { proto, source, destination, outcome, error, elapsed_ms, netns } => {
            let src = source.as_deref().unwrap_or("?");
            let err = error.as_deref().map(|e| format!(" — {e}")).unwrap_or_default();
            format!("{} {proto} {src} → {destination}: {} after {elapsed_ms} ms, from the {netns}'s namespace{err}", paint(BOLD, "probe   "), outcome_text(*outcome))
        }
        Evidence::DropReason { reason, location, comm, pid, attributed, .. } => {
            let whose = if *attributed { "the probe's own packet".to_string() } else { format!("a packet of {comm}/{pid}, during the probe") };
            format!("{} skb:kfree_skb reason {} at {location} ({whose})", paint(BOLD, "kernel  "), paint(BOLD, reason))
        }
        Evidence::Socket { proto, local, state, pid, process, cmdline, v6only } => {
            let owner = match (process, pid) {
                (Some(p), Some(pid)) => format!("{p} (pid {pid})"),
                _ => "owner unknown".into(),
            };
            let v6 = match v6only {
                Some(true) => " v6only",
                _ => "",
            };
            let cmd = cmdline.as_deref().filter(|c| Some(*c) != process.as_deref()).map(|c| format!("  {}", paint(DIM, c))).unwrap_or_default();
            format!("{} {proto} {local} {state}{v6} {owner}{cmd}", paint(BOLD, "socket  "))
        }
        Evidence::Rule { backend, table, chain, rule, manager, counter_delta, certain } => {
            let by = manager.as_deref().filter(|m| *m != "plain").map(|m| format!(" (managed by {m})")).unwrap_or_default();
            let moved = match counter_delta {
                Some(n) => format!("; its counter moved by {n} packet{} when the probe was sent again", if *n == 1 { "" } else { "s" }),
                None => String::new(),
            };
            let unsure = if *certain == Some(false) { "; some matches could not be evaluated" } else { "" };
            format!("{} {backend} {table}/{chain}{by}: {rule}{moved}{unsure}", paint(BOLD, "rule    "))
        }
        Evidence::Route { netns, detail } => format!("{} {netns}: {detail}", paint(BOLD, "route   ")),
        Evidence::Hosts { path, line, entry, detail } => {
            let at = line.map(|l| format!(":{l}")).unwrap_or_default();
            let ent = entry.as_deref().map(|e| format!(" \"{e}\"")).unwrap_or_default();
            format!("{} {path}{at}{ent}: {detail}", paint(BOLD, "hosts   "))
        }
        Evidence::Dns { server, qtype, outcome, answers } => {
            let ans = if answers.is_empty() { String::new() } else { format!(" → {}", answers.join(", ")) };
            format!("{} {qtype} query to {server}: {outcome}{ans}", paint(BOLD, "dns     "))
        }
        Evidence::Sysctl { name, value, namespace } => format!("{} {name} = {value} ({namespace})", paint(BOLD, "sysctl  ")),
        Evidence::Docker { field, value } => format!("{} {field} = {value}", paint(BOLD, "docker  ")),
        Evidence::Address { address, interface } => format!("{} {address} is the host's, on {interface}", paint(BOLD, "address ")),
        Evidence::Missing { what, why } => format!("{} {what}: {why}", paint(YELLOW, "missing ")),
        Evidence::Pressure { namespace, detail, .. } => format!("{} {detail} ({namespace})", paint(BOLD, "pressure")),
        Evidence::Mtu { detail, .. } => format!("{} {detail}", paint(BOLD, "mtu     ")),
    }
}
