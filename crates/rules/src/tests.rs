//! Rules on recorded facts: one case per verdict, built as the lab sees them.

use super::*;
use hostreach_model::*;

fn link(index: u32, name: &str, kind: Option<&str>, master: Option<u32>, peer: Option<u32>, netnsid: Option<i32>) -> LinkFact {
    LinkFact {
        index,
        name: name.into(),
        kind: kind.map(str::to_string),
        mtu: Some(1500),
        up: true,
        lower_up: true,
        mac: None,
        master,
        peer_index: peer,
        peer_netnsid: netnsid,
    }
}

fn addr(index: u32, a: &str, len: u8) -> AddrFact {
    AddrFact { index, address: a.parse().unwrap(), prefix_len: len }
}

fn listener(a: &str, port: u16, name: &str) -> SocketFact {
    SocketFact {
        proto: Proto::Tcp,
        local_address: a.parse().unwrap(),
        local_port: port,
        remote_address: None,
        remote_port: None,
        state: "LISTEN".into(),
        v6only: if a.contains(':') { Some(true) } else { None },
        bound_device: None,
        inode: 7,
        uid: 0,
        recv_q: 0,
        send_q: 511,
        process: Some(std::sync::Arc::new(ProcessRef { pid: 4242, name: name.into(), cmdline: Some(name.into()) })),
    }
}

pub(crate) fn drop_ev(reason: &str, loc: &str, attributed: bool) -> DropEvent {
    DropEvent {
        reason: reason.into(),
        location: loc.into(),
        protocol: 2048,
        pid: 99,
        comm: "hostreach-probe".into(),
        cpu: 0,
        timestamp: 1.0,
        attributed,
        raw: format!("hostreach-probe-99 [000] ..s1. 1.0: kfree_skb: protocol=2048 location={loc} reason: {reason}"),
    }
}

fn probe(outcome: ProbeOutcome, dst: &str, by_drop: bool) -> ProbeResult {
    ProbeResult {
        proto: Proto::Tcp,
        destination: dst.parse().unwrap(),
        source: Some("172.17.0.2:40000".parse().unwrap()),
        outcome,
        errno: None,
        error: None,
        elapsed_ms: 3,
        timeout_ms: 3000,
        concluded_by_drop: by_drop,
        tid: Some(99),
    }
}

/// A busybox container `web` on the default bridge, as the lab makes it.
fn bridge_facts(target: &str) -> Facts {
    let t = Target::parse(target, Proto::Tcp).unwrap();
    let c = ContainerFacts {
        id: "abc123".into(),
        name: "web".into(),
        image: Some("hostreach-lab/busybox".into()),
        running: true,
        status: "running".into(),
        pid: Some(1000),
        network_mode_raw: "default".into(),
        network_mode: NetworkMode::Bridge,
        networks: vec![NetworkAttachment {
            name: "bridge".into(),
            network_id: "n1".into(),
            driver: Some("bridge".into()),
            ip: Some("172.17.0.2".parse().unwrap()),
            prefix_len: Some(16),
            gateway: Some("172.17.0.1".parse().unwrap()),
            ipv6: None,
            ipv6_gateway: None,
            mac: None,
            subnet: Some("172.17.0.0/16".into()),
            bridge: Some("docker0".into()),
        }],
        extra_hosts: vec![],
        dns: vec![],
        hosts: parse::hosts_file("127.0.0.1 localhost\n172.17.0.2 abc123\n"),
        resolv: None,
    };
    Facts {
        collector_version: "test".into(),
        daemon: None,
        subject: Subject::Container(Box::new(c)),
        subject_net: Some(NetnsFacts {
            inode: Some(2),
            links: vec![link(1, "lo", None, None, None, None), link(5, "eth0", Some("veth"), None, Some(6), Some(0))],
            addresses: vec![addr(1, "127.0.0.1", 8), addr(5, "172.17.0.2", 16)],
            routes: vec![RouteFact {
                destination: None,
                prefix_len: 0,
                gateway: Some("172.17.0.1".parse().unwrap()),
                oif: Some(5),
                table: 254,
                kind: "unicast".into(),
                preferred_source: None,
                mtu: None,
            }],
        }),
        host_net: Some(NetnsFacts {
            inode: Some(1),
            links: vec![
                link(1, "lo", None, None, None, None),
                link(3, "docker0", Some("bridge"), None, None, None),
                link(4, "hrlan0", Some("veth"), None, Some(2), Some(1)),
                link(6, "veth1a2b3c4", Some("veth"), Some(3), Some(5), Some(2)),
            ],
            addresses: vec![addr(1, "127.0.0.1", 8), addr(3, "172.17.0.1", 16), addr(4, "198.18.0.1", 24)],
            routes: vec![],
        }),
        host_sockets: vec![],
        resolution: None,
        target: Some(t),
        probe: None,
        drops: DropTrace { status: TraceStatus::Recorded, events: vec![] },
        sysctls: vec![],
        skipped: vec![],
        mtu: None,
        pressure: vec![],
        peers: vec![],
        firewall: None,
    }
}

