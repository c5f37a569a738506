//! Pressure verdicts built for real in the lab (issue 5): a container whose ephemeral port range
//! is narrowed to four ports and holds four connections to a host service; a host listener with a
//! backlog of 1 that never accepts, flooded from a container. The conntrack table is in
//! tests/tests/conntrack.rs (it changes a global sysctl, so it lives in a binary of its own).

use hostreach_labtests::*;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn doctor(container: &str, to: &str, extra: &[&str]) -> Run {
    let mut args = vec!["doctor", "--container", container, "--to", to, "--format", "json"];
    args.extend_from_slice(extra);
    hostreach(&args)
}

fn finding<'a>(run: &'a Run, code: &str) -> &'a Value {
    run.json()["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["code"] == code)
        .unwrap_or_else(|| panic!("no {code} finding:\n{run}"))
}

fn commands(f: &Value) -> Vec<String> {
    f["fix"].as_array().unwrap().iter().flat_map(|x| x["commands"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string())).collect()
}

/// Waits until `cond` holds, or panics with `what`.
fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Established TCP sockets in a namespace towards `dst` (ss is fine in tests).
fn established_to(netns: &str, dst: &str) -> usize {
    let out = std::process::Command::new("nsenter")
        .args([&format!("--net={netns}"), "ss", "-Htn", "state", "established", "dst", dst])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.trim().is_empty()).count()
}

/// A container whose port range is `range` and which holds `n` connections to the host service.
fn holder(lab: &Lab, range: &str, port: u16, n: usize) -> Container {
    let sysctl = format!("net.ipv4.ip_local_port_range={range}");
    let script = format!("for i in $(seq 1 {n}); do sleep 3600 | nc {BRIDGE_GW} {port} & done; wait");
    let c = lab.container_cmd("ports", &["--sysctl", &sysctl], &["sh", "-c", &script]);
    let dst = format!("{BRIDGE_GW}:{port}");
    wait_for(&format!("{n} connections from {}", c.name), Duration::from_secs(10), || established_to(&c.netns_path(), &dst) == n);
    c
}

#[test]
fn ephemeral_ports_exhausted_with_four_of_four_in_use() {
    let lab = Lab::get();
    let port = lab.free_port();
    let _svc = lab.echo_listener(Proto::Tcp, "0.0.0.0", port);
    let c = holder(lab, "40000 40003", port, 4);
    let run = doctor(&c.name, &format!("host:{port}"), &[]);
    run.assert_code(1);
    assert_json_subset(
        run.json(),
        &json!({
            "verdict": {"code": "EPHEMERAL_PORTS_EXHAUSTED", "hop": "container-eth0"},
            "findings": [{
                "code": "EPHEMERAL_PORTS_EXHAUSTED",
                "severity": "error",
                "evidence": [
                    {"kind": "probe", "outcome": "address-not-available", "netns": "container"},
                    {"kind": "pressure", "resource": "ephemeral-ports", "namespace": "container", "used": 4, "limit": 4},
                    {"kind": "pressure", "resource": "time-wait", "used": 0},
                    {"kind": "sysctl", "name": "net.ipv4.ip_local_port_range", "value": "40000 40003", "namespace": "container"},
                    {"kind": "sysctl", "name": "net.ipv4.tcp_tw_reuse"}
                ]
            }]
        }),
    );
    let v = run.json()["verdict"]["summary"].as_str().unwrap();
    assert!(v.contains("4 of 4 usable"), "{run}");
    let cmds = commands(finding(&run, "EPHEMERAL_PORTS_EXHAUSTED"));
    assert!(cmds.iter().any(|c| c.starts_with("docker run --sysctl net.ipv4.ip_local_port_range=\"32768 60999\"")), "{cmds:?}");
    assert!(cmds.iter().any(|c| c.trim() == "net.ipv4.ip_local_port_range: \"32768 60999\""), "{cmds:?}");
    // The kernel agrees: a fifth connection from the container fails the same way.
    let out = c.sh(&format!("nc -w 2 {BRIDGE_GW} {port} </dev/null"));
    assert!(!out.status.success(), "a fifth connection went through: {out:?}");
}

