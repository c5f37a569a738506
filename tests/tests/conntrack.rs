//! CONNTRACK_FULL for real (issue 5). On this kernel nf_conntrack_max is one global limit, writable
//! only from the machine's initial namespace, while nf_conntrack_count is per namespace. So the test
//! builds a pair of throwaway namespaces of its own ("host" with conntrack hooks and a listener,
//! "client" joined to it by a veth), fills the "host" table with assured UDP flows, and lowers the
//! global max to exactly that count for the few hundred milliseconds of one doctor run.
//!
//! Safety: before lowering, every network namespace of the machine is read; the test refuses
//! (fails) unless each other namespace's count is below a quarter of the new max minus 1000, so
//! nothing else comes near the lowered limit. The original value is written back by a Drop guard
//! (also on panic), and recorded in /run/hostreach-lab/conntrack-max.orig so that a test process
//! killed mid-way has it restored by the next run. Every test here holds Lab::exclusive().

use hostreach_labtests::*;
use serde_json::json;
use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};
use std::time::Duration;

const CT_MAX: &str = "/proc/sys/net/netfilter/nf_conntrack_max";
const ORIG_FILE: &str = "/run/hostreach-lab/conntrack-max.orig";

fn sh(cmd: &str) -> String {
    let out = Command::new("sh").args(["-c", cmd]).stdin(Stdio::null()).output().unwrap();
    assert!(out.status.success(), "`{cmd}` failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Two namespaces of the test's own, removed on Drop.
struct Pair {
    host: String,
    client: String,
}

impl Pair {
    fn new() -> Pair {
        let id = std::process::id();
        let p = Pair { host: format!("hr-ct-host-{id}"), client: format!("hr-ct-client-{id}") };
        let h = &p.host;
        let c = &p.client;
        sh(&format!(
            "ip netns add {h} && ip netns add {c} && \
             ip -n {h} link set lo up && ip -n {c} link set lo up && \
             ip -n {h} link add hrct0 type veth peer name hrct1 netns {c} && \
             ip -n {h} addr add 10.251.0.1/24 dev hrct0 && ip -n {c} addr add 10.251.0.2/24 dev hrct1 && \
             ip -n {h} link set hrct0 up && ip -n {c} link set hrct1 up"
        ));
        // A conntrack expression registers conntrack's hooks in that namespace only.
        sh(&format!(
            "nsenter --net=/run/netns/{h} nft -f - <<'X'\ntable inet hrct {{\n chain input {{\n  type filter hook input priority 0;\n  ct state new counter accept\n }}\n}}\nX"
        ));
        p
    }
    fn path(name: &str) -> String {
        format!("/run/netns/{name}")
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.host]).status();
        let _ = Command::new("ip").args(["netns", "del", &self.client]).status();
    }
}

/// Puts nf_conntrack_max back on Drop.
struct MaxGuard {
    orig: u64,
}

impl MaxGuard {
    fn lower(to: u64) -> MaxGuard {
        let orig: u64 = fs::read_to_string(CT_MAX).unwrap().trim().parse().unwrap();
        fs::write(ORIG_FILE, orig.to_string()).expect("record the original nf_conntrack_max");
        let g = MaxGuard { orig };
        fs::write(CT_MAX, to.to_string()).expect("lower nf_conntrack_max");
        g
    }
}

impl Drop for MaxGuard {
    fn drop(&mut self) {
        if let Err(e) = fs::write(CT_MAX, self.orig.to_string()) {
            eprintln!("CRITICAL: could not restore nf_conntrack_max to {}: {e}", self.orig);
            return;
        }
        let _ = fs::remove_file(ORIG_FILE);
    }
}

/// A run killed before its guard ran left the original behind: put it back.
fn restore_leftover() {
    if let Ok(v) = fs::read_to_string(ORIG_FILE) {
        let v = v.trim();
        if v.parse::<u64>().is_ok() {
            fs::write(CT_MAX, v).expect("restore nf_conntrack_max left by an earlier run");
        }
        let _ = fs::remove_file(ORIG_FILE);
    }
}

/// nf_conntrack_count of every network namespace of the machine, by namespace inode (read from a
/// process or a /run/netns file in it), with a path for each.
fn all_counts() -> HashMap<u64, (String, u64)> {
    let mut paths: Vec<String> = fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .map(|p| format!("/proc/{p}/ns/net"))
        .collect();
    if let Ok(d) = fs::read_dir("/run/netns") {
        paths.extend(d.filter_map(|e| Some(e.ok()?.path().to_str()?.to_string())));
    }
    let mut out = HashMap::new();
    for p in paths {
        let Ok(ino) = fs::metadata(&p).map(|m| m.ino()) else { continue };
        if out.contains_key(&ino) {
            continue;
        }
        let o = Command::new("nsenter").args([&format!("--net={p}"), "cat", "/proc/sys/net/netfilter/nf_conntrack_count"]).output();
        if let Ok(o) = o
            && let Ok(n) = String::from_utf8_lossy(&o.stdout).trim().parse::<u64>()
        {
            out.insert(ino, (p, n));
        }
    }
    out
}

fn count_in(ns_path: &str) -> u64 {
    sh(&format!("nsenter --net={ns_path} cat /proc/sys/net/netfilter/nf_conntrack_count")).parse().unwrap()
}