fn literal(f: &mut Facts, a: &str) {
    let ip: std::net::IpAddr = a.parse().unwrap();
    f.resolution = Some(Resolution { name: None, address: Some(ip), addresses: vec![ip], source: ResolutionSource::Literal, dns_queries: vec![] });
}

fn codes(r: &Report) -> Vec<Code> {
    r.findings.iter().map(|f| f.code).collect()
}

#[test]
fn loopback_only_bind_on_redis() {
    let mut f = bridge_facts("host:6379");
    literal(&mut f, "172.17.0.1");
    f.host_sockets = vec![listener("127.0.0.1", 6379, "redis-server"), listener("::1", 6379, "redis-server")];
    f.probe = Some(probe(ProbeOutcome::Refused, "172.17.0.1:6379", false));
    f.drops.events = vec![drop_ev("NO_SOCKET", "tcp_v4_rcv+0x91/0x13f0", true)];
    let r = diagnose(&f);
    assert_eq!(r.verdict.code, Code::LoopbackOnlyBind);
    assert_eq!(r.verdict.hop, Some(Hop::HostSocket));
    let ev = &r.findings[0].evidence;
    assert!(ev.iter().any(|e| matches!(e, Evidence::DropReason { reason, .. } if reason == "NO_SOCKET")));
    assert!(ev.iter().any(|e| matches!(e, Evidence::Socket { local, pid: Some(4242), process: Some(p), .. } if local == "127.0.0.1:6379" && p == "redis-server")));
    let fixes: Vec<&String> = r.findings[0].fix.iter().flat_map(|x| &x.commands).collect();
    assert!(fixes.iter().any(|c| c.as_str() == "bind 127.0.0.1 -::1 172.17.0.1"), "{fixes:?}");
    assert!(fixes.iter().any(|c| c.starts_with("requirepass")));
    // The drawn path: eth0 -> veth -> docker0 -> INPUT -> socket, failing at the socket.
    let hops: Vec<(Hop, HopStatus)> = r.path.iter().map(|h| (h.hop, h.status)).collect();
    assert_eq!(
        hops,
        vec![
            (Hop::ContainerEth0, HopStatus::Passed),
            (Hop::HostVeth, HopStatus::Passed),
            (Hop::Bridge, HopStatus::Passed),
            (Hop::HostInput, HopStatus::Passed),
            (Hop::HostSocket, HopStatus::Failed)
        ]
    );
    assert_eq!(r.path[1].name, "veth1a2b3c4");
    assert_eq!(r.path[2].name, "docker0");
}

#[test]
fn loopback_only_bind_postgres_fix_names_subnet() {
    let mut f = bridge_facts("postgres://u:p@172.17.0.1/db");
    literal(&mut f, "172.17.0.1");
    f.host_sockets = vec![listener("127.0.0.1", 5432, "postgres")];
    f.probe = Some(probe(ProbeOutcome::Refused, "172.17.0.1:5432", false));
    let r = diagnose(&f);
    assert_eq!(r.verdict.code, Code::LoopbackOnlyBind);
    let cmds: Vec<&String> = r.findings[0].fix.iter().flat_map(|x| &x.commands).collect();
    assert!(cmds.iter().any(|c| c.as_str() == "listen_addresses = 'localhost,172.17.0.1'"));
    assert!(cmds.iter().any(|c| c.contains("host    all    all    172.17.0.0/16")));
}

#[test]
fn mysql_bind_address() {
    let mut f = bridge_facts("host:3306");
    literal(&mut f, "172.17.0.1");
    f.host_sockets = vec![listener("127.0.0.1", 3306, "mysqld")];
    f.probe = Some(probe(ProbeOutcome::Refused, "172.17.0.1:3306", false));
    let r = diagnose(&f);
    let cmds: Vec<&String> = r.findings[0].fix.iter().flat_map(|x| &x.commands).collect();
    assert!(cmds.iter().any(|c| c.starts_with("bind-address = ")), "{cmds:?}");
}

