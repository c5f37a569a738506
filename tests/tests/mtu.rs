//! The MTU search for real: a remote namespace behind a router whose link to it has a smaller MTU, once
//! with the router's ICMP "fragmentation needed" passing (MTU_MISMATCH, a warning) and once dropped by
//! iptables in the router's namespace (MTU_BLACKHOLE). The path MTU reported must be the one configured.

#[path = "wire_lab/mod.rs"]
mod wire_lab;

use hostreach_labtests::*;
use wire_lab::*;

fn doctor_mtu(c: &Container, to: &str) -> Run {
    hostreach(&["doctor", "--container", &c.name, "--to", to, "--mtu", "--format", "json"])
}

#[test]
fn frag_needed_passing_is_a_mismatch_with_the_exact_path_mtu() {
    let lab = Lab::get();
    let remote = Remote::new(1400, false);
    let port = lab.free_port();
    let _svc = lab.listener_in(&remote.target.path, Proto::Tcp, "0.0.0.0", port, Reply::Echo);
    let web = lab.container("mtu-ok", &[]);
    let run = doctor_mtu(&web, &format!("{}:{port}", remote.target_ip));
    // The handshake works and PMTU discovery does its job: reachable, with a warning.
    run.assert_code(0);
    assert_eq!(run.verdict(), Some("OK"), "{run}");
    let f = findings(run.json(), "MTU_MISMATCH");
    assert_eq!(f.len(), 1, "{run}");
    assert_eq!(f[0]["severity"], "warning");
    let (mtu, probes) = mtu_found(f[0]).unwrap_or_else(|| panic!("no MTU evidence:\n{run}"));
    assert_eq!(mtu, 1400, "{run}");
    assert!(probes <= 12, "{probes} probes:\n{run}");
    let text = serde_json::to_string(f[0]).unwrap();
    assert!(text.contains("fragmentation-needed came back"), "{run}");
    // The TCP transfer with full-sized segments went through once the kernel learnt the path MTU.
    assert!(text.contains("all acknowledged"), "{run}");
    let cmds = fix_commands(f[0]);
    assert!(cmds.iter().any(|c| c == "{ \"mtu\": 1400 }"), "{cmds:?}");
    assert!(cmds.iter().any(|c| c.contains("com.docker.network.driver.mtu=1400")), "{cmds:?}");
}

#[test]
fn frag_needed_blocked_is_a_black_hole() {
    let lab = Lab::get();
    let remote = Remote::new(1400, true);
    let port = lab.free_port();
    let _svc = lab.listener_in(&remote.target.path, Proto::Tcp, "0.0.0.0", port, Reply::Echo);
    let web = lab.container("mtu-bh", &[]);
    let run = doctor_mtu(&web, &format!("{}:{port}", remote.target_ip));
    run.assert_code(1);
    assert_eq!(run.verdict(), Some("MTU_BLACKHOLE"), "{run}");
    let f = findings(run.json(), "MTU_BLACKHOLE");
    let (mtu, probes) = mtu_found(f[0]).unwrap_or_else(|| panic!("no MTU evidence:\n{run}"));
    assert_eq!(mtu, 1400, "{run}");
    assert!(probes <= 12, "{probes} probes:\n{run}");
    let text = serde_json::to_string(f[0]).unwrap();
    assert!(text.contains("no ICMP fragmentation-needed came back"), "{run}");
    // Large TCP segments are never acknowledged: the symptom users see.
    assert!(text.contains("were acknowledged in"), "{run}");
    assert!(fix_commands(f[0]).iter().any(|c| c.contains("tcp_mtu_probing=1")), "{run}");
    // The same container with its MTU lowered to the path's would not hit it: the search's answer is right.
    let ok = hostreach(&["doctor", "--container", &web.name, "--to", &format!("{}:{port}", remote.target_ip), "--format", "json"]);
    assert_eq!(ok.verdict(), Some("OK"), "without --mtu and without a smaller MTU on the host's side, doctor does not search:\n{ok}");
}

#[test]
fn a_smaller_egress_mtu_on_the_host_triggers_the_search_by_itself() {
    let lab = Lab::get();
    let remote = Remote::new(1500, false);
    // The host's own link to the router gets the small MTU: the path shows it, doctor searches unasked.
    wire_lab::in_lab(&format!("ip link set {} mtu 1420", remote.lab_if));
    let port = lab.free_port();
    let _svc = lab.listener_in(&remote.target.path, Proto::Tcp, "0.0.0.0", port, Reply::Echo);
    let web = lab.container("mtu-auto", &[]);
    let path = hostreach(&["path", "--container", &web.name, "--to", &format!("{}:{port}", remote.target_ip), "--format", "json"]);
    path.assert_code(0);
    let egress = path.json()["hops"].as_array().unwrap().iter().find(|h| h["hop"] == "host-egress").cloned().unwrap_or_else(|| panic!("{path}"));
    assert_eq!(egress["name"], remote.lab_if.as_str(), "{path}");
    assert_eq!(egress["mtu"], 1420, "{path}");
    assert_eq!(path.json()["mtu"]["mismatch"], true, "{path}");
    assert_eq!(findings(path.json(), "MTU_MISMATCH").len(), 1, "{path}");
    let run = hostreach(&["doctor", "--container", &web.name, "--to", &format!("{}:{port}", remote.target_ip), "--format", "json"]);
    run.assert_code(0);
    let f = findings(run.json(), "MTU_MISMATCH");
    assert_eq!(f.len(), 1, "{run}");
    assert_eq!(mtu_found(f[0]).map(|m| m.0), Some(1420), "{run}");
}
