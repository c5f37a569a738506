//! The lab and its harness, tested against themselves: if these fail, every other lab test
//! would fail for reasons that have nothing to do with hostreach.

use std::time::{Duration, Instant};

use hostreach_labtests::*;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

#[test]
fn container_starts_on_the_default_bridge() {
    let lab = Lab::get();
    let c = lab.container("sanity-bridge", &[]);
    assert!(c.ip.starts_with("172.17."), "container ip {:?}", c.ip);
    assert_eq!(c.gateway, BRIDGE_GW);
    assert!(c.pid > 0);
    assert_eq!(c.network_mode, "default");
    assert_eq!(c.inspect["Config"]["Image"], IMAGE);
    // its resolver is the lab's dnsmasq, never the machine's
    let resolv = text(&c.exec(&["cat", "/etc/resolv.conf"]).stdout);
    assert!(resolv.contains(&format!("nameserver {DNS_IP}")), "{resolv}");
    assert_eq!(resolv.matches("nameserver").count(), 1, "{resolv}");
    // removed on drop
    let id = c.id.clone();
    drop(c);
    assert!(!lab.docker(&["container", "inspect", &id]).status.success(), "container {id} still exists");
}

#[test]
fn listener_on_the_bridge_is_reachable_from_a_container() {
    let lab = Lab::get();
    let port = lab.free_port();
    let l = lab.listener(Proto::Tcp, BRIDGE_GW, port);
    let c = lab.container("sanity-nc", &[]);
    // busybox nc (Debian's has no -z): the banner proves data came back
    let out = c.sh(&format!("nc -w 2 {BRIDGE_GW} {port} </dev/null"));
    assert!(out.status.success(), "nc: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), l.banner());
    assert_eq!(c.probe(Proto::Tcp, BRIDGE_GW, port, Duration::from_secs(2)), Probe::Connected(format!("{}\n", l.banner())));
    // the listener really is gone after drop
    drop(l);
    assert_eq!(c.probe(Proto::Tcp, BRIDGE_GW, port, Duration::from_secs(2)), Probe::Refused);
}

#[test]
fn loopback_only_service_is_refused_at_once_from_a_container() {
    let lab = Lab::get();
    let port = lab.free_port();
    let _redis = lab.spawn_listening(
        Proto::Tcp,
        port,
        &["redis-server", "--bind", "127.0.0.1", "--port", &port.to_string(), "--save", "", "--daemonize", "no"],
    );
    assert!(lab.sh_ok(&format!("redis-cli -h 127.0.0.1 -p {port} ping")).contains("PONG"));
    let c = lab.container("sanity-lo", &[]);
    let t = Instant::now();
    let out = c.sh(&format!("nc -w 2 {BRIDGE_GW} {port} </dev/null"));
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("Connection refused"), "{}", text(&out.stderr));
    assert!(t.elapsed() < Duration::from_secs(2), "refusal took {:?}", t.elapsed());
}

#[test]
fn udp_listener_answers() {
    let lab = Lab::get();
    let port = lab.free_port();
    let l = lab.listener(Proto::Udp, "0.0.0.0", port);
    let c = lab.container("sanity-udp", &[]);
    assert_eq!(c.probe(Proto::Udp, BRIDGE_GW, port, Duration::from_secs(2)), Probe::Connected(format!("{}\n", l.banner())));
}

#[test]
fn listener_inside_a_container_is_reachable_from_the_lab_host() {
    let lab = Lab::get();
    let c = lab.container("sanity-in", &[]);
    let port = lab.free_port();
    let l = lab.listener_in_container(&c, Proto::Tcp, "0.0.0.0", port);
    let got = lab.sh_ok(&format!("busybox nc -w 2 {} {port} </dev/null", c.ip));
    assert_eq!(got, l.banner());
    // and it is not listening on the lab host itself
    assert!(!lab.port_in_use(port));
}

#[test]
fn iptables_rule_guard_drops_then_removes_its_rule() {
    let lab = Lab::get();
    let port = lab.free_port();
    let p = port.to_string();
    let _l = lab.listener(Proto::Tcp, "0.0.0.0", port);
    let c = lab.container("sanity-fw", &[]);
    let rule_line = format!("-A INPUT -i docker0 -p tcp -m tcp --dport {port} -j DROP");
    {
        let _rule = lab.iptables(&["-I", "INPUT", "-i", "docker0", "-p", "tcp", "--dport", &p, "-j", "DROP"]);
        let rules = lab.sh_ok("iptables -S INPUT");
        assert!(rules.lines().any(|l| l == rule_line), "rule missing:\n{rules}");
        assert_eq!(c.probe(Proto::Tcp, BRIDGE_GW, port, Duration::from_millis(1500)), Probe::TimedOut);
    }
    let rules = lab.sh_ok("iptables -S INPUT");
    assert!(!rules.contains(&format!("--dport {port} ")), "rule left behind:\n{rules}");
    assert!(matches!(c.probe(Proto::Tcp, BRIDGE_GW, port, Duration::from_secs(2)), Probe::Connected(_)));
}