#[test]
fn service_not_listening() {
    let mut f = bridge_facts("host:5432");
    literal(&mut f, "172.17.0.1");
    f.host_sockets = vec![listener("0.0.0.0", 22, "sshd")];
    f.probe = Some(probe(ProbeOutcome::Refused, "172.17.0.1:5432", false));
    f.drops.events = vec![drop_ev("NO_SOCKET", "tcp_v4_rcv+0x91/0x13f0", true)];
    let r = diagnose(&f);
    assert_eq!(r.verdict.code, Code::ServiceNotListening);
    assert!(r.findings[0].fix[0].commands.iter().any(|c| c.contains("ports 22")));
}

#[test]
fn bound_to_other_address() {
    let mut f = bridge_facts("host:8080");
    literal(&mut f, "172.17.0.1");
    f.host_sockets = vec![listener("198.18.0.1", 8080, "socat")];
    f.probe = Some(probe(ProbeOutcome::Refused, "172.17.0.1:8080", false));
    let r = diagnose(&f);
    assert_eq!(r.verdict.code, Code::BoundToOtherAddress);
    assert!(r.findings[0].evidence.iter().any(|e| matches!(e, Evidence::Address { interface, .. } if interface == "hrlan0")));
    assert!(r.findings[0].fix[0].commands[0].contains("198.18.0.1:8080"));
}

#[test]
fn firewall_drop_and_reject() {
    let mut f = bridge_facts("host:8080");
    literal(&mut f, "172.17.0.1");
    f.host_sockets = vec![listener("0.0.0.0", 8080, "socat")];
    f.probe = Some(probe(ProbeOutcome::NoAnswer, "172.17.0.1:8080", true));
    f.drops.events = vec![drop_ev("NETFILTER_DROP", "nft_do_chain+0x3c2/0x6a0", true)];
    let r = diagnose(&f);
    assert_eq!(r.verdict.code, Code::FirewallDrop);
    assert_eq!(r.verdict.hop, Some(Hop::HostInput));
    assert!(r.findings[0].fix[0].commands[0].contains("iptables -I INPUT -i docker0 -p tcp --dport 8080 -j ACCEPT"));
    assert_eq!(r.path.iter().find(|h| h.hop == Hop::HostInput).unwrap().status, HopStatus::Failed);
    assert_eq!(r.path.iter().find(|h| h.hop == Hop::HostSocket).unwrap().status, HopStatus::NotReached);

    f.probe = Some(probe(ProbeOutcome::Refused, "172.17.0.1:8080", false));
    assert_eq!(diagnose(&f).verdict.code, Code::FirewallReject);

    // An unattributed NETFILTER_DROP (someone else's packet) must not be blamed.
    f.probe = Some(probe(ProbeOutcome::NoAnswer, "172.17.0.1:8080", false));
    f.drops.events = vec![drop_ev("NETFILTER_DROP", "nft_do_chain+0x3c2/0x6a0", false)];
    assert_eq!(diagnose(&f).verdict.code, Code::Unknown);
}

#[test]
fn reject_without_trace_from_refused_with_listener() {
    let mut f = bridge_facts("host:8080");
    literal(&mut f, "172.17.0.1");
    f.host_sockets = vec![listener("0.0.0.0", 8080, "socat")];
    f.probe = Some(probe(ProbeOutcome::Refused, "172.17.0.1:8080", false));
    f.drops = DropTrace { status: TraceStatus::Unavailable("tracefs is not mounted".into()), events: vec![] };
    let r = diagnose(&f);
    assert_eq!(r.verdict.code, Code::FirewallReject);
    assert!(codes(&r).contains(&Code::DropReasonsUnavailable));
}

#[test]
fn timeout_without_drop_reasons_is_unknown_not_a_guess() {
    let mut f = bridge_facts("host:8080");
    literal(&mut f, "172.17.0.1");
    f.host_sockets = vec![listener("0.0.0.0", 8080, "socat")];
    f.probe = Some(probe(ProbeOutcome::NoAnswer, "172.17.0.1:8080", false));
    f.drops = DropTrace { status: TraceStatus::Unavailable("tracefs is not mounted".into()), events: vec![] };
    let r = diagnose(&f);
    assert_eq!(r.verdict.code, Code::Unknown);
    assert!(r.findings[0].evidence.iter().any(|e| matches!(e, Evidence::Missing { what, .. } if what == "drop-reasons")));
}

