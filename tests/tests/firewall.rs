//! `hostreach firewall explain` on the lab: live rules of each backend (iptables-nft, native
//! nftables, iptables-legacy) built for real, the decision and the rule checked against what the
//! kernel does to a real connection, and the fix applied for real; then saved rulesets captured
//! in the lab (tests/fixtures/firewall: UFW, firewalld, Docker 28, Docker 29) through the binary.
//! IPv6 in throwaway namespace pairs (ip6tables, an nft inet table, UFW enabled over private copies
//! of its files), with real IPv6 connections as the judge.

use hostreach_labtests::*;
use serde_json::{Value, json};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PROBE: Duration = Duration::from_secs(2);

fn explain(args: &[&str]) -> Run {
    let mut full = vec!["firewall", "explain"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["--format", "json"]);
    hostreach(&full)
}

/// Container → host (docker0 gateway) for one port, against the lab's live rules.
fn explain_live(src: &str, port: u16) -> Run {
    let p = port.to_string();
    explain(&["--in", "docker0", "--src", src, "--dst", BRIDGE_GW, "--proto", "tcp", "--dport", &p])
}

fn container_ip(c: &Container) -> String {
    c.ip_on("bridge").expect("container on the default bridge").0
}

fn fixture(p: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/firewall").join(p).to_string_lossy().into_owned()
}

fn first_fix(run: &Run) -> String {
    run.json()["fixes"][0]["commands"][0].as_str().unwrap_or_else(|| panic!("no fix:\n{run}")).to_string()
}

