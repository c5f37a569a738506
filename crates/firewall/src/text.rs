//! The explanation as text: the verdict, the deciding rule, the walk, the fixes.

use crate::Explanation;
use crate::eval::{Decision, Event};
use std::fmt::Write;

pub fn render(e: &Explanation) -> String {
    let mut o = String::new();
    let verdict = match (&e.decision, &e.reject_with) {
        (Decision::Reject, Some(w)) => format!("REJECT (with {w})"),
        (d, _) => d.as_str().to_ascii_uppercase(),
    };
    let _ = writeln!(o, "{}  ({} path)", e.packet, e.path.as_str());
    let _ = writeln!(o, "decision: {verdict}{}", if e.certain { "" } else { "  (not certain: see below)" });
    if let (Some(b), Some(t), Some(c)) = (&e.backend, &e.table, &e.chain) {
        let via = match &e.base_chain {
            Some(bc) if bc != c => format!(" (entered from {bc})"),
            _ => String::new(),
        };
        let _ = writeln!(o, "decided by: {b}, table {} {t}, chain {c}{via}, {}", e.family.as_deref().unwrap_or(""), if e.policy { "its policy" } else { "rule" });
    }
    let _ = write!(o, "  {}", e.rule);
    if let Some(l) = e.line {
        let _ = write!(o, "    (line {l})");
    }
    if let Some((p, b)) = e.counters {
        let _ = write!(o, "    [{p} packets, {b} bytes]");
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "managed by: {}", e.manager.as_str());
    if !e.managers.is_empty() {
        let list: Vec<String> = e
            .managers
            .iter()
            .map(|m| format!("{}{} ({})", m.manager.as_str(), m.version.as_deref().map(|v| format!(" {v}")).unwrap_or_default(), m.evidence))
            .collect();
        let _ = writeln!(o, "found: {}", list.join("; "));
    }
    if let Some(s) = &e.rule_source {
        let _ = writeln!(o, "configured in: {}", s.summary);
        if s.text != e.rule {
            let _ = writeln!(o, "  {}", s.text);
        }
        if let Some(r) = &s.read_from {
            let _ = writeln!(o, "  (read from {r})");
        }
    }
    if let Some(u) = &e.ufw {
        let mut parts = Vec::new();
        for (k, v) in [
            ("DEFAULT_INPUT_POLICY", &u.default_input_policy),
            ("DEFAULT_FORWARD_POLICY", &u.default_forward_policy),
            ("DEFAULT_OUTPUT_POLICY", &u.default_output_policy),
        ] {
            if let Some(v) = v {
                parts.push(format!("{k}=\"{v}\""));
            }
        }
        let yn = |b: bool| if b { "yes" } else { "no" };
        if let Some(v) = u.ipv6 {
            parts.push(format!("IPV6={}", yn(v)));
        }
        if let Some(v) = u.enabled {
            parts.push(format!("ENABLED={}", yn(v)));
        }
        let sync = match u.in_sync {
            Some(true) => "; the live rules match the files",
            Some(false) => "; the live rules differ from the files (see notes)",
            None => "",
        };
        let _ = writeln!(o, "ufw: {} (from {}){sync}", if parts.is_empty() { "no settings read".to_string() } else { parts.join(", ") }, u.read_from);
    }
    if let Some(b) = &e.docker_firewall_backend {
        let _ = writeln!(o, "docker firewall backend: {}", b.summary);
    }
    if let Some(d) = &e.dnat {
        let _ = writeln!(o, "DNAT: destination rewritten to {d}");
    }
    let _ = writeln!(o, "\nwalk:");
    let mut last_chain = String::new();
    for s in &e.walk {
        let head = format!("{} {} {}", s.backend, s.family, s.table);
        let detail = s.detail.as_deref().unwrap_or("");
        let line = match s.event {
            Event::Enter => {
                last_chain = s.chain.clone();
                format!("[{}] {head} {}  ({detail})", s.hook.as_str(), s.chain)
            }
            Event::Route => format!("[{}] {detail}", s.hook.as_str()),
            Event::Skip => format!("[{}] {head} {}: skipped, {detail}", s.hook.as_str(), s.chain),
            Event::Verdict => format!("    => {detail}"),
            Event::Policy => format!("    {}: {detail}", s.chain),
            _ => {
                let mut l = String::new();
                if s.chain != last_chain {
                    last_chain = s.chain.clone();
                    l.push_str(&format!("  in {}:\n  ", s.chain));
                }
                let what = match s.event {
                    Event::Match => "match",
                    Event::Jump => "jump",
                    Event::Goto => "goto",
                    Event::Return => "return",
                    Event::Nat => "nat",
                    Event::Mark => "mark",
                    Event::Log => "log",
                    Event::Unknown => "??",
                    Event::Assumed => "assumed",
                    _ => "",
                };
                l.push_str(&format!("    {what:<7} {}{}", s.rule.as_deref().unwrap_or(""), if detail.is_empty() { String::new() } else { format!("  -> {detail}") }));
                l
            }
        };
        let _ = writeln!(o, "  {line}");
    }
    if !e.unevaluated.is_empty() {
        let _ = writeln!(o, "\nnot evaluable ({} possible: {}):", if e.certain { "decision unchanged" } else { "decisions" }, e.possible_decisions.iter().map(Decision::as_str).collect::<Vec<_>>().join(", "));
        for p in &e.unevaluated {
            let _ = writeln!(
                o,
                "  {} in {} {}: {} ({})\n    if it matched: {}{}; if not: {}",
                p.point.rule,
                p.point.table,
                p.point.chain,
                p.point.what,
                p.point.reason,
                p.if_matches.as_str(),
                p.if_matches_rule.as_deref().map(|r| format!(" by {r}")).unwrap_or_default(),
                p.if_not.as_str()
            );
        }
    }
    if !e.fixes.is_empty() {
        let _ = writeln!(o, "\nfix:");
        for f in &e.fixes {
            let _ = writeln!(o, "  {}{}", f.summary, if f.verified { "  [verified: the packet is then accepted]" } else { "" });
            for c in &f.commands {
                let _ = writeln!(o, "    {c}");
            }
        }
    }
    if !e.notes.is_empty() {
        let _ = writeln!(o, "\nnotes:");
        for n in &e.notes {
            let _ = writeln!(o, "  - {n}");
        }
    }
    o
}
