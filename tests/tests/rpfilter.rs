//! Reverse-path filtering for real: strict rp_filter on a user network's bridge, and a host route that sends
//! the container's address elsewhere; the kernel drops the SYN with IP_RPFILTER. Changes sysctls in the lab,
//! so every test here holds `Lab::exclusive()` (this binary is its own process).

#[path = "wire_lab/mod.rs"]
mod wire_lab;

use hostreach_labtests::*;
use wire_lab::*;

#[test]
fn rp_filter_drop_is_named_with_the_route_and_the_sysctl() {
    let lab = Lab::get();
    let _x = lab.exclusive();
    let net = lab.network("rpf", &[]);
    let web = lab.container("rpf", &["--network", &net.name]);
    let port = lab.free_port();
    let _svc = lab.listener(Proto::Tcp, "0.0.0.0", port);
    let elsewhere = LabVeth::new("hr");
    in_lab(&format!("sysctl -qw net.ipv4.conf.{}.rp_filter=1", net.bridge));
    in_lab(&format!("ip route add {}/32 dev {}", web.ip, elsewhere.a));
    let to = format!("{}:{port}", net.gateway);

    // 1. The container has no ARP entry for its gateway yet: rp_filter refuses the ARP request itself, no IP
    //    packet leaves, and the verdict rests on the sysctl and the host's route back.
    let run = hostreach(&["doctor", "--container", &web.name, "--to", &to, "--timeout", "2s", "--format", "json"]);
    run.assert_code(1);
    assert_eq!(run.verdict(), Some("RP_FILTER_DROP"), "{run}");
    let f = &findings(run.json(), "RP_FILTER_DROP")[0];
    assert!(f["evidence"].as_array().unwrap().iter().any(|e| e["kind"] == "missing" && e["why"].as_str().unwrap().contains("ARP")), "{run}");

    // 2. With the gateway's address already resolved (as when the route appears while the container runs),
    //    the SYN reaches the host and the kernel reports IP_RPFILTER for it.
    let mac = in_lab(&format!("ip -o link show {} | awk '{{for(i=1;i<=NF;i++) if($i==\"link/ether\") print $(i+1)}}'", net.bridge));
    assert_eq!(mac.len(), 17, "{mac}");
    in_ns(&web.netns_path(), &format!("ip neigh replace {} lladdr {mac} dev eth0 nud permanent", net.gateway));
    let run = hostreach(&["doctor", "--container", &web.name, "--to", &to, "--timeout", "2s", "--format", "json"]);
    run.assert_code(1);
    assert_eq!(run.verdict(), Some("RP_FILTER_DROP"), "{run}");
    let f = &findings(run.json(), "RP_FILTER_DROP")[0];
    let ev = f["evidence"].as_array().unwrap();
    assert!(ev.iter().any(|e| e["kind"] == "drop-reason" && e["reason"] == "IP_RPFILTER"), "{run}");
    assert!(ev.iter().any(|e| e["kind"] == "sysctl" && e["name"] == format!("net.ipv4.conf.{}.rp_filter", net.bridge) && e["value"] == "1"), "{run}");
    assert!(ev.iter().any(|e| e["kind"] == "route" && e["detail"].as_str().unwrap().contains(&format!("dev {}", elsewhere.a))), "{run}");
    let cmds = fix_commands(f);
    assert_eq!(cmds[0], format!("sudo ip route del {}/32 dev {}", web.ip, elsewhere.a), "{cmds:?}");
    assert!(cmds.iter().any(|c| c == &format!("sudo sysctl -w net.ipv4.conf.{}.rp_filter=2", net.bridge)), "{cmds:?}");
    // The first fix, for real.
    in_lab(&format!("ip route del {}/32 dev {}", web.ip, elsewhere.a));
    let ok = hostreach(&["doctor", "--container", &web.name, "--to", &to, "--format", "json"]);
    assert_eq!(ok.verdict(), Some("OK"), "{ok}");
}