/// An iptables-legacy rule in the lab, deleted on Drop (the harness's Rule guard speaks iptables).
struct LegacyRule(Vec<String>);
impl LegacyRule {
    fn add(args: &[&str]) -> LegacyRule {
        let mut full = vec!["--net=".to_string() + NETNS_PATH, "--".into(), "iptables-legacy".into(), "-w".into(), "10".into(), "-I".into()];
        full.extend(args.iter().map(|s| s.to_string()));
        let out = Command::new("nsenter").args(&full).output().expect("nsenter");
        assert!(out.status.success(), "iptables-legacy -I {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        LegacyRule(args.iter().map(|s| s.to_string()).collect())
    }
}
impl Drop for LegacyRule {
    fn drop(&mut self) {
        let mut full = vec!["--net=".to_string() + NETNS_PATH, "--".into(), "iptables-legacy".into(), "-w".into(), "10".into(), "-D".into()];
        full.extend(self.0.iter().cloned());
        let _ = Command::new("nsenter").args(&full).output();
    }
}

#[test]
fn iptables_nft_input_drop_is_named_and_its_fix_works() {
    let lab = Lab::get();
    let port = lab.free_port();
    let p = port.to_string();
    let _svc = lab.listener(Proto::Tcp, "0.0.0.0", port);
    let web = lab.container("fw-ipt", &[]);
    let ip = container_ip(&web);
    // no rule: the lab's Docker 20.10 defaults accept, and so does the kernel
    let run = explain_live(&ip, port);
    run.assert_code(0);
    assert_json_subset(run.json(), &json!({"schema": "hostreach/v1", "decision": "accept", "path": "input", "backend": "iptables-nft", "rule": "-P INPUT ACCEPT"}));
    assert!(matches!(web.probe(Proto::Tcp, BRIDGE_GW, port, PROBE), Probe::Connected(_)));
    // a DROP in INPUT: named, and the kernel agrees (the SYN is dropped: the connect times out)
    let _drop = lab.iptables(&["-I", "INPUT", "-i", "docker0", "-p", "tcp", "--dport", &p, "-j", "DROP"]);
    let run = explain_live(&ip, port);
    run.assert_code(1);
    assert_json_subset(
        run.json(),
        &json!({"decision": "drop", "backend": "iptables-nft", "family": "ip", "table": "filter", "chain": "INPUT", "hook": "input",
                "rule": format!("-A INPUT -i docker0 -p tcp -m tcp --dport {port} -j DROP"), "manager": "plain", "certain": true}),
    );
    assert!(run.json()["managers"].as_array().unwrap().iter().any(|m| m["manager"] == "docker" && m["version"] == "20.10"), "{run}");
    assert!(run.json()["notes"].as_array().unwrap().iter().any(|n| n.as_str().unwrap().contains("DOCKER-USER")), "{run}");
    let walk = run.json()["walk"].as_array().unwrap();
    assert!(walk.iter().any(|s| s["event"] == "enter" && s["chain"] == "PREROUTING" && s["table"] == "nat"), "{run}");
    assert!(walk.iter().all(|s| s["chain"] != "DOCKER-USER"), "container-to-host never crosses DOCKER-USER: {run}");
    assert_eq!(web.probe(Proto::Tcp, BRIDGE_GW, port, PROBE), Probe::TimedOut);
    let fix = first_fix(&run);
    assert!(fix.starts_with("sudo iptables -I INPUT ") && fix.ends_with(&format!("-i docker0 -p tcp --dport {port} -j ACCEPT")), "{fix}");
    assert_eq!(run.json()["fixes"][0]["verified"], true);
    // the fix, for real: explain and the kernel both accept
    let _fix = lab.iptables(&["-I", "INPUT", "-i", "docker0", "-p", "tcp", "--dport", &p, "-j", "ACCEPT"]);
    let run = explain_live(&ip, port);
    run.assert_code(0);
    assert_json_subset(run.json(), &json!({"decision": "accept", "rule": format!("-A INPUT -i docker0 -p tcp -m tcp --dport {port} -j ACCEPT")}));
    assert!(matches!(web.probe(Proto::Tcp, BRIDGE_GW, port, PROBE), Probe::Connected(_)));
}

#[test]
fn nftables_drop_in_its_own_base_chain_wins_over_iptables_accept() {
    let lab = Lab::get();
    let port = lab.free_port();
    let _svc = lab.listener(Proto::Tcp, "0.0.0.0", port);
    let web = lab.container("fw-nft", &[]);
    let ip = container_ip(&web);
    let table = lab.nft(
        "inet",
        "fw",
        &format!("chain input {{ type filter hook input priority filter + 5; policy accept; iifname \"docker*\" tcp dport {port} counter drop; }}"),
    );
    let run = explain_live(&ip, port);
    run.assert_code(1);
    assert_json_subset(run.json(), &json!({"decision": "drop", "backend": "nftables", "family": "inet", "table": table.name, "chain": "input", "policy": false}));
    let rule = run.json()["rule"].as_str().unwrap();
    assert!(rule.starts_with(&format!("iifname \"docker*\" tcp dport {port} counter packets")), "{rule}");
    // the iptables-nft INPUT chain (policy accept) was walked first and did not end the walk
    let enters: Vec<&Value> = run.json()["walk"].as_array().unwrap().iter().filter(|s| s["event"] == "enter" && s["hook"] == "input").collect();
    let ipt = enters.iter().position(|s| s["backend"] == "iptables-nft" && s["table"] == "filter").unwrap_or_else(|| panic!("{run}"));
    let mine = enters.iter().position(|s| s["table"] == json!(table.name)).unwrap_or_else(|| panic!("{run}"));
    assert!(ipt < mine, "priority 0 before priority 5: {run}");
    assert_eq!(web.probe(Proto::Tcp, BRIDGE_GW, port, PROBE), Probe::TimedOut);
    // the fix is an nft command for this table; run it as printed (without sudo)
    let fix = first_fix(&run);
    assert!(fix.starts_with(&format!("sudo nft insert rule inet {} input position ", table.name)), "{fix}");
    lab.sh_ok(fix.trim_start_matches("sudo "));
    let run = explain_live(&ip, port);
    run.assert_code(0);
    assert!(run.json()["rule"].as_str().unwrap().starts_with(&format!("iifname \"docker0\" tcp dport {port} accept")), "{run}");
    assert!(matches!(web.probe(Proto::Tcp, BRIDGE_GW, port, PROBE), Probe::Connected(_)));
}

#[test]
fn iptables_legacy_reject_is_named_with_its_type() {
    let lab = Lab::get();
    let port = lab.free_port();
    let p = port.to_string();
    let _svc = lab.listener(Proto::Tcp, "0.0.0.0", port);
    let web = lab.container("fw-legacy", &[]);
    let ip = container_ip(&web);
    let _rule = LegacyRule::add(&["INPUT", "-i", "docker0", "-p", "tcp", "--dport", &p, "-j", "REJECT", "--reject-with", "tcp-reset"]);
    let run = explain_live(&ip, port);
    run.assert_code(1);
    assert_json_subset(
        run.json(),
        &json!({"decision": "reject", "reject_with": "tcp-reset", "backend": "iptables-legacy", "table": "filter", "chain": "INPUT",
                "rule": format!("-A INPUT -i docker0 -p tcp -m tcp --dport {port} -j REJECT --reject-with tcp-reset")}),
    );
    // a tcp-reset is what the container sees: refused at once
    assert_eq!(web.probe(Proto::Tcp, BRIDGE_GW, port, PROBE), Probe::Refused);
    assert!(first_fix(&run).starts_with("sudo iptables -I INPUT "), "{run}");
}

#[test]
fn saved_rulesets_of_each_manager_through_the_binary() {
    Lab::get();
    let pkt = |iif: &str, src: &str| vec!["--in".to_string(), iif.into(), "--src".into(), src.into(), "--dst".into(), BRIDGE_GW.into(), "--dport".into(), "5432".into(), "--path".into(), "input".into()];
    // UFW deny incoming (captured with ufw in a throwaway namespace)
    let mut a = pkt("docker0", "172.17.0.2");
    a.extend(["--iptables-save".into(), fixture("ufw/iptables-save.txt"), "--nft-json".into(), fixture("ufw/nft.json")]);
    let run = explain(&a.iter().map(String::as_str).collect::<Vec<_>>());
    run.assert_code(1);
    assert_json_subset(run.json(), &json!({"decision": "drop", "backend": "iptables-nft", "rule": "-P INPUT DROP", "manager": "ufw", "policy": true}));
    assert_eq!(first_fix(&run), "sudo ufw allow in on docker0 to any port 5432 proto tcp");
    // firewalld: a compose bridge falls into zone public and is rejected
    let mut a = pkt("br-0123456789ab", "172.18.0.2");
    a.extend(["--nft-json".into(), fixture("firewalld/nft.json")]);
    let run = explain(&a.iter().map(String::as_str).collect::<Vec<_>>());
    run.assert_code(1);
    assert_json_subset(run.json(), &json!({"decision": "reject", "backend": "nftables", "table": "firewalld", "manager": "firewalld"}));
    assert_eq!(first_fix(&run), "sudo firewall-cmd --zone=public --add-port=5432/tcp --permanent");
    // text output names the rule and the fix
    let mut a = pkt("br-0123456789ab", "172.18.0.2");
    a.extend(["--nft-json".into(), fixture("firewalld/nft.json")]);
    let mut t = vec!["firewall", "explain"];
    t.extend(a.iter().map(String::as_str));
    let run = hostreach(&t);
    run.assert_code(1);
    assert!(run.stdout.contains("decision: REJECT (with icmpx admin-prohibited)") && run.stdout.contains("firewall-cmd --zone=public"), "{run}");
}

#[test]
fn bad_input_is_one_line_and_exit_2() {
    Lab::get();
    let dir = std::env::temp_dir().join(format!("hostreach-fw-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let truncated = dir.join("truncated.txt");
    let full = std::fs::read_to_string(fixture("docker-20.10/iptables-save.txt")).unwrap();
    let cut: String = full.lines().take(12).map(|l| format!("{l}\n")).collect();
    std::fs::write(&truncated, cut).unwrap();
    let base = ["--in", "docker0", "--src", "172.17.0.2", "--dst", BRIDGE_GW, "--dport", "5432", "--path", "input"];
    let mut a = base.to_vec();
    a.extend(["--iptables-save", truncated.to_str().unwrap()]);
    let run = explain(&a);
    run.assert_code(2);
    assert_eq!(run.stderr.trim().lines().count(), 1, "{run}");
    assert!(run.stderr.contains("line 12") && run.stderr.contains("truncated"), "{run}");
    let garbled = dir.join("garbled.json");
    std::fs::write(&garbled, "{\"nftables\": [{\"table\": 7}").unwrap();
    let mut a = base.to_vec();
    a.extend(["--nft-json", garbled.to_str().unwrap()]);
    let run = explain(&a);
    run.assert_code(2);
    assert!(run.stderr.contains("garbled.json") && run.stderr.contains("not JSON"), "{run}");
    let mut a = base.to_vec();
    a.extend(["--iptables-save", "/nonexistent/rules"]);
    explain(&a).assert_code(2);
    // tcp without a port
    explain(&["--in", "docker0", "--src", "172.17.0.2", "--dst", BRIDGE_GW]).assert_code(2);
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------------
// UFW's files and Docker's firewall backend, through the binary

#[test]
fn saved_ufw_rules_with_their_files_name_the_source_line_and_the_policy() {
    Lab::get();
    let run_in = |fx: &str, extra: &[&str]| {
        let (save, dir) = (fixture(&format!("{fx}/iptables-save.txt")), fixture(fx));
        let mut a = vec!["--in", "docker0", "--src", "172.17.0.2", "--dst", BRIDGE_GW, "--path", "input", "--iptables-save", &save, "--ufw-dir", &dir];
        a.extend_from_slice(extra);
        explain(&a)
    };
    // deny incoming: the policy, from DEFAULT_INPUT_POLICY in /etc/default/ufw
    let run = run_in("ufw", &["--dport", "5432"]);
    run.assert_code(1);
    assert_json_subset(
        run.json(),
        &json!({"decision": "drop", "rule": "-P INPUT DROP", "manager": "ufw",
                "rule_source": {"file": "/etc/default/ufw", "line": 11, "setting": "DEFAULT_INPUT_POLICY", "text": "DEFAULT_INPUT_POLICY=\"DROP\"",
                                "summary": "DEFAULT_INPUT_POLICY=\"DROP\" in /etc/default/ufw (line 11)", "read_from": fixture("ufw/default-ufw")},
                "ufw": {"default_input_policy": "DROP", "default_forward_policy": "DROP", "ipv6": true, "enabled": true, "in_sync": null}}),
    );
    assert!(run.json()["notes"].as_array().unwrap().iter().any(|n| n.as_str().unwrap().starts_with("DEFAULT_FORWARD_POLICY=\"DROP\" and `ufw route` rules")), "{run}");
    // a `ufw deny` rule: user.rules line 27, and the command that added it
    let run = run_in("ufw-rules", &["--dport", "6379"]);
    run.assert_code(1);
    assert_json_subset(
        run.json(),
        &json!({"decision": "drop", "chain": "ufw-user-input", "manager": "ufw",
                "rule_source": {"file": "/etc/ufw/user.rules", "line": 27, "text": "-A ufw-user-input -i docker0 -p tcp --dport 6379 -j DROP",
                                "ufw_command": "ufw deny in on docker0 to any port 6379 proto tcp",
                                "summary": "/etc/ufw/user.rules line 27 (added by `ufw deny in on docker0 to any port 6379 proto tcp`)"}}),
    );
    assert_eq!(first_fix(&run), "sudo ufw insert 1 allow in on docker0 to any port 6379 proto tcp");
    assert_eq!(run.json()["fixes"][0]["commands"][1], "# or delete the rule that drops it: sudo ufw delete deny in on docker0 to any port 6379 proto tcp");
    // IPv6: user6.rules, through ip6tables-save
    let (save6, dir) = (fixture("ufw-rules/ip6tables-save.txt"), fixture("ufw-rules"));
    let run = explain(&["--in", "docker0", "--src", "fd00:6872::2", "--dst", "fd00:6872::1", "--dport", "8080", "--path", "input", "--iptables-save", &save6, "--ufw-dir", &dir]);
    run.assert_code(0);
    assert_json_subset(run.json(), &json!({"decision": "accept", "family": "ip6", "chain": "ufw6-user-input", "rule_source": {"file": "/etc/ufw/user6.rules", "line": 30}}));
    // text: the source and the settings
    let save = fixture("ufw/iptables-save.txt");
    let dir = fixture("ufw");
    let run = hostreach(&["firewall", "explain", "--in", "docker0", "--src", "172.17.0.2", "--dst", BRIDGE_GW, "--dport", "5432", "--path", "input", "--iptables-save", &save, "--ufw-dir", &dir]);
    run.assert_code(1);
    assert!(run.stdout.contains("configured in: DEFAULT_INPUT_POLICY=\"DROP\" in /etc/default/ufw (line 11)"), "{run}");
    assert!(run.stdout.contains("ufw: DEFAULT_INPUT_POLICY=\"DROP\", DEFAULT_FORWARD_POLICY=\"DROP\", DEFAULT_OUTPUT_POLICY=\"ACCEPT\", IPV6=yes, ENABLED=yes"), "{run}");
    // a --ufw-dir that is not there: bad input, one line
    let run = explain(&["--in", "docker0", "--src", "172.17.0.2", "--dst", BRIDGE_GW, "--dport", "5432", "--path", "input", "--iptables-save", &save, "--ufw-dir", "/nonexistent/ufw"]);
    run.assert_code(2);
    assert!(run.stderr.contains("--ufw-dir") && run.stderr.trim().lines().count() == 1, "{run}");
}

#[test]
fn docker_20_10_does_not_report_its_firewall_backend_so_it_is_inferred() {
    let lab = Lab::get();
    let port = lab.free_port();
    // live: the lab's dockerd answers, without FirewallBackend (Docker < 28.1)
    let run = explain_live("172.17.0.2", port);
    run.assert_code(0);
    assert_json_subset(run.json(), &json!({"docker_firewall_backend": {"driver": "iptables", "source": "inferred", "daemon_version": lab.docker_version}}));
    let summary = run.json()["docker_firewall_backend"]["summary"].as_str().unwrap();
    assert!(summary.starts_with("iptables, inferred from the rules (chains DOCKER-ISOLATION-STAGE-1/2"), "{summary}");
    assert!(summary.contains(&format!("not reported by the Docker daemon (Docker {}; GET /info reports FirewallBackend from Docker 28.1)", lab.docker_version)), "{summary}");
    let p = port.to_string();
    let run = hostreach(&["firewall", "explain", "--in", "docker0", "--src", "172.17.0.2", "--dst", BRIDGE_GW, "--dport", &p]);
    assert!(run.stdout.contains("docker firewall backend: iptables, inferred from the rules"), "{run}");
    // saved rules: no daemon is asked
    let save = fixture("docker-29-nft/nft.json");
    let run = explain(&["--in", "hrlan0", "--out", "docker0", "--src", "198.18.0.2", "--dst", "172.17.0.2", "--dport", "5000", "--path", "forward", "--nft-json", &save]);
    run.assert_code(1);
    assert_json_subset(run.json(), &json!({"docker_firewall_backend": {"driver": "nftables", "source": "inferred"}}));
    assert!(run.json()["docker_firewall_backend"]["summary"].as_str().unwrap().contains("no Docker daemon was asked"), "{run}");
    assert!(run.json()["docker_firewall_backend"].get("daemon_version").is_none(), "{run}");
}

// ---------------------------------------------------------------------------------------------
// IPv6, in throwaway namespaces

const HOST6: &str = "fd00:6872::1";
const CLIENT6: &str = "fd00:6872::2";
const NET6: &str = "fd00:6872::/64";
const HOST4: &str = "10.252.0.1";
const CLIENT4: &str = "10.252.0.2";

fn sh(cmd: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(cmd).output().expect("sh");
    assert!(out.status.success(), "`{cmd}` failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Two throwaway network namespaces: a "host" with a bridge hrbr6 (10.252.0.1/24, fd00:6872::1/64)
/// and one port, and a "client" on the other end of that port (10.252.0.2, fd00:6872::2), standing
/// in for a container on a Docker bridge. Deleted on Drop, with every rule made in them.
struct NsPair {
    host: String,
    client: String,
}

impl NsPair {
    fn new(tag: &str) -> NsPair {
        let id = std::process::id();
        let p = NsPair { host: format!("hr-fw6h-{tag}-{id}"), client: format!("hr-fw6c-{tag}-{id}") };
        let (h, c) = (&p.host, &p.client);
        sh(&format!(
            "ip netns add {h} && ip netns add {c} && ip -n {h} link set lo up && ip -n {c} link set lo up && \
             ip -n {h} link add hrbr6 type bridge && ip -n {h} link add hrv6a type veth peer name hrv6b netns {c} && \
             ip -n {h} link set hrv6a master hrbr6 && \
             ip -n {h} addr add {HOST4}/24 dev hrbr6 && ip -n {h} addr add {HOST6}/64 dev hrbr6 nodad && \
             ip -n {c} addr add {CLIENT4}/24 dev hrv6b && ip -n {c} addr add {CLIENT6}/64 dev hrv6b nodad && \
             ip -n {h} link set hrv6a up && ip -n {h} link set hrbr6 up && ip -n {c} link set hrv6b up"
        ));
        p
    }
    fn host_path(&self) -> String {
        format!("/run/netns/{}", self.host)
    }
    fn client_path(&self) -> String {
        format!("/run/netns/{}", self.client)
    }
    /// `sh -c CMD` in the host namespace; panics unless it succeeds.
    fn host_sh(&self, cmd: &str) -> String {
        sh(&format!("nsenter --net={} -- sh -c '{}'", self.host_path(), cmd.replace('\'', "'\\''")))
    }
    /// Connects from the client, as the container would.
    fn probe(&self, addr: &str, port: u16) -> Probe {
        probe_from(&self.client_path(), Proto::Tcp, addr, port, PROBE)
    }
    /// One ping (busybox, -4 or -6 by the address) from the client: answered or not.
    fn ping(&self, addr: &str) -> bool {
        let fam = if addr.contains(':') { "-6" } else { "-4" };
        Command::new("nsenter").args([&format!("--net={}", self.client_path()), "--", "busybox", "ping", fam, "-c", "1", "-W", "1", addr]).output().expect("busybox ping").status.success()
    }
}

fn explain_ping(ns_args: &[&str], src: &str, dst: &str) -> Run {
    hostreach_in(ns_args, &["firewall", "explain", "--in", "hrbr6", "--src", src, "--dst", dst, "--proto", "icmp", "--format", "json"])
}

impl Drop for NsPair {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.host]).status();
        let _ = Command::new("ip").args(["netns", "del", &self.client]).status();
    }
}

/// `firewall explain` live, from the client to the host's bridge address, run in `ns_args`.
fn explain_in(ns_args: &[&str], src: &str, dst: &str, port: u16, json: bool) -> Run {
    let p = port.to_string();
    let mut a = vec!["firewall", "explain", "--in", "hrbr6", "--src", src, "--dst", dst, "--proto", "tcp", "--dport", &p];
    if json {
        a.extend_from_slice(&["--format", "json"]);
    }
    hostreach_in(ns_args, &a)
}

fn fix_commands(run: &Run) -> Vec<String> {
    run.json()["fixes"][0]["commands"].as_array().unwrap_or_else(|| panic!("no fix:\n{run}")).iter().map(|c| c.as_str().unwrap().to_string()).collect()
}

#[test]
fn ipv6_ip6tables_input_drop_is_named_and_its_fix_works() {
    let lab = Lab::get();
    let port = lab.free_port();
    let ns = NsPair::new("ip6t");
    let net = format!("--net={}", ns.host_path());
    let _svc = lab.listener_in(&ns.host_path(), Proto::Tcp, "::", port, Reply::Banner);
    assert!(matches!(ns.probe(HOST6, port), Probe::Connected(_)));
    ns.host_sh(&format!("ip6tables -w 10 -I INPUT -i hrbr6 -p tcp --dport {port} -j DROP"));
    // named, in ip6tables' language, with the IPv6 subnet of the bridge
    let run = explain_in(&[&net], CLIENT6, HOST6, port, true);
    run.assert_code(1);
    assert_json_subset(
        run.json(),
        &json!({"decision": "drop", "path": "input", "backend": "iptables-nft", "family": "ip6", "table": "filter", "chain": "INPUT", "policy": false,
                "rule": format!("-A INPUT -i hrbr6 -p tcp -m tcp --dport {port} -j DROP"), "manager": "plain", "certain": true,
                "packet": {"src": CLIENT6, "dst": HOST6, "src_network": NET6}}),
    );
    assert_eq!(fix_commands(&run), vec![
        format!("sudo ip6tables -I INPUT 1 -i hrbr6 -p tcp --dport {port} -j ACCEPT"),
        format!("# or, for the whole network: sudo ip6tables -I INPUT 1 -s {NET6} -p tcp --dport {port} -j ACCEPT"),
    ]);
    assert_eq!(run.json()["fixes"][0]["verified"], true, "{run}");
    // the kernel agrees: IPv6 is dropped, IPv4 is not (an ip6tables rule)
    assert_eq!(ns.probe(HOST6, port), Probe::TimedOut);
    assert!(matches!(ns.probe(HOST4, port), Probe::Connected(_)));
    let run4 = explain_in(&[&net], CLIENT4, HOST4, port, true);
    run4.assert_code(0);
    assert_eq!(run4.json()["decision"], "accept", "{run4}");
    // the fix, as printed (without sudo): explain and the kernel both accept
    ns.host_sh(fix_commands(&run)[0].trim_start_matches("sudo "));
    let run = explain_in(&[&net], CLIENT6, HOST6, port, true);
    run.assert_code(0);
    assert_json_subset(run.json(), &json!({"decision": "accept", "family": "ip6", "rule": format!("-A INPUT -i hrbr6 -p tcp -m tcp --dport {port} -j ACCEPT")}));
    assert!(matches!(ns.probe(HOST6, port), Probe::Connected(_)));
    // ICMPv6: an echo-request drop, and a fix that says ipv6-icmp (ip6tables' `-p icmp` is protocol 1)
    assert!(ns.ping(HOST6));
    ns.host_sh("ip6tables -w 10 -I INPUT -i hrbr6 -p ipv6-icmp --icmpv6-type echo-request -j DROP");
    let run = explain_ping(&[&net], CLIENT6, HOST6);
    run.assert_code(1);
    assert_json_subset(run.json(), &json!({"decision": "drop", "family": "ip6", "rule": "-A INPUT -i hrbr6 -p ipv6-icmp -m icmp6 --icmpv6-type 128 -j DROP"}));
    assert!(!ns.ping(HOST6));
    let fix = fix_commands(&run)[0].clone();
    assert_eq!(fix, "sudo ip6tables -I INPUT 1 -i hrbr6 -p ipv6-icmp -j ACCEPT");
    ns.host_sh(fix.trim_start_matches("sudo "));
    explain_ping(&[&net], CLIENT6, HOST6).assert_code(0);
    assert!(ns.ping(HOST6));
}

#[test]
fn ipv6_nft_inet_table_drops_ipv6_and_not_ipv4() {
    let lab = Lab::get();
    let port = lab.free_port();
    let ns = NsPair::new("inet");
    let net = format!("--net={}", ns.host_path());
    let _svc = lab.listener_in(&ns.host_path(), Proto::Tcp, "::", port, Reply::Banner);
    ns.host_sh(&format!(
        "nft add table inet hrv6 && nft 'add chain inet hrv6 input {{ type filter hook input priority filter; policy accept; }}' && \
         nft add rule inet hrv6 input meta nfproto ipv6 tcp dport {port} counter drop && nft add rule inet hrv6 input icmpv6 type echo-request counter drop"
    ));
    // IPv4: the inet table's policy accepts; the kernel connects
    let run = explain_in(&[&net], CLIENT4, HOST4, port, true);
    run.assert_code(0);
    assert_json_subset(run.json(), &json!({"decision": "accept", "backend": "nftables", "family": "inet", "table": "hrv6", "chain": "input", "policy": true}));
    assert!(matches!(ns.probe(HOST4, port), Probe::Connected(_)));
    // IPv6: the rule drops it; the kernel times out
    let run = explain_in(&[&net], CLIENT6, HOST6, port, true);
    run.assert_code(1);
    assert_json_subset(run.json(), &json!({"decision": "drop", "backend": "nftables", "family": "inet", "table": "hrv6", "chain": "input", "policy": false}));
    let rule = run.json()["rule"].as_str().unwrap();
    assert!(rule.starts_with(&format!("meta nfproto ipv6 tcp dport {port} counter packets")), "{rule}");
    assert_eq!(ns.probe(HOST6, port), Probe::TimedOut);
    let fixes = fix_commands(&run);
    assert!(fixes[0].starts_with("sudo nft insert rule inet hrv6 input position ") && fixes[0].ends_with(&format!("iifname \"hrbr6\" tcp dport {port} accept")), "{fixes:?}");
    assert!(fixes[1].starts_with("# or, for the whole network: sudo nft insert rule inet hrv6 input position ") && fixes[1].ends_with(&format!("ip6 saddr {NET6} tcp dport {port} accept")), "{fixes:?}");
    // the fix as printed, then both agree again
    ns.host_sh(fixes[0].trim_start_matches("sudo "));
    let run = explain_in(&[&net], CLIENT6, HOST6, port, true);
    run.assert_code(0);
    assert!(run.json()["rule"].as_str().unwrap().starts_with(&format!("iifname \"hrbr6\" tcp dport {port} accept")), "{run}");
    assert!(matches!(ns.probe(HOST6, port), Probe::Connected(_)));
    // ping: `icmpv6 type echo-request` is ICMPv6 type 128 and drops IPv6 pings only
    let run = explain_ping(&[&net], CLIENT4, HOST4);
    run.assert_code(0);
    assert!(ns.ping(HOST4));
    let run = explain_ping(&[&net], CLIENT6, HOST6);
    run.assert_code(1);
    assert!(run.json()["rule"].as_str().unwrap().starts_with("icmpv6 type echo-request counter packets"), "{run}");
    assert!(!ns.ping(HOST6));
    let fix = fix_commands(&run)[0].clone();
    assert!(fix.ends_with("iifname \"hrbr6\" meta l4proto ipv6-icmp accept"), "{fix}");
    ns.host_sh(fix.trim_start_matches("sudo "));
    explain_ping(&[&net], CLIENT6, HOST6).assert_code(0);
    assert!(ns.ping(HOST6));
}

/// UFW enabled for real, inside the host namespace of an [`NsPair`] and a private mount namespace
/// (held by a `sleep`) over copies of /etc/ufw and /etc/default/ufw: neither the machine's firewall
/// nor its UFW files change. UFW and hostreach run there with `nsenter -t PID -m -n`.
struct UfwInNs {
    holder: Child,
    pid: String,
    etc: PathBuf,
}

impl UfwInNs {
    fn enable(ns: &NsPair) -> UfwInNs {
        assert!(std::path::Path::new("/usr/sbin/ufw").exists(), "ufw is needed (lab/install.sh installs it)");
        let etc = std::env::temp_dir().join(format!("hostreach-ufw-{}-{}", ns.host, std::process::id()));
        let _ = std::fs::remove_dir_all(&etc);
        std::fs::create_dir_all(&etc).unwrap();
        let e = etc.display().to_string();
        sh(&format!(
            "cp -a /etc/ufw {e}/ufw && cp -a /etc/default/ufw {e}/default-ufw && \
             sed -i 's|^IPT_SYSCTL=.*|IPT_SYSCTL=/dev/null|' {e}/default-ufw && sed -i 's|^ENABLED=.*|ENABLED=no|' {e}/ufw/ufw.conf"
        ));
        let holder = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--", "nsenter", &format!("--net={}", ns.host_path()), "--", "sleep", "600"])
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("unshare");
        let pid = holder.id().to_string();
        let mine = std::fs::read_link("/proc/self/ns/mnt").unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::read_to_string(format!("/proc/{pid}/comm")).map(|c| c.trim() != "sleep").unwrap_or(true)
            || std::fs::read_link(format!("/proc/{pid}/ns/mnt")).ok().as_ref() == Some(&mine)
        {
            assert!(Instant::now() < deadline, "the mount namespace holder did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        let u = UfwInNs { holder, pid, etc };
        u.run_m(&["mount", "--bind", &format!("{e}/ufw"), "/etc/ufw"]);
        u.run_m(&["mount", "--bind", &format!("{e}/default-ufw"), "/etc/default/ufw"]);
        u.run(&["ufw", "default", "deny", "incoming"]);
        u.run(&["ufw", "default", "allow", "outgoing"]);
        // A rule added before the first enable makes UFW write its full user*.rules before it loads
        // them (the package's user6.rules would be loaded as it is, then rewritten: the two would
        // differ until `ufw reload`, which hostreach would rightly report).
        u.run(&["ufw", "allow", "22/tcp"]);
        u.run(&["ufw", "--force", "enable"]);
        u
    }
    fn run_with(&self, ns: &[&str], cmd: &[&str]) -> String {
        let out = Command::new("nsenter").args(["-t", &self.pid]).args(ns).arg("--").args(cmd).stdin(Stdio::null()).output().expect("nsenter");
        assert!(out.status.success(), "{cmd:?} in the UFW namespace: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
    /// A command in the private mount namespace only.
    fn run_m(&self, cmd: &[&str]) -> String {
        self.run_with(&["-m"], cmd)
    }
    /// A command in the private mount namespace and the throwaway network namespace.
    fn run(&self, cmd: &[&str]) -> String {
        self.run_with(&["-m", "-n"], cmd)
    }
    fn ns_args(&self) -> [&str; 4] {
        ["-t", &self.pid, "-m", "-n"]
    }
}

impl Drop for UfwInNs {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
        let _ = std::fs::remove_dir_all(&self.etc);
    }
}

fn root_firewall_and_ufw_files() -> String {
    let mut s = String::new();
    for tool in ["iptables-save", "ip6tables-save"] {
        let out = Command::new(tool).output().expect(tool);
        s.push_str(&normalize_iptables_save(&String::from_utf8_lossy(&out.stdout)));
    }
    for f in ["/etc/default/ufw", "/etc/ufw/ufw.conf", "/etc/ufw/user.rules", "/etc/ufw/user6.rules"] {
        s.push_str(&std::fs::read_to_string(f).unwrap_or_default());
    }
    s
}

#[test]
fn ipv6_through_ufw_enabled_in_a_throwaway_namespace() {
    let lab = Lab::get();
    let before = root_firewall_and_ufw_files();
    let port = lab.free_port();
    let p = port.to_string();
    let ns = NsPair::new("ufw");
    let _svc = lab.listener_in(&ns.host_path(), Proto::Tcp, "::", port, Reply::Banner);
    let ufw = UfwInNs::enable(&ns);
    let ns_args = ufw.ns_args();
    // deny incoming: ip6tables' INPUT policy, through UFW's ufw6-* chains; the source is DEFAULT_INPUT_POLICY
    let run = explain_in(&ns_args, CLIENT6, HOST6, port, true);
    run.assert_code(1);
    assert_json_subset(
        run.json(),
        &json!({"decision": "drop", "family": "ip6", "table": "filter", "chain": "INPUT", "rule": "-P INPUT DROP", "policy": true, "manager": "ufw",
                "rule_source": {"file": "/etc/default/ufw", "setting": "DEFAULT_INPUT_POLICY", "text": "DEFAULT_INPUT_POLICY=\"DROP\""},
                "ufw": {"ipv6": true, "enabled": true, "default_input_policy": "DROP", "in_sync": true, "read_from": "/etc/default/ufw, /etc/ufw"}}),
    );
    assert!(run.json()["rule_source"]["summary"].as_str().unwrap().starts_with("DEFAULT_INPUT_POLICY=\"DROP\" in /etc/default/ufw (line "), "{run}");
    assert!(run.json()["rule_source"].get("read_from").is_none(), "live files: {run}");
    assert!(run.json()["walk"].as_array().unwrap().iter().any(|s| s["chain"] == "ufw6-before-input"), "{run}");
    assert_eq!(fix_commands(&run), vec![
        format!("sudo ufw allow in on hrbr6 to any port {port} proto tcp"),
        format!("# or, for the whole network: sudo ufw allow from {NET6} to any port {port} proto tcp"),
    ]);
    let summary = run.json()["fixes"][0]["summary"].as_str().unwrap();
    assert!(summary.contains("ufw6-user-input") && summary.contains("DEFAULT_FORWARD_POLICY"), "{summary}");
    assert_eq!(run.json()["fixes"][0]["verified"], true, "{run}");
    assert_eq!(ns.probe(HOST6, port), Probe::TimedOut);
    // the fix for real, inside the namespaces: user6.rules gets the rule, and it decides
    ufw.run(&["ufw", "allow", "in", "on", "hrbr6", "to", "any", "port", &p, "proto", "tcp"]);
    let run = explain_in(&ns_args, CLIENT6, HOST6, port, true);
    run.assert_code(0);
    assert_json_subset(
        run.json(),
        &json!({"decision": "accept", "family": "ip6", "chain": "ufw6-user-input", "manager": "ufw",
                "rule": format!("-A ufw6-user-input -i hrbr6 -p tcp -m tcp --dport {port} -j ACCEPT"),
                "rule_source": {"file": "/etc/ufw/user6.rules", "ufw_command": format!("ufw allow in on hrbr6 to any port {port} proto tcp"),
                                "text": format!("-A ufw6-user-input -i hrbr6 -p tcp --dport {port} -j ACCEPT")},
                "ufw": {"in_sync": true}}),
    );
    assert!(matches!(ns.probe(HOST6, port), Probe::Connected(_)));
    // text output says where the rule comes from
    let text = explain_in(&ns_args, CLIENT6, HOST6, port, false);
    assert!(text.stdout.contains("configured in: /etc/ufw/user6.rules line ") && text.stdout.contains(&format!("(added by `ufw allow in on hrbr6 to any port {port} proto tcp`)")), "{text}");
    // user6.rules edited without a reload: the live rules and the files disagree, and it is said
    let user6 = ufw.etc.join("ufw/user6.rules");
    let edited = std::fs::read_to_string(&user6).unwrap().replace(
        "### END RULES ###",
        &format!("### tuple ### deny tcp {port} ::/0 any ::/0 in_hrbr6\n-A ufw6-user-input -i hrbr6 -p tcp --dport {port} -j DROP\n\n### END RULES ###"),
    );
    std::fs::write(&user6, edited).unwrap();
    let run = explain_in(&ns_args, CLIENT6, HOST6, port, true);
    run.assert_code(0);
    assert_json_subset(run.json(), &json!({"ufw": {"in_sync": false}}));
    assert!(
        run.json()["notes"].as_array().unwrap().iter().any(|n| {
            let n = n.as_str().unwrap();
            n.starts_with("1 IPv6 rule in UFW's files is not in the live rules (/etc/ufw/user6.rules line ") && n.contains("sudo ufw reload")
        }),
        "{run}"
    );
    drop(ufw);
    drop(ns);
    assert_eq!(before, root_firewall_and_ufw_files(), "the machine's own firewall or UFW files changed");
}
