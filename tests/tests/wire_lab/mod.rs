//! Lab scenarios for the wire (issue 4): extra network namespaces and veth pairs made per test, removed on
//! Drop. Nothing here routes off the machine: every address is in a namespace the test created.
#![allow(dead_code)]

use hostreach_labtests::*;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A small number unique to this test process and call: names and subnets derive from it.
pub fn uniq() -> u32 {
    (std::process::id() % 200) * 50 + SEQ.fetch_add(1, Ordering::Relaxed) % 50
}

/// `10.A.B.0` octets for a /24 no other test process uses at the same time.
pub fn subnet24(n: u32) -> (u8, u8) {
    (100 + (n / 256) as u8 % 100, (n % 256) as u8)
}

pub fn run(argv: &[&str]) -> String {
    let out = Command::new(argv[0]).args(&argv[1..]).output().unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    assert!(out.status.success(), "{argv:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Runs `sh -c CMD` inside a network namespace file.
pub fn in_ns(ns: &str, cmd: &str) -> String {
    run(&["nsenter", &format!("--net={ns}"), "--", "sh", "-c", cmd])
}

pub fn in_lab(cmd: &str) -> String {
    in_ns(NETNS_PATH, cmd)
}

/// A network namespace of the test's own (`ip netns add`), deleted on Drop (its veth ends go with it).
pub struct Ns {
    pub name: String,
    pub path: String,
}

impl Ns {
    pub fn new(tag: &str) -> Ns {
        let name = format!("hrt-{tag}-{}", uniq());
        run(&["ip", "netns", "add", &name]);
        let ns = Ns { path: format!("/run/netns/{name}"), name };
        ns.sh("ip link set lo up");
        ns
    }
    pub fn sh(&self, cmd: &str) -> String {
        in_ns(&self.path, cmd)
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// A veth pair created in the lab namespace (both ends there), deleted on Drop.
pub struct LabVeth {
    pub a: String,
    pub b: String,
}

impl LabVeth {
    pub fn new(tag: &str) -> LabVeth {
        let n = uniq();
        let (a, b) = (format!("{tag}{n}a"), format!("{tag}{n}b"));
        assert!(a.len() <= 15, "interface name {a} too long");
        in_lab(&format!("ip link add {a} type veth peer name {b} && ip link set {a} up && ip link set {b} up"));
        LabVeth { a, b }
    }
}

impl Drop for LabVeth {
    fn drop(&mut self) {
        let _ = Command::new("nsenter").args([&format!("--net={NETNS_PATH}"), "--", "ip", "link", "del", &self.a]).status();
    }
}

/// A "remote" host behind a router, behind a link with a smaller MTU:
///
/// ```text
/// lab ──(A.1/30, mtu 1500)── R ──(hmC mtu `mtu` → hmD mtu 1500)── T (target, C.2)
/// ```
/// R forwards; with `block_frag_needed`, R's iptables drops the ICMP "fragmentation needed" it would send.
pub struct Remote {
    pub router: Ns,
    pub target: Ns,
    pub target_ip: String,
    pub lab_if: String,
    pub mtu: u32,
    route: String,
}

impl Remote {
    pub fn new(mtu: u32, block_frag_needed: bool) -> Remote {
        let n = uniq();
        let (x, y) = subnet24(n);
        let router = Ns::new("r");
        let target = Ns::new("t");
        let lab_if = format!("hm{n}a");
        let r_in = format!("hm{n}b");
        let r_out = format!("hm{n}c");
        let t_in = format!("hm{n}d");
        // lab <-> R, created in the lab with its peer moved into R.
        in_lab(&format!("ip link add {lab_if} type veth peer name {r_in} netns {} && ip addr add 10.{x}.{y}.1/30 dev {lab_if} && ip link set {lab_if} up", router.name));
        router.sh(&format!("ip addr add 10.{x}.{y}.2/30 dev {r_in} && ip link set {r_in} up && sysctl -qw net.ipv4.ip_forward=1"));
        // R <-> T: the small MTU on R's side (R cannot send larger packets to T), T's side full size.
        router.sh(&format!(
            "ip link add {r_out} type veth peer name {t_in} netns {} && ip link set {r_out} mtu {mtu} && ip addr add 10.{x}.{y}.5/30 dev {r_out} && ip link set {r_out} up",
            target.name
        ));
        target.sh(&format!("ip addr add 10.{x}.{y}.6/30 dev {t_in} && ip link set {t_in} up && ip route add default via 10.{x}.{y}.5"));
        if block_frag_needed {
            router.sh("iptables -w -I OUTPUT -p icmp --icmp-type fragmentation-needed -j DROP");
        }
        let route = format!("10.{x}.{y}.4/30");
        in_lab(&format!("ip route add {route} via 10.{x}.{y}.2 dev {lab_if}"));
        Remote { router, target, target_ip: format!("10.{x}.{y}.6"), lab_if, mtu, route }
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        let _ = Command::new("nsenter").args([&format!("--net={NETNS_PATH}"), "--", "ip", "link", "del", &self.lab_if]).status();
    }
}

/// The JSON findings with this code.
pub fn findings<'a>(v: &'a serde_json::Value, code: &str) -> Vec<&'a serde_json::Value> {
    v["findings"].as_array().map(|a| a.iter().filter(|f| f["code"] == code).collect()).unwrap_or_default()
}

pub fn fix_commands(f: &serde_json::Value) -> Vec<String> {
    f["fix"].as_array().unwrap().iter().flat_map(|x| x["commands"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string())).collect()
}

/// The `path_mtu` and `probes` of the MTU search's evidence in a finding.
pub fn mtu_found(f: &serde_json::Value) -> Option<(u64, u64)> {
    f["evidence"].as_array()?.iter().find(|e| e["kind"] == "mtu" && e.get("probes").is_some()).map(|e| (e["path_mtu"].as_u64().unwrap_or(0), e["probes"].as_u64().unwrap_or(0)))
}