#[test]
fn container_loopback_with_loopback_only_service() {
    let mut f = bridge_facts("localhost:6379");
    f.resolution = Some(Resolution {
        name: Some("localhost".into()),
        address: Some("127.0.0.1".parse().unwrap()),
        addresses: vec!["127.0.0.1".parse().unwrap()],
        source: ResolutionSource::HostsFile {
            path: "/proc/1000/root/etc/hosts".into(),
            entry: HostsEntry { line: 1, address: "127.0.0.1".parse().unwrap(), names: vec!["localhost".into()] },
        },
        dns_queries: vec![],
    });
    f.host_sockets = vec![listener("127.0.0.1", 6379, "redis-server")];
    f.probe = Some(probe(ProbeOutcome::Refused, "127.0.0.1:6379", false));
    let r = diagnose(&f);
    assert_eq!(r.verdict.code, Code::ContainerLoopback);
    assert_eq!(codes(&r), vec![Code::ContainerLoopback, Code::AlsoLoopbackOnly]);
    assert!(r.findings[0].fix[0].commands[0].contains("172.17.0.1:6379"));
    assert!(r.findings[0].evidence.iter().any(|e| matches!(e, Evidence::Hosts { line: Some(1), .. })));
}

#[test]
fn host_alias_unresolved() {
    let mut f = bridge_facts("host.docker.internal:5432");
    f.resolution = Some(Resolution {
        name: Some("host.docker.internal".into()),
        address: None,
        addresses: vec![],
        source: ResolutionSource::Unresolved,
        dns_queries: vec![DnsQuery { server: "198.18.0.2".parse().unwrap(), qtype: "A".into(), outcome: "NXDOMAIN".into(), answers: vec![], elapsed_ms: 1 }],
    });
    let r = diagnose(&f);
    assert_eq!(r.verdict.code, Code::HostAliasUnresolved);
    let cmds: Vec<&String> = r.findings[0].fix.iter().flat_map(|x| &x.commands).collect();
    assert!(cmds.iter().any(|c| c.starts_with("docker run --add-host host.docker.internal:host-gateway")));
    assert!(cmds.iter().any(|c| c.contains("- \"host.docker.internal:host-gateway\"")));
    assert!(r.findings[0].evidence.iter().any(|e| matches!(e, Evidence::Dns { outcome, .. } if outcome == "NXDOMAIN")));
    assert_eq!(r.path[0].status, HopStatus::Failed);

    f.target = Some(Target::parse("db.example:5432", Proto::Tcp).unwrap());
    f.resolution.as_mut().unwrap().name = Some("db.example".into());
    assert_eq!(diagnose(&f).verdict.code, Code::NameUnresolved);
}

#[test]
fn network_none() {
    let mut f = bridge_facts("host:80");
    if let Subject::Container(c) = &mut f.subject {
        c.network_mode = NetworkMode::None;
        c.network_mode_raw = "none".into();
        c.networks.clear();
    }
    let r = diagnose(&f);
    assert_eq!(r.verdict.code, Code::NetworkNone);
    assert!(r.findings[0].fix[0].commands[0].starts_with("docker network connect bridge web"));
}

#[test]
fn host_mode_ok_with_info() {
    let mut f = bridge_facts("host:6379");
    if let Subject::Container(c) = &mut f.subject {
        c.network_mode = NetworkMode::Host;
        c.network_mode_raw = "host".into();
        c.networks.clear();
    }
    f.subject_net = f.host_net.clone();
    assert_eq!(host_keyword_address(&f).unwrap().0, "127.0.0.1".parse::<std::net::IpAddr>().unwrap());
    literal(&mut f, "127.0.0.1");
    f.host_sockets = vec![listener("127.0.0.1", 6379, "redis-server")];
    f.probe = Some(probe(ProbeOutcome::Connected, "127.0.0.1:6379", false));
    let r = diagnose(&f);
    assert_eq!(codes(&r), vec![Code::Ok, Code::HostNetworkMode]);
    assert_eq!(r.findings[1].severity, Severity::Info);
}

#[test]
fn ok_and_json_shape() {
    let mut f = bridge_facts("host:80");
    literal(&mut f, "172.17.0.1");
    f.host_sockets = vec![listener("0.0.0.0", 80, "nginx")];
    f.probe = Some(probe(ProbeOutcome::Connected, "172.17.0.1:80", false));
    let r = diagnose(&f);
    assert_eq!(r.verdict.code, Code::Ok);
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(v["schema"], "hostreach/v1");
    assert_eq!(v["verdict"]["code"], "OK");
    assert_eq!(v["target"]["address"], "172.17.0.1");
    assert_eq!(v["target"]["proto"], "tcp");
    assert_eq!(v["container"]["network_mode"], "bridge");
    assert_eq!(v["path"][0]["hop"], "container-eth0");
    assert_eq!(v["findings"][0]["evidence"][0]["kind"], "probe");
}

