//! This host's live firewall rules, read with the tools that own them: `iptables-save` and
//! `ip6tables-save` in both backends (`-legacy`, `-nft`; the plain name when the variants are not
//! installed) and `nft -j list ruleset`. Parsing is hostreach-firewall's job; this only runs the
//! tools (read-only) in the current network namespace and says what was missing.

use crate::error::{CollectError, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// One tool's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capture {
    /// The tool that wrote it (`iptables-nft-save`).
    pub tool: String,
    pub text: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveRules {
    /// iptables-save style outputs that hold at least one table.
    pub iptables: Vec<Capture>,
    /// `nft -j list ruleset`.
    pub nft_json: Option<Capture>,
    /// Tools that are not installed (the answer is partial without them).
    pub missing: Vec<String>,
    /// Tools that ran and failed, with their one-line error.
    pub failed: Vec<String>,
}

impl LiveRules {
    /// Nothing could be read at all.
    pub fn is_empty(&self) -> bool {
        self.iptables.is_empty() && self.nft_json.is_none()
    }
    /// One line saying what was not read, if anything.
    pub fn gaps(&self) -> Option<String> {
        let mut parts = Vec::new();
        if !self.missing.is_empty() {
            parts.push(format!("not installed: {}", self.missing.join(", ")));
        }
        if !self.failed.is_empty() {
            parts.push(format!("failed: {}", self.failed.join("; ")));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

const SEARCH: &[&str] = &["/usr/sbin", "/sbin", "/usr/bin", "/bin", "/usr/local/sbin", "/usr/local/bin"];

/// Finds a tool in $PATH, then in the sbin directories (sudo and cron often drop them from $PATH).
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(SEARCH.iter().map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}

fn run(tool: &Path, args: &[&str]) -> std::result::Result<String, String> {
    let name = tool.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let out = Command::new(tool).args(args).env("LC_ALL", "C").output().map_err(|e| format!("{name}: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let line = err.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("no message");
        let hint = if line.contains("Permission denied") || line.contains("Operation not permitted") || line.contains("you must be root") {
            " (reading firewall rules needs root or CAP_NET_ADMIN)"
        } else {
            ""
        };
        return Err(format!("{name} exited with {}: {line}{hint}", out.status));
    }
    String::from_utf8(out.stdout).map_err(|_| format!("{name}: output is not UTF-8"))
}

/// Does iptables-save output hold a table?
fn has_table(text: &str) -> bool {
    text.lines().any(|l| l.starts_with('*'))
}

/// Reads the live rules of the current network namespace. Fails only when no tool at all could be
/// found or run; otherwise the answer names what is missing.
pub fn read_live() -> Result<LiveRules> {
    let mut live = LiveRules::default();
    // Which tools to run: the -legacy/-nft variants where installed, else the plain name; and nft.
    let mut jobs: Vec<(String, Option<PathBuf>, &[&str])> = Vec::new();
    for family in ["iptables", "ip6tables"] {
        let variants: Vec<(String, Option<PathBuf>)> =
            ["legacy", "nft"].iter().map(|b| format!("{family}-{b}-save")).map(|n| (n.clone(), find_tool(&n))).collect();
        if variants.iter().any(|(_, p)| p.is_some()) {
            jobs.extend(variants.into_iter().map(|(n, p)| (n, p, &["-c"][..])));
        } else {
            let name = format!("{family}-save");
            let path = find_tool(&name);
            jobs.push((name, path, &["-c"][..]));
        }
    }
    jobs.push(("nft".into(), find_tool("nft"), &["-j", "list", "ruleset"][..]));
    // Run them at once (each is a fork and a netlink dump): doctor waits on the slowest, not the sum.
    let outputs: Vec<Option<std::result::Result<String, String>>> = std::thread::scope(|s| {
        let handles: Vec<_> = jobs.iter().map(|(_, path, args)| path.as_ref().map(|p| s.spawn(move || run(p, args)))).collect();
        handles.into_iter().map(|h| h.map(|h| h.join().unwrap_or_else(|_| Err("the reader thread panicked".into())))).collect()
    });
    for ((name, _, _), out) in jobs.into_iter().zip(outputs) {
        match out {
            None => live.missing.push(name),
            Some(Err(e)) => live.failed.push(e),
            Some(Ok(text)) if name == "nft" => live.nft_json = Some(Capture { tool: "nft -j list ruleset".into(), text }),
            Some(Ok(text)) if has_table(&text) => live.iptables.push(Capture { tool: name, text }),
            Some(Ok(_)) => {}
        }
    }
    if live.is_empty() && !live.failed.is_empty() {
        return Err(CollectError::Unavailable(format!("cannot read the firewall rules: {}", live.failed.join("; "))));
    }
    let iptables_missing = live.missing.iter().filter(|m| m.starts_with("iptables") || m.starts_with("ip6tables")).count();
    let all_iptables_missing = live.missing.iter().any(|m| m == "iptables-save") || iptables_missing == 4;
    if live.is_empty() && all_iptables_missing && live.missing.iter().any(|m| m == "nft") {
        return Err(CollectError::Unavailable(format!(
            "cannot read the firewall rules: neither iptables-save nor nft is installed (missing: {})",
            live.missing.join(", ")
        )));
    }
    Ok(live)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_recognised() {
        assert!(has_table("# Generated by iptables-save\n*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n"));
        assert!(!has_table("# Warning: iptables-legacy tables present, use iptables-legacy-save to see them\n"));
        assert!(!has_table(""));
    }

    #[test]
    fn a_missing_tool_is_not_found() {
        assert!(find_tool("hostreach-no-such-tool-xyz").is_none());
        assert!(find_tool("sh").is_some());
    }

    #[test]
    fn gaps_name_what_is_missing() {
        let l = LiveRules { missing: vec!["nft".into()], failed: vec!["iptables-legacy-save exited with 1: x".into()], ..Default::default() };
        let g = l.gaps().unwrap();
        assert!(g.contains("not installed: nft") && g.contains("failed: iptables-legacy-save"), "{g}");
        assert_eq!(LiveRules::default().gaps(), None);
    }
}