/// `n` UDP flows from the client to the host's echo server, each answered and used again 2.2 s
/// later, so conntrack marks them ASSURED (never evicted by early_drop). Held until killed.
const FILL: &str = r#"
import resource, socket, sys, time
n = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_NOFILE, (n + 100, n + 100))
socks = []
for i in range(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect(("10.251.0.1", 9000))
    s.send(b"x")
    socks.append(s)
def drain():
    for s in socks:
        s.settimeout(2)
        s.recv(16)
drain()
time.sleep(2.2)
for s in socks:
    s.send(b"y")
drain()
print("filled", flush=True)
time.sleep(3600)
"#;

const ECHO: &str = r#"
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 24)
s.bind(("10.251.0.1", 9000))
while True:
    d, a = s.recvfrom(64)
    s.sendto(d, a)
"#;

fn doctor_in(pair: &Pair) -> Run {
    let bin = hostreach_bin();
    let args = ["doctor", "--netns", &Pair::path(&pair.client), "--to", "10.251.0.1:8080", "--timeout", "2s", "--format", "json"];
    let start = std::time::Instant::now();
    let out = Command::new("nsenter")
        .arg(format!("--net={}", Pair::path(&pair.host)))
        .arg("--")
        .arg(&bin)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    Run {
        args: args.iter().map(|s| s.to_string()).collect(),
        code: out.status.code().unwrap_or(-1),
        json: serde_json::from_str(stdout.trim()).ok(),
        stdout,
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
        elapsed: start.elapsed(),
    }
}

#[test]
fn conntrack_full_is_named_not_taken_for_a_firewall() {
    let lab = Lab::get();
    let _x = lab.exclusive();
    restore_leftover();
    let pair = Pair::new();
    let hp = Pair::path(&pair.host);
    let cp = Pair::path(&pair.client);
    let host_ino = fs::metadata(&hp).unwrap().ino();

    // How many flows: far above what any other namespace holds now.
    let others_max = all_counts().into_iter().filter(|(ino, _)| *ino != host_ino).map(|(_, (_, n))| n).max().unwrap_or(0);
    let fill = (others_max * 4 + 1000).max(3000);
    let orig: u64 = fs::read_to_string(CT_MAX).unwrap().trim().parse().unwrap();
    assert!(fill * 2 < orig, "refusing: nf_conntrack_max is {orig}, too close to the {fill} flows needed");

    let mut listener = Command::new("nsenter")
        .args([&format!("--net={hp}"), "socat", "TCP4-LISTEN:8080,bind=10.251.0.1,reuseaddr,fork", "SYSTEM:echo ok"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut echo = Command::new("nsenter").args([&format!("--net={hp}"), "python3", "-c", ECHO]).stdin(Stdio::null()).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let before = doctor_in(&pair);
    assert_eq!(before.verdict(), Some("OK"), "the path works before the table fills:\n{before}");

    let mut filler = Command::new("nsenter")
        .args([&format!("--net={cp}"), "python3", "-c", FILL, &fill.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(filler.stdout.take().unwrap()), &mut line).unwrap();
    assert_eq!(line.trim(), "filled");
    let count = count_in(&hp);
    assert!(count >= fill, "the host namespace holds {count} entries, expected at least {fill}");

    // Check again right before lowering, then lower to exactly our count: our table is full.
    let counts = all_counts();
    for (ino, (path, n)) in &counts {
        if *ino != host_ino {
            assert!(*n * 4 + 1000 <= count, "refusing: namespace {path} holds {n} entries, too close to {count}");
        }
    }
    let run = {
        let _guard = MaxGuard::lower(count);
        doctor_in(&pair)
    };
    let restored: u64 = fs::read_to_string(CT_MAX).unwrap().trim().parse().unwrap();
    let _ = filler.kill();
    let _ = listener.kill();
    let _ = echo.kill();
    let _ = (filler.wait(), listener.wait(), echo.wait());
    assert_eq!(restored, orig, "nf_conntrack_max was not restored");

    run.assert_code(1);
    assert_json_subset(
        run.json(),
        &json!({
            "verdict": {"code": "CONNTRACK_FULL", "hop": "host-input"},
            "findings": [{
                "code": "CONNTRACK_FULL",
                "evidence": [
                    {"kind": "probe", "outcome": "no-answer"},
                    {"kind": "drop-reason", "reason": "NETFILTER_DROP", "attributed": true},
                    {"kind": "pressure", "resource": "conntrack", "namespace": "host", "used": count, "limit": count},
                    {"kind": "sysctl", "name": "net.netfilter.nf_conntrack_max", "value": count.to_string()}
                ]
            }]
        }),
    );
    let f = &run.json()["findings"][0];
    let drop = f["evidence"].as_array().unwrap().iter().find(|e| e["kind"] == "drop-reason").unwrap();
    let loc = drop["location"].as_str().unwrap();
    assert!(!loc.starts_with("nft_do_chain") && !loc.starts_with("ipt_do_table"), "a rule's drop location: {loc}\n{run}");
    let ct_drops = f["evidence"].as_array().unwrap().iter().find(|e| e["resource"] == "conntrack-drops").expect("drop counters");
    assert!(ct_drops["used"].as_u64().unwrap() >= 1, "conntrack's drop counter moved:\n{run}");
    let cmds: Vec<&str> = f["fix"][0]["commands"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    assert!(cmds.iter().any(|c| c.starts_with("net.netfilter.nf_conntrack_max = ")), "{cmds:?}");
    assert!(!run.stdout.contains("FIREWALL_DROP"), "{run}");
}