#[test]
fn facts_roundtrip_through_json() {
    let mut f = bridge_facts("host:80");
    literal(&mut f, "172.17.0.1");
    f.probe = Some(probe(ProbeOutcome::Refused, "172.17.0.1:80", false));
    let text = serde_json::to_string(&f).unwrap();
    let back: Facts = serde_json::from_str(&text).unwrap();
    assert_eq!(serde_json::to_value(diagnose(&back)).unwrap(), serde_json::to_value(diagnose(&f)).unwrap());
}

#[test]
fn host_gateway_is_docker0_even_from_a_user_network() {
    let mut f = bridge_facts("host.docker.internal:5432");
    if let Subject::Container(c) = &mut f.subject {
        c.network_mode = NetworkMode::UserBridge;
        c.network_mode_raw = "app_default".into();
        c.networks[0].name = "app_default".into();
        c.networks[0].gateway = Some("172.18.0.1".parse().unwrap());
        c.networks[0].bridge = Some("br-0123456789ab".into());
    }
    f.resolution = Some(Resolution {
        name: Some("host.docker.internal".into()),
        address: None,
        addresses: vec![],
        source: ResolutionSource::Unresolved,
        dns_queries: vec![],
    });
    let r = diagnose(&f);
    assert_eq!(r.verdict.code, Code::HostAliasUnresolved);
    assert!(r.findings[0].fix[0].summary.contains("host-gateway is 172.17.0.1"), "{:?}", r.findings[0].fix[0]);
    // The daemon's host-gateway-ip wins.
    f.daemon = Some(DaemonFacts {
        settings: Some(DaemonSettings { host_gateway_ip: Some("10.9.0.1".into()), ..Default::default() }),
        ..Default::default()
    });
    assert!(diagnose(&f).findings[0].fix[0].summary.contains("host-gateway is 10.9.0.1"));
}

/// A probe to 172.17.0.1:8080 dropped by netfilter (the kernel's report attributed), and the
/// firewall walk's answer: `rule` in `backend`'s `chain`, with `fix` as its first fix.
fn firewall_drop_facts(backend: &str, chain: &str, rule: &str, fix: &str) -> Facts {
    let mut f = bridge_facts("host:8080");
    literal(&mut f, "172.17.0.1");
    f.host_sockets = vec![listener("0.0.0.0", 8080, "socat")];
    f.probe = Some(probe(ProbeOutcome::NoAnswer, "172.17.0.1:8080", true));
    f.drops.events = vec![drop_ev("NETFILTER_DROP", "nft_do_chain+0x3c2/0x6a0", true)];
    f.firewall = Some(FirewallFacts {
        decision: "drop".into(),
        backend: Some(backend.into()),
        table: Some("filter".into()),
        chain: Some(chain.into()),
        rule: rule.into(),
        manager: "plain".into(),
        certain: true,
        counter_delta: Some(1),
        fixes: vec![Fix::new("Accept it first", [fix.to_string()])],
        notes: vec![],
        docker_firewall_backend: None,
    });
    f
}

#[test]
fn firewall_drop_names_the_deciding_rule_and_its_counter() {
    let mut f = firewall_drop_facts(
        "iptables-nft",
        "INPUT",
        "-A INPUT -i docker0 -p tcp -m tcp --dport 8080 -j DROP",
        "sudo iptables -I INPUT 1 -i docker0 -p tcp --dport 8080 -j ACCEPT",
    );
    let r = diagnose(&f);
    assert_eq!(r.verdict.code, Code::FirewallDrop);
    assert!(r.findings[0].evidence.iter().any(|e| matches!(e, Evidence::Rule { rule, counter_delta: Some(1), .. } if rule.ends_with("--dport 8080 -j DROP"))));
    assert!(!r.findings[0].evidence.iter().any(|e| matches!(e, Evidence::Missing { what, .. } if what == "deciding-rule")));
    assert_eq!(r.findings[0].fix[0].commands[0], "sudo iptables -I INPUT 1 -i docker0 -p tcp --dport 8080 -j ACCEPT");
    // The generic UFW/firewalld advice gives way to the manager's own fix; the DOCKER-USER note stays.
    assert!(!r.findings[0].fix.iter().any(|x| x.summary.starts_with("With UFW")));
    assert!(r.findings[0].fix.iter().any(|x| x.summary.contains("DOCKER-USER")));

    // Rules that accept a packet the kernel dropped: say so, never invent the rule.
    f.firewall.as_mut().unwrap().decision = "accept".into();
    let r = diagnose(&f);
    assert!(r.findings[0].evidence.iter().any(|e| matches!(e, Evidence::Missing { what, why } if what == "deciding-rule" && why.contains("accept"))));
}

