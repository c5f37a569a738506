//! Small text formats read from the subject's filesystem and from tracefs. Pure functions.

use crate::facts::{DropEvent, HostsEntry, ResolvConf};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// Parses an /etc/hosts file. Lines that do not start with an address are skipped.
pub fn hosts_file(text: &str) -> Vec<HostsEntry> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("");
        let mut words = line.split_whitespace();
        let Some(addr) = words.next() else { continue };
        // Zone ids (fe80::1%eth0) are not addresses a container targets; drop the zone.
        let Ok(address) = addr.split('%').next().unwrap_or(addr).parse::<IpAddr>() else { continue };
        let names: Vec<String> = words.map(|w| w.to_ascii_lowercase()).collect();
        if names.is_empty() {
            continue;
        }
        out.push(HostsEntry { line: i + 1, address, names });
    }
    out
}

/// The entries of a hosts file that name `name`, in file order (the resolver takes the first).
pub fn hosts_lookup<'a>(entries: &'a [HostsEntry], name: &str) -> Vec<&'a HostsEntry> {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    entries.iter().filter(|e| e.names.iter().any(|n| n.trim_end_matches('.') == name)).collect()
}

/// Parses resolv.conf: nameserver, search/domain, options.
pub fn resolv_conf(text: &str) -> ResolvConf {
    let mut rc = ResolvConf::default();
    for raw in text.lines() {
        let line = raw.split(['#', ';']).next().unwrap_or("");
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => {
                if let Some(a) = words.next().and_then(|a| a.split('%').next()).and_then(|a| a.parse().ok()) {
                    rc.nameservers.push(a);
                }
            }
            Some("search") | Some("domain") => rc.search = words.map(str::to_string).collect(),
            Some("options") => rc.options.extend(words.map(str::to_string)),
            _ => {}
        }
    }
    rc
}

/// The reason names of `skb:kfree_skb` on the running kernel, read from the `print fmt` line of its
/// format file: `__print_symbolic(REC->reason, { 2, "NOT_SPECIFIED" }, { 3, "NO_SOCKET" }, ...)`.
pub fn drop_reason_names(format_file: &str) -> BTreeMap<u32, String> {
    let mut map = BTreeMap::new();
    let Some(fmt_line) = format_file.lines().find(|l| l.starts_with("print fmt:")) else { return map };
    let Some(start) = fmt_line.find("__print_symbolic(REC->reason") else { return map };
    let mut rest = &fmt_line[start..];
    while let Some(open) = rest.find('{') {
        rest = &rest[open + 1..];
        let Some(close) = rest.find('}') else { break };
        let pair = &rest[..close];
        rest = &rest[close + 1..];
        let mut it = pair.splitn(2, ',');
        let (Some(num), Some(name)) = (it.next(), it.next()) else { continue };
        let Ok(num) = num.trim().parse::<u32>() else { continue };
        let name = name.trim().trim_matches('"');
        if !name.is_empty() {
            map.insert(num, name.to_string());
        }
    }
    map
}

/// Parses one line of a tracefs `trace`/`trace_pipe` for `kfree_skb`:
/// `  socat-1234  [001] ..s1.  123.456789: kfree_skb: skbaddr=0x.. rx_sk=0x.. protocol=2048 location=tcp_v4_rcv+0x91/0x13f0 reason: NO_SOCKET`
/// `attributed` is left false; the caller knows the probe's thread id.
pub fn kfree_skb_line(line: &str) -> Option<DropEvent> {
    let marker = ": kfree_skb: ";
    let at = line.find(marker)?;
    let head = &line[..at];
    let body = &line[at + marker.len()..];

    // head: "<comm>-<pid> [cpu] <flags> <timestamp>" — comm may contain spaces and dashes.
    let lb = head.rfind('[')?;
    let rb = head[lb..].find(']')? + lb;
    let task = head[..lb].trim();
    let dash = task.rfind('-')?;
    let comm = task[..dash].trim().to_string();
    let pid: u32 = task[dash + 1..].trim().parse().ok()?;
    let cpu: u32 = head[lb + 1..rb].trim().parse().ok()?;
    let ts_str = head[rb + 1..].split_whitespace().last()?;
    let timestamp: f64 = ts_str.parse().ok()?;

    let mut protocol = 0u16;
    let mut location = String::new();
    let mut reason = String::new();
    let mut words = body.split_whitespace().peekable();
    while let Some(w) = words.next() {
        if let Some(v) = w.strip_prefix("protocol=") {
            protocol = v.parse().unwrap_or(0);
        } else if let Some(v) = w.strip_prefix("location=") {
            location = v.to_string();
        } else if w == "reason:" {
            reason = words.next().unwrap_or("").to_string();
        }
    }
    if reason.is_empty() {
        return None;
    }
    Some(DropEvent {
        reason,
        location,
        protocol,
        pid,
        comm,
        cpu,
        timestamp,
        attributed: false,
        raw: line.trim().to_string(),
    })
}

