//! Pressure facts of one network namespace (issue 5): the ephemeral port range, the accept-queue
//! limits and counters, the conntrack table. Read in the namespace they belong to.

use crate::facts::SocketFact;
use serde::{Deserialize, Serialize};

/// Counters that move: read before the probe and after it, so the rules can tell what moved
/// while it ran.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PressureCounters {
    /// TcpExt ListenOverflows: SYNs or handshakes dropped because an accept queue was full.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen_overflows: Option<u64>,
    /// TcpExt ListenDrops: every drop at a listener (overflows included).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen_drops: Option<u64>,
    /// nf_conntrack_count of this namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conntrack_count: Option<u64>,
    /// /proc/net/stat/nf_conntrack, summed over CPUs: `drop` (a new flow found the table full).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conntrack_drop: Option<u64>,
    /// `early_drop`: an unassured entry evicted to make room.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conntrack_early_drop: Option<u64>,
    /// `insert_failed`: a new entry lost an insertion race (or clashed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conntrack_insert_failed: Option<u64>,
}

impl PressureCounters {
    /// `after - before` for one counter, when both are known.
    pub fn delta(before: Option<u64>, after: Option<u64>) -> Option<u64> {
        Some(after?.saturating_sub(before?))
    }
}

/// Pressure of one network namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PressureFacts {
    /// `host` or `subject` (the same namespace appears once, as `host`, with `subject_too`).
    pub namespace: String,
    /// The namespace's inode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inode: Option<u64>,
    /// The subject shares this namespace (host network mode).
    #[serde(default)]
    pub subject_too: bool,
    /// net.ipv4.ip_local_port_range: [low, high], inclusive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port_range: Option<[u16; 2]>,
    /// net.ipv4.ip_local_reserved_ports as inclusive ranges.
    #[serde(default)]
    pub reserved_ports: Vec<[u16; 2]>,
    /// net.ipv4.tcp_tw_reuse (0 off, 1 on, 2 loopback only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_tw_reuse: Option<u8>,
    /// net.core.somaxconn: the cap on every listen() backlog in this namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub somaxconn: Option<u32>,
    /// net.netfilter.nf_conntrack_max (global on recent kernels; read-only outside the init namespace).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conntrack_max: Option<u64>,
    /// nf_conntrack_max can be written from this namespace (only the init namespace on recent kernels).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conntrack_max_writable: Option<bool>,
    /// Counters before the probe (None when no probe ran).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<PressureCounters>,
    /// Counters after the probe (or at the time of reading).
    pub counters: PressureCounters,
    /// Sockets of this namespace connected to the target (every state, TIME_WAIT included):
    /// the ephemeral ports in use towards it. Collected for the subject's namespace only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_target: Option<Vec<SocketFact>>,
    /// What could not be read, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
}

impl PressureFacts {
    /// Ports the kernel may pick for connect(): the range minus the reserved ports.
    pub fn usable_ports(&self) -> Option<u32> {
        let [lo, hi] = self.port_range?;
        if hi < lo {
            return Some(0);
        }
        let total = u32::from(hi) - u32::from(lo) + 1;
        let reserved: u32 = self
            .reserved_ports
            .iter()
            .map(|[a, b]| {
                let a = (*a).max(lo);
                let b = (*b).min(hi);
                if b >= a { u32::from(b) - u32::from(a) + 1 } else { 0 }
            })
            .sum();
        Some(total.saturating_sub(reserved))
    }

    /// Is `port` in the ephemeral range and not reserved?
    pub fn is_ephemeral(&self, port: u16) -> bool {
        self.port_range.is_some_and(|[lo, hi]| port >= lo && port <= hi)
            && !self.reserved_ports.iter().any(|[a, b]| port >= *a && port <= *b)
    }

    /// How much a counter moved during the probe.
    pub fn moved(&self, f: impl Fn(&PressureCounters) -> Option<u64>) -> Option<u64> {
        PressureCounters::delta(self.before.as_ref().and_then(&f), f(&self.counters))
    }
}