#[test]
#[should_panic(expected = "rules must name a port")]
fn iptables_guard_refuses_unscoped_rules() {
    let _ = Lab::get().iptables(&["-I", "INPUT", "-i", "docker0", "-j", "DROP"]);
}

#[test]
fn nft_table_guard_creates_and_deletes() {
    let lab = Lab::get();
    let port = lab.free_port();
    let t = lab.nft("inet", "sanity", &format!("chain input {{ type filter hook input priority 0; iifname \"docker0\" tcp dport {port} reject with tcp reset; }}"));
    let listing = lab.sh_ok(&format!("nft list table inet {}", t.name));
    assert!(listing.contains(&format!("tcp dport {port}")), "{listing}");
    let name = t.name.clone();
    drop(t);
    assert!(!lab.sh(&format!("nft list table inet {name}")).status.success());
}

#[test]
fn lab_dns_answers_its_names_and_nothing_else() {
    let lab = Lab::get();
    let c = lab.container("sanity-dns", &[]);
    let out = c.sh(&format!("nslookup {DNS_DB_NAME}"));
    assert!(text(&out.stdout).contains(&format!("Address: {LAN_IP}")), "{}{}", text(&out.stdout), text(&out.stderr));
    let out = c.sh(&format!("nslookup {DNS_HOST_NAME}"));
    assert!(text(&out.stdout).contains(&format!("Address: {BRIDGE_GW}")), "{}", text(&out.stdout));
    let t = Instant::now();
    let out = c.sh("nslookup nosuch.example.com");
    assert!(!out.status.success());
    assert!(text(&out.stdout).contains("NXDOMAIN"), "{}", text(&out.stdout));
    assert!(t.elapsed() < Duration::from_secs(2), "unknown name took {:?}", t.elapsed());
}

#[test]
fn lab_has_no_route_off_the_machine() {
    let lab = Lab::get();
    let routes = lab.sh_ok("ip route show default");
    assert!(routes.is_empty(), "the lab host has a default route: {routes}");
    let c = lab.container("sanity-route", &[]);
    // TEST-NET-1 (never routed): the lab host answers "network unreachable" at once
    assert!(!matches!(c.probe(Proto::Tcp, "192.0.2.99", 80, Duration::from_secs(2)), Probe::Connected(_)));
}

#[test]
fn machine_firewall_is_untouched_by_the_lab() {
    let lab = Lab::get();
    // the lab's own rules exist in the lab namespace...
    assert!(lab.sh_ok("iptables-save").contains("DOCKER"));
    // ...and the machine's namespace (where this test process runs) is as before the lab
    let (before, now) = lab.root_iptables_before_and_now();
    assert_eq!(now, before, "iptables-save in the machine's namespace changed since lab/up.sh");
    for word in ["DOCKER", "docker0", "172.17.", "198.18.", "hrt_"] {
        assert!(!now.contains(word), "the machine's iptables mention {word}:\n{now}");
    }
    let nft_before = std::fs::read_to_string(format!("{RUN_DIR}/root-nft.before")).expect("root-nft.before");
    let nft_now = text(&std::process::Command::new("nft").args(["list", "ruleset"]).output().unwrap().stdout);
    assert_eq!(nft_now, nft_before, "nft ruleset of the machine's namespace changed");
    let links = text(&std::process::Command::new("ip").args(["-br", "link"]).output().unwrap().stdout);
    for ifname in ["docker0", "hrlan0", "hrlan1"] {
        assert!(!links.lines().any(|l| l.starts_with(ifname)), "{ifname} in the machine's namespace:\n{links}");
    }
}

#[test]
fn free_ports_are_unique_and_free() {
    let lab = Lab::get();
    let ports: Vec<u16> = (0..50).map(|_| lab.free_port()).collect();
    let mut sorted = ports.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), ports.len());
    assert!(ports.iter().all(|p| (20_000..30_000).contains(p) && !lab.port_in_use(*p)));
}
