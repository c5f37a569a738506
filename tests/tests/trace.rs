//! `hostreach trace` on the lab: both capture points see the probe's packets, the summary says where the
//! flow stopped, and tshark reads both sides of the written pcapng.

use hostreach_labtests::*;
use serde_json::Value;
use std::process::Command;

fn point<'a>(run: &'a Run, hop: &str) -> &'a Value {
    run.json()["points"].as_array().unwrap().iter().find(|p| p["hop"] == hop).unwrap_or_else(|| panic!("no {hop} point:\n{run}"))
}

fn tshark_interfaces(file: &str) -> Vec<String> {
    let out = Command::new("tshark").args(["-r", file, "-T", "fields", "-e", "frame.interface_name"]).output().expect("tshark");
    assert!(out.status.success(), "tshark: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

#[test]
fn refused_both_sides_see_syn_and_rst_and_tshark_reads_both() {
    let lab = Lab::get();
    let port = lab.free_port();
    let _svc = lab.listener(Proto::Tcp, "127.0.0.1", port);
    let web = lab.container("trace-rst", &[]);
    let file = std::env::temp_dir().join(format!("hostreach-trace-{}-{port}.pcapng", std::process::id()));
    let f = file.to_str().unwrap();
    let run = hostreach(&["trace", "--container", &web.name, "--to", &format!("host:{port}"), "--write", f, "--format", "json"]);
    run.assert_code(1);
    assert_eq!(run.json()["verdict"]["code"], "LOOPBACK_ONLY_BIND", "{run}");
    let c = point(&run, "container-eth0");
    let h = point(&run, "host-veth");
    assert_eq!(c["interface"], "eth0");
    for p in [c, h] {
        assert_eq!(p["seen"]["request"], 1, "{run}");
        assert_eq!(p["seen"]["reply"], 0, "{run}");
        assert_eq!(p["seen"]["rst"], 1, "{run}");
        assert_eq!(p["seen"]["rst_directions"][0], "to-container", "{run}");
    }
    assert!(run.json()["drops"].as_array().unwrap().iter().any(|d| d["reason"] == "NO_SOCKET" && d["attributed"] == true), "{run}");
    let veth = h["interface"].as_str().unwrap().to_string();
    let names = tshark_interfaces(f);
    let _ = std::fs::remove_file(&file);
    assert_eq!(names.len(), 4, "SYN and RST on each side: {names:?}");
    assert!(names.iter().any(|n| n == "eth0") && names.contains(&veth), "{names:?}");
}

#[test]
fn firewall_drop_syn_reaches_the_host_and_nothing_comes_back() {
    let lab = Lab::get();
    let port = lab.free_port();
    let p = port.to_string();
    let _svc = lab.listener(Proto::Tcp, "0.0.0.0", port);
    let _rule = lab.iptables(&["-I", "INPUT", "-i", "docker0", "-p", "tcp", "--dport", &p, "-j", "DROP"]);
    let web = lab.container("trace-drop", &[]);
    let run = hostreach(&["trace", "--container", &web.name, "--to", &format!("host:{port}"), "--format", "json"]);
    run.assert_code(1);
    assert_eq!(run.json()["verdict"]["code"], "FIREWALL_DROP", "{run}");
    assert!(point(&run, "container-eth0")["seen"]["request"].as_u64().unwrap() >= 1, "{run}");
    assert!(point(&run, "host-veth")["seen"]["request"].as_u64().unwrap() >= 1, "{run}");
    assert_eq!(point(&run, "host-veth")["seen"]["reply"], 0, "{run}");
    let summary = run.json()["summary"].as_str().unwrap();
    assert!(summary.contains("nothing came back") && summary.contains("NETFILTER_DROP"), "{summary}");
}

#[test]
fn ok_sees_the_handshake_on_both_sides_text_output() {
    let lab = Lab::get();
    let port = lab.free_port();
    let _svc = lab.listener(Proto::Tcp, "0.0.0.0", port);
    let web = lab.container("trace-ok", &[]);
    let run = hostreach(&["trace", "--container", &web.name, "--to", &format!("host:{port}")]);
    run.assert_code(0);
    assert!(run.stdout.contains("SYN ✓ · SYN-ACK ✓"), "{run}");
    assert!(run.stdout.contains("the reply came back to eth0"), "{run}");
    let lines = run.stdout.lines().filter(|l| l.contains("TCP [SYN, ACK]")).count();
    assert_eq!(lines, 2, "the SYN-ACK once on each side:\n{run}");
}