#[test]
fn ephemeral_ports_at_eighty_percent_warn_while_the_probe_connects() {
    let lab = Lab::get();
    let port = lab.free_port();
    let _svc = lab.echo_listener(Proto::Tcp, "0.0.0.0", port);
    // An even-sized range: connect() scans (high - low + 1) & ~1 ports from a perturbed offset, so
    // with an odd-sized range one port is skipped on each attempt and the last free one may be missed.
    let c = holder(lab, "40000 40009", port, 8);
    let run = doctor(&c.name, &format!("host:{port}"), &[]);
    run.assert_code(0);
    assert_eq!(run.verdict(), Some("OK"), "{run}");
    let w = finding(&run, "EPHEMERAL_PORTS_EXHAUSTED");
    assert_json_subset(
        w,
        &json!({"severity": "warning", "evidence": [{"kind": "pressure", "resource": "ephemeral-ports", "used": 8, "limit": 10}]}),
    );
    assert!(w["summary"].as_str().unwrap().starts_with("8 of 10 usable ephemeral ports (80%)"), "{run}");
}

#[test]
fn listen_backlog_overflow_from_a_listener_that_never_accepts() {
    let lab = Lab::get();
    let port = lab.free_port();
    let code = format!(
        "import socket,time\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('0.0.0.0',{port}))\ns.listen(1)\ntime.sleep(3600)\n"
    );
    let _svc = lab.spawn_listening(Proto::Tcp, port, &["python3", "-c", &code]);
    // Six clients: two fill the queue (backlog 1 holds 2), the others keep retrying their SYNs.
    let flood = lab.container_cmd(
        "flood",
        &[],
        &["sh", "-c", &format!("for i in 1 2 3 4 5 6; do sleep 3600 | nc {BRIDGE_GW} {port} & done; wait")],
    );
    let queue = || -> (u32, u32) {
        let out = lab.sh_ok(&format!("ss -Hltn 'sport = :{port}'"));
        let f: Vec<&str> = out.split_whitespace().collect();
        (f.get(1).and_then(|s| s.parse().ok()).unwrap_or(0), f.get(2).and_then(|s| s.parse().ok()).unwrap_or(0))
    };
    wait_for("a full accept queue", Duration::from_secs(10), || queue() == (2, 1));
    let run = doctor(&flood.name, &format!("host:{port}"), &["--timeout", "2s"]);
    run.assert_code(1);
    assert_json_subset(
        run.json(),
        &json!({
            "verdict": {"code": "LISTEN_BACKLOG_OVERFLOW", "hop": "host-socket"},
            "findings": [{
                "code": "LISTEN_BACKLOG_OVERFLOW",
                "evidence": [
                    {"kind": "probe", "outcome": "no-answer"},
                    {"kind": "socket", "local": format!("0.0.0.0:{port}"), "state": "LISTEN", "process": "python3"},
                    {"kind": "pressure", "resource": "accept-queue", "namespace": "host", "used": 2, "limit": 1},
                    {"kind": "pressure", "resource": "listen-overflows", "namespace": "host"},
                    {"kind": "sysctl", "name": "net.core.somaxconn", "namespace": "host"}
                ]
            }]
        }),
    );
    let f = finding(&run, "LISTEN_BACKLOG_OVERFLOW");
    let moved = f["evidence"].as_array().unwrap().iter().find(|e| e["resource"] == "listen-overflows").unwrap()["used"].as_u64().unwrap();
    assert!(moved >= 1, "the probe's own SYN overflowed, so ListenOverflows moved:\n{run}");
    assert!(commands(f).contains(&"sock.listen(1024)".to_string()), "{run}");
    assert!(!run.stdout.contains("FIREWALL"), "{run}");
}