/// doctor's firewall step with each answer the daemon can give about its firewall backend.
#[test]
fn docker_firewall_backend_in_the_firewall_verdict() {
    let base = || {
        firewall_drop_facts(
            "nftables",
            "input",
            "iifname \"docker0\" tcp dport 8080 drop",
            "sudo nft insert rule inet filter input position 4 iifname \"docker0\" tcp dport 8080 accept",
        )
    };
    let backend = |driver: Option<&str>, source: &str, summary: &str| DockerFirewallBackend { driver: driver.map(str::to_string), source: source.into(), summary: summary.into() };
    let daemon = |v: &str, b: Option<&str>| DaemonFacts { version: Some(v.into()), firewall_backend: b.map(str::to_string), ..Default::default() };
    let docker_ev = |r: &Report| {
        r.findings[0].evidence.iter().find_map(|e| match e {
            Evidence::Docker { field, value } if field == "firewall_backend" => Some(value.clone()),
            _ => None,
        })
    };
    let docker_user = |r: &Report| r.findings[0].fix.iter().any(|x| x.summary.starts_with("Not a DOCKER-USER rule"));

    // Docker 29 reports nftables: no DOCKER-USER advice, the nftables note instead
    let mut f = base();
    f.daemon = Some(daemon("29.0.1", Some("nftables")));
    f.firewall.as_mut().unwrap().docker_firewall_backend = Some(backend(Some("nftables"), "daemon", "nftables, reported by the Docker daemon 29.0.1 (GET /info FirewallBackend.Driver): ... no DOCKER-USER chain"));
    let r = diagnose(&f);
    assert_eq!(r.verdict.code, Code::FirewallDrop);
    assert!(!docker_user(&r), "{:#?}", r.findings[0].fix);
    assert!(r.findings[0].fix.iter().any(|x| x.summary.starts_with("Docker's firewall backend is nftables (reported by the daemon): it has no DOCKER-USER chain")), "{:#?}", r.findings[0].fix);
    assert!(r.findings[0].fix.iter().all(|x| x.commands.iter().all(|c| !c.contains("DOCKER-USER"))));
    assert!(docker_ev(&r).unwrap().starts_with("nftables, reported by the Docker daemon"));
    // inferred from the rules (docker-bridges tables), the daemon silent
    f.daemon = Some(daemon("29.0.1", None));
    f.firewall.as_mut().unwrap().docker_firewall_backend = Some(backend(Some("nftables"), "inferred", "nftables, inferred from the rules"));
    let r = diagnose(&f);
    assert!(!docker_user(&r));
    assert!(r.findings[0].fix.iter().any(|x| x.summary.contains("its docker-bridges tables are in the rules")));

    // iptables and iptables+firewalld, reported: the DOCKER-USER note stays, the evidence says which
    for driver in ["iptables", "iptables+firewalld"] {
        let mut f = base();
        f.daemon = Some(daemon("28.3.0", Some(driver)));
        f.firewall.as_mut().unwrap().docker_firewall_backend = Some(backend(Some(driver), "daemon", &format!("{driver}, reported by the Docker daemon 28.3.0")));
        let r = diagnose(&f);
        assert!(docker_user(&r), "{driver}");
        assert_eq!(docker_ev(&r).unwrap(), format!("{driver}, reported by the Docker daemon 28.3.0"));
    }

    // Docker 20.10 reports nothing: the evidence says the backend was inferred
    let mut f = base();
    f.daemon = Some(daemon("20.10.24", None));
    f.firewall.as_mut().unwrap().docker_firewall_backend =
        Some(backend(Some("iptables"), "inferred", "iptables, inferred from the rules (...); not reported by the Docker daemon (Docker 20.10.24; ...)"));
    let r = diagnose(&f);
    assert!(docker_user(&r));
    assert!(docker_ev(&r).unwrap().contains("inferred from the rules"));
}