/// `/proc/sys/net/ipv4/ip_local_reserved_ports`: `8080,9000-9010` -> [[8080,8080],[9000,9010]].
pub fn parse_port_list(text: &str) -> Vec<[u16; 2]> {
    text.trim()
        .split(',')
        .filter(|p| !p.trim().is_empty())
        .filter_map(|p| match p.trim().split_once('-') {
            Some((a, b)) => Some([a.trim().parse().ok()?, b.trim().parse().ok()?]),
            None => {
                let v = p.trim().parse().ok()?;
                Some([v, v])
            }
        })
        .collect()
}

/// `ip_local_port_range`: `32768\t60999`.
pub fn parse_port_range(text: &str) -> Option<[u16; 2]> {
    let mut it = text.split_whitespace().map(|v| v.parse::<u16>());
    Some([it.next()?.ok()?, it.next()?.ok()?])
}

/// TcpExt counters from `/proc/net/netstat` (pairs of header and value lines).
pub fn parse_netstat(text: &str, section: &str, names: &[&str]) -> Vec<Option<u64>> {
    let mut lines = text.lines();
    let prefix = format!("{section}:");
    while let Some(h) = lines.next() {
        let Some(v) = lines.next() else { break };
        if !h.starts_with(&prefix) || !v.starts_with(&prefix) {
            continue;
        }
        let hs: Vec<&str> = h.split_whitespace().skip(1).collect();
        let vs: Vec<&str> = v.split_whitespace().skip(1).collect();
        return names
            .iter()
            .map(|n| hs.iter().position(|x| x == n).and_then(|i| vs.get(i)?.parse().ok()))
            .collect();
    }
    names.iter().map(|_| None).collect()
}

/// `/proc/net/stat/nf_conntrack`: one header line, one line of hex fields per CPU. Returns the
/// named columns summed over CPUs (`entries` is the same on every line: it is not summed).
pub fn parse_conntrack_stat(text: &str, names: &[&str]) -> Vec<Option<u64>> {
    let mut lines = text.lines();
    let Some(header) = lines.next() else { return names.iter().map(|_| None).collect() };
    let cols: Vec<&str> = header.split_whitespace().collect();
    let rows: Vec<Vec<u64>> = lines
        .map(|l| l.split_whitespace().filter_map(|h| u64::from_str_radix(h, 16).ok()).collect::<Vec<u64>>())
        .filter(|r| r.len() == cols.len())
        .collect();
    names
        .iter()
        .map(|n| {
            let i = cols.iter().position(|c| c == n)?;
            if rows.is_empty() {
                return None;
            }
            if *n == "entries" {
                return Some(rows[0][i]);
            }
            Some(rows.iter().map(|r| r[i]).sum())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports() {
        assert_eq!(parse_port_range("32768\t60999\n"), Some([32768, 60999]));
        assert_eq!(parse_port_list("\n"), Vec::<[u16; 2]>::new());
        assert_eq!(parse_port_list("8080,9000-9010\n"), vec![[8080, 8080], [9000, 9010]]);
        let p = PressureFacts { port_range: Some([40000, 40003]), reserved_ports: vec![[40001, 40001], [1, 100]], ..Default::default() };
        assert_eq!(p.usable_ports(), Some(3));
        assert!(p.is_ephemeral(40000) && !p.is_ephemeral(40001) && !p.is_ephemeral(40004));
    }

    #[test]
    fn netstat_and_conntrack() {
        let t = "TcpExt: SyncookiesSent ListenOverflows ListenDrops\nTcpExt: 0 7 9\nIpExt: InNoRoutes\nIpExt: 3\n";
        assert_eq!(parse_netstat(t, "TcpExt", &["ListenOverflows", "ListenDrops", "Nope"]), vec![Some(7), Some(9), None]);
        let c = "entries  clashres found new invalid ignore delete chainlength insert insert_failed drop early_drop icmp_error  expect_new expect_create expect_delete search_restart\n\
00000010  00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000001 0000000a 00000000 00000000  00000000 00000000 00000000 00000000\n\
00000010  00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000002 00000005 00000001 00000000  00000000 00000000 00000000 00000000\n";
        assert_eq!(
            parse_conntrack_stat(c, &["entries", "drop", "early_drop", "insert_failed"]),
            vec![Some(16), Some(15), Some(1), Some(3)]
        );
    }
}
