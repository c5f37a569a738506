//! hostreach changes nothing on the host: iptables-save, nft list ruleset, tracefs instances and
//! links are the same before and after doctor runs, including one interrupted by SIGINT mid-probe.
//! One test in its own binary, so no other test changes the lab while it compares.

use hostreach_labtests::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn tracefs_instances() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/sys/kernel/tracing/instances")
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn snapshot(lab: &Lab) -> Vec<(String, String)> {
    let mut s = vec![
        ("lab iptables-save".to_string(), normalize_iptables_save(&lab.sh_ok("iptables-save"))),
        ("lab ip6tables-save".to_string(), normalize_iptables_save(&lab.sh_ok("ip6tables-save"))),
        ("lab nft list ruleset".to_string(), lab.sh_ok("nft list ruleset | grep -v 'counter packets'")),
        ("lab links".to_string(), lab.sh_ok("ip -o link show | sed 's/ state [A-Z]*//'")),
        ("lab addresses".to_string(), lab.sh_ok("ip -o addr show")),
        ("lab routes".to_string(), lab.sh_ok("ip route show table all")),
        ("tracefs instances".to_string(), tracefs_instances().join("\n")),
        ("tracefs global kfree_skb enable".to_string(), std::fs::read_to_string("/sys/kernel/tracing/events/skb/kfree_skb/enable").unwrap_or_default()),
    ];
    let (_, root_now) = lab.root_iptables_before_and_now();
    s.push(("root iptables-save".to_string(), root_now));
    let root_links = Command::new("ip").args(["-o", "link", "show"]).output().unwrap();
    s.push(("root links".to_string(), String::from_utf8_lossy(&root_links.stdout).replace(" state UP", "").replace(" state DOWN", "")));
    s
}

#[test]
fn doctor_changes_nothing_even_when_interrupted() {
    let lab = Lab::get();
    let port = lab.free_port();
    let p = port.to_string();
    let drop_port = lab.free_port();
    let dp = drop_port.to_string();
    let _svc = lab.listener(Proto::Tcp, "127.0.0.1", port);
    let _svc2 = lab.listener(Proto::Tcp, "0.0.0.0", drop_port);
    let _rule = lab.iptables(&["-I", "INPUT", "-i", "docker0", "-p", "tcp", "--dport", &dp, "-j", "DROP"]);
    let web = lab.container("readonly", &[]);
    let plain = lab.container("readonly-noalias", &[]);

    // The containers' veths were just created: their IPv6 link-local addresses finish duplicate
    // address detection (and get their local route) about a second later, on the kernel's own
    // schedule. Wait for that before the first snapshot, so it is not taken for a change.
    let settle = Instant::now();
    while !lab.sh_ok("ip -o addr show tentative").trim().is_empty() && settle.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let before = snapshot(lab);
    assert!(!tracefs_instances().iter().any(|i| i.starts_with("hostreach-")), "a stale instance before the test: {:?}", tracefs_instances());

    for (who, to) in [
        (&web.name, format!("host:{p}")),
        (&web.name, format!("host:{dp}")),
        (&plain.name, format!("host.docker.internal:{p}")),
        (&web.name, format!("localhost:{p}")),
        (&web.name, format!("{LAN_IP}:{p}")),
    ] {
        let run = hostreach(&["doctor", "--container", who, "--to", &to, "--format", "json"]);
        assert!(run.code == 0 || run.code == 1, "{run}");
    }

    // Interrupted: a target no one answers for (an unowned address on the lab LAN: ARP never
    // resolves), so the probe waits with its tracefs instance in place until SIGINT comes. A
    // FAILED neighbour entry left by an earlier run would make connect() fail at once
    // (EHOSTUNREACH) and doctor finish before the signal: forget it first.
    lab.sh_ok("ip neigh flush to 198.18.0.99 2>/dev/null; true");
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net={NETNS_PATH}"))
        .arg(hostreach_bin())
        .args(["doctor", "--container", &web.name, "--to", "198.18.0.99:80", "--timeout", "20s", "--format", "json"])
        .env("DOCKER_HOST", DOCKER_HOST)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = None;
    while Instant::now() < deadline {
        if let Some(i) = tracefs_instances().into_iter().find(|i| i.starts_with("hostreach-")) {
            seen = Some(i);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let seen = seen.expect("the probe's tracefs instance never appeared");
    std::thread::sleep(Duration::from_millis(200));
    // nsenter execs hostreach, so the child's pid is hostreach's.
    nix_kill(child.id(), 2);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "SIGINT exits 130: {}", String::from_utf8_lossy(&out.stderr));
    assert!(!tracefs_instances().contains(&seen), "instance {seen} left behind after SIGINT");

    let after = snapshot(lab);
    for ((name, b), (_, a)) in before.iter().zip(after.iter()) {
        assert_eq!(b, a, "{name} changed");
    }
}

fn nix_kill(pid: u32, sig: i32) {
    let ok = Command::new("kill").args([&format!("-{sig}"), &pid.to_string()]).status().unwrap();
    assert!(ok.success());
}