/// The function name of a kernel location `nft_do_chain+0x3c2/0x6a0`.
pub fn location_function(location: &str) -> &str {
    location.split('+').next().unwrap_or(location)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCKER_HOSTS: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
fe00::0\tip6-localnet\n172.17.0.1\thost.docker.internal\n172.17.0.2\t3f2a1b0c9d8e\n";

    #[test]
    fn hosts_as_docker_writes_them() {
        let e = hosts_file(DOCKER_HOSTS);
        assert_eq!(e.len(), 5);
        let hit = hosts_lookup(&e, "HOST.docker.internal.");
        assert_eq!(hit.len(), 1);
        assert_eq!(hit[0].line, 4);
        assert_eq!(hit[0].address, "172.17.0.1".parse::<IpAddr>().unwrap());
        assert!(hosts_lookup(&e, "db").is_empty());
        assert_eq!(hosts_lookup(&e, "localhost").len(), 2);
    }

    #[test]
    fn hosts_skips_junk() {
        let e = hosts_file("# comment\n\nnot-an-ip foo\n10.0.0.1\n10.0.0.2 a b # c\n fe80::1%eth0 ll\n");
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].names, vec!["a", "b"]);
        assert_eq!(e[1].names, vec!["ll"]);
    }

    #[test]
    fn resolv() {
        let rc = resolv_conf("# Generated by Docker\nsearch lab.internal\nnameserver 127.0.0.11\noptions ndots:0\nnameserver bogus\n");
        assert_eq!(rc.nameservers, vec!["127.0.0.11".parse::<IpAddr>().unwrap()]);
        assert_eq!(rc.search, vec!["lab.internal"]);
        assert_eq!(rc.options, vec!["ndots:0"]);
    }

    #[test]
    fn reason_names_from_format() {
        let f = "name: kfree_skb\nID: 1\nprint fmt: \"skbaddr=%p rx_sk=%p protocol=%u location=%pS reason: %s\", REC->skbaddr, REC->rx_sk, REC->protocol, REC->location, __print_symbolic(REC->reason, { 2, \"NOT_SPECIFIED\" }, { 3, \"NO_SOCKET\" }, { 12, \"NETFILTER_DROP\" })\n";
        let m = drop_reason_names(f);
        assert_eq!(m.get(&2).unwrap(), "NOT_SPECIFIED");
        assert_eq!(m.get(&12).unwrap(), "NETFILTER_DROP");
        assert_eq!(m.len(), 3);
        assert!(drop_reason_names("garbage").is_empty());
    }

    #[test]
    fn trace_line() {
        let l = "     hostreach-probe-4711    [001] b..1.  8123.456789: kfree_skb: skbaddr=00000000a1b2c3d4 rx_sk=0000000000000000 protocol=2048 location=nft_do_chain+0x3c2/0x6a0 reason: NETFILTER_DROP";
        let d = kfree_skb_line(l).unwrap();
        assert_eq!(d.comm, "hostreach-probe");
        assert_eq!(d.pid, 4711);
        assert_eq!(d.cpu, 1);
        assert_eq!(d.protocol, 2048);
        assert_eq!(d.reason, "NETFILTER_DROP");
        assert_eq!(location_function(&d.location), "nft_do_chain");
        assert!((d.timestamp - 8123.456789).abs() < 1e-9);
        assert!(kfree_skb_line("# tracer: nop").is_none());
        let spaced = "  my proc-12 [000] ..s.. 1.5: kfree_skb: skbaddr=0 protocol=2048 location=tcp_v4_rcv+0x91/0x13f0 reason: NO_SOCKET";
        assert_eq!(kfree_skb_line(spaced).unwrap().comm, "my proc");
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(s in "\\PC{0,300}") {
            let _ = hosts_file(&s);
            let _ = resolv_conf(&s);
            let _ = drop_reason_names(&s);
            let _ = kfree_skb_line(&s);
        }

        #[test]
        fn trace_lines_with_kfree_marker_never_panic(a in "\\PC{0,40}", b in "\\PC{0,80}") {
            let _ = kfree_skb_line(&format!("{a}: kfree_skb: {b}"));
        }
    }
}
