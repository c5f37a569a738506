//! compose lint on the compose projects in tests/fixtures/compose: each finding with its file,
//! line, service, severity and fix.

mod common;

use common::*;
use hostreach_compose::{HostFacts, LintCode::*, LintEvidence, Options, host::Egress};
use hostreach_model::{AddrFact, LinkFact, NetnsFacts, RouteFact, Severity};

fn link(index: u32, name: &str, kind: Option<&str>, mtu: u32) -> LinkFact {
    LinkFact {
        index,
        name: name.into(),
        kind: kind.map(str::to_string),
        mtu: Some(mtu),
        up: true,
        lower_up: true,
        mac: None,
        master: None,
        peer_index: None,
        peer_netnsid: None,
    }
}

/// eth0 (default route, MTU `eth_mtu`), a compose bridge 172.18.0.1, and docker0 172.17.0.1 if `docker0`.
fn host(eth_mtu: u32, docker0: bool) -> NetnsFacts {
    let mut links = vec![
        link(1, "lo", None, 65536),
        link(2, "eth0", None, eth_mtu),
        link(4, "br-1234abcd5678", Some("bridge"), 1500),
    ];
    let mut addresses = vec![
        AddrFact {
            index: 1,
            address: "127.0.0.1".parse().unwrap(),
            prefix_len: 8,
        },
        AddrFact {
            index: 2,
            address: "10.1.2.3".parse().unwrap(),
            prefix_len: 24,
        },
        AddrFact {
            index: 4,
            address: "172.18.0.1".parse().unwrap(),
            prefix_len: 16,
        },
    ];
    if docker0 {
        links.push(link(3, "docker0", Some("bridge"), 1500));
        addresses.push(AddrFact {
            index: 3,
            address: "172.17.0.1".parse().unwrap(),
            prefix_len: 16,
        });
    }
    let routes = vec![RouteFact {
        destination: None,
        prefix_len: 0,
        gateway: Some("10.1.2.1".parse().unwrap()),
        oif: Some(2),
        table: 254,
        kind: "unicast".into(),
        preferred_source: None,
        mtu: None,
    }];
    NetnsFacts {
        inode: None,
        links,
        addresses,
        routes,
    }
}

#[test]
fn host_alias_not_mapped() {
    let r = lint("host_alias");
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let f = one(&r, HostAliasNotMapped, "api");
    assert_eq!(
        (f.file.as_str(), f.line, f.severity),
        ("compose.yaml", 6, Severity::Error)
    );
    assert_eq!(f.key, "services.api.environment.BILLING_URL");
    assert_eq!(
        fix_lines(f),
        vec![
            "    extra_hosts:",
            "      - \"host.docker.internal:host-gateway\""
        ]
    );
    // mapped: nothing
    none(&r, HostAliasNotMapped, "mapped");
    // in an exec-form command
    let f = one(&r, HostAliasNotMapped, "worker");
    assert_eq!((f.line, f.key.as_str()), (15, "services.worker.command[2]"));
    // network_mode: service:api uses api's /etc/hosts: the fix goes to api
    let f = one(&r, HostAliasNotMapped, "probe");
    assert_eq!(f.line, 20);
    assert!(
        f.fix[0]
            .summary
            .contains("service api (compose.yaml line 2)"),
        "{:?}",
        f.fix
    );
    // a label only: a warning; extra_hosts exists as a block mapping, so one line is added to it
    let f = one(&r, HostAliasNotMapped, "labelled");
    assert_eq!((f.line, f.severity), (26, Severity::Warning));
    assert_eq!(
        fix_lines(f),
        vec!["      host.docker.internal: host-gateway"]
    );
    assert!(r.has_problems());
}

#[test]
fn host_alias_through_anchors_and_merge_keys() {
    let r = lint("anchors");
    // a and c get PAYMENTS_URL from the anchor: the line is where it is written (4)
    let a = one(&r, HostAliasNotMapped, "a");
    assert_eq!(a.line, 4);
    assert_eq!(
        fix_lines(a),
        vec![
            "    extra_hosts:",
            "      - \"host.docker.internal:host-gateway\""
        ]
    );
    none(&r, HostAliasNotMapped, "b");
    assert_eq!(one(&r, HostAliasNotMapped, "c").line, 4);
}

#[test]
fn overrides_are_merged() {
    let r = lint("override");
    assert_eq!(r.files, vec!["compose.yaml", "compose.override.yaml"]);
    // api's extra_hosts comes from the override: no finding
    none(&r, HostAliasNotMapped, "api");
    // web's use of the alias comes from the override: reported there, fixed where web is defined
    let f = one(&r, HostAliasNotMapped, "web");
    assert_eq!((f.file.as_str(), f.line), ("compose.override.yaml", 7));
    assert!(
        f.fix[0].summary.contains("compose.yaml line 6"),
        "{:?}",
        f.fix
    );
}

#[test]
fn hardcoded_gateway_without_host_facts() {
    let r = lint("gateway");
    let web = findings(&r, HardcodedGateway, "web");
    let lines: Vec<usize> = web.iter().map(|f| f.line).collect();
    assert_eq!(lines, vec![5, 6, 8]);
    assert!(web.iter().all(|f| f.severity == Severity::Warning));
    assert!(
        web[0]
            .evidence
            .iter()
            .any(|e| matches!(e, LintEvidence::Missing { .. }))
    );
    assert_eq!(fix_lines(web[0])[0], "      DB_HOST: host.docker.internal");
    // in extra_hosts: host-gateway instead of the literal
    assert_eq!(fix_lines(web[2]), vec!["      - \"dbhost:host-gateway\""]);
    let legacy = one(&r, HardcodedGateway, "legacy");
    assert_eq!(legacy.line, 12);
    assert_eq!(
        fix_lines(legacy)[0],
        "    command: [\"legacy\", \"--db\", \"postgres://app@host.docker.internal:5432/app\"]"
    );
    // the gateway of its own ipam-fixed network: deliberate and stable
    none(&r, HardcodedGateway, "pinned");
    // the same address from a service not on that network
    let o = one(&r, HardcodedGateway, "outsider");
    assert!(o.summary.contains("network backend"), "{}", o.summary);
    // a plain LAN address is not a gateway literal
    none(&r, HardcodedGateway, "fine");
}

#[test]
fn hardcoded_gateway_says_what_happens_on_this_host() {
    let facts = HostFacts::from_netns(host(1500, true), None);
    let r = lint_with("gateway", Options::default(), &facts);
    let web = findings(&r, HardcodedGateway, "web");
    // on a compose network, docker0's address still reaches the host, but arrives on br-<id>
    assert_eq!(web[0].severity, Severity::Warning);
    assert!(
        web[0].summary.contains("belongs to docker0"),
        "{}",
        web[0].summary
    );
    assert!(
        web[0].summary.contains("scoped to docker0"),
        "{}",
        web[0].summary
    );
    assert!(
        web[0].evidence.iter().any(
            |e| matches!(e, LintEvidence::Address { interface, .. } if interface == "docker0")
        )
    );
    assert!(
        fix_lines(web[0])
            .iter()
            .any(|l| l.starts_with("ufw allow in on br-")),
        "{:?}",
        web[0].fix
    );
    // 172.18.0.1 belongs to another bridge on this host
    assert!(
        web[1].summary.contains("br-1234abcd5678"),
        "{}",
        web[1].summary
    );
    // on the default bridge, 172.17.0.1 is its own gateway
    let legacy = one(&r, HardcodedGateway, "legacy");
    assert!(
        legacy.summary.contains("the service's own gateway"),
        "{}",
        legacy.summary
    );

    // without docker0, the address is nobody's: an error
    let facts = HostFacts::from_netns(host(1500, false), None);
    let r = lint_with("gateway", Options::default(), &facts);
    let web = findings(&r, HardcodedGateway, "web");
    assert_eq!(web[0].severity, Severity::Error);
    assert!(
        web[0]
            .summary
            .contains("no interface of this host owns 172.17.0.1"),
        "{}",
        web[0].summary
    );
    assert!(
        web[0]
            .evidence
            .iter()
            .any(|e| matches!(e, LintEvidence::NotLocal { .. }))
    );
    assert_eq!(
        web[1].severity,
        Severity::Warning,
        "172.18.0.1 is still owned"
    );
}

#[test]
fn container_loopback() {
    let r = lint("loopback");
    let app = findings(&r, ContainerLoopback, "app");
    let lines: Vec<usize> = app.iter().map(|f| f.line).collect();
    // DATABASE_URL, REDIS_HOST (port from REDIS_PORT), METRICS_PUSH_URL; not APP_URL / SELF_CHECK_URL
    // (its own port 3000), not LISTEN_ADDR (a bind), not the healthcheck (runs inside itself)
    assert_eq!(lines, vec![7, 8, 13]);
    assert_eq!(app[0].severity, Severity::Error);
    assert_eq!(
        fix_lines(app[0])[0],
        "      DATABASE_URL: postgres://app:secret@db:5432/app"
    );
    assert!(app[1].summary.contains("port 6379"), "{}", app[1].summary);
    assert_eq!(
        fix_lines(app[1]),
        vec![
            "      REDIS_HOST: cache",
            "    networks:",
            "      - default",
            "      - cachenet"
        ]
    );
    // nothing in the project serves 9091: the host, named
    assert_eq!(app[2].severity, Severity::Warning);
    assert_eq!(
        fix_lines(app[2])[0],
        "      METRICS_PUSH_URL: http://host.docker.internal:9091/metrics"
    );
    // a sidecar in the same namespace serves 5433
    none(&r, ContainerLoopback, "behind-proxy");
    // a shared namespace whose owner declares nothing: said, as info
    assert_eq!(
        one(&r, ContainerLoopback, "behind-vpn").severity,
        Severity::Info
    );
    // in host mode, localhost is the host
    none(&r, ContainerLoopback, "on-host");
}

#[test]
fn loopback_through_dotenv_is_fixed_in_dotenv() {
    let r = lint("interp");
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(r.env_file.as_deref(), Some(".env"));
    let f = one(&r, ContainerLoopback, "app");
    assert_eq!((f.file.as_str(), f.line), ("compose.yaml", 5));
    assert!(f.evidence.iter().any(|e| matches!(e, LintEvidence::Variable { name, source, .. } if name == "DB_HOST" && source == ".env line 2")), "{:?}", f.evidence);
    assert_eq!(fix_lines(f), vec!["DB_HOST=db"]);
    // the process environment wins over .env
    let opts = Options {
        env: [("DB_HOST".to_string(), "db".to_string())].into(),
        ..Default::default()
    };
    let r = lint_with("interp", opts, &HostFacts::default());
    none(&r, ContainerLoopback, "app");
}

#[test]
fn env_files_of_services_are_read() {
    let r = lint("env_file");
    let f = one(&r, ContainerLoopback, "app");
    assert_eq!((f.file.as_str(), f.line), ("app.env", 1));
    assert_eq!(
        fix_lines(f)[0],
        "DATABASE_URL=mysql://root@host.docker.internal:3306/shop"
    );
    // CACHE_HOST=localhost in app.env is hidden by environment: CACHE_HOST: cache
    assert!(
        findings(&r, ContainerLoopback, "app")
            .iter()
            .all(|f| f.line != 2)
    );
    let g = one(&r, HardcodedGateway, "app");
    assert_eq!((g.file.as_str(), g.line), ("app.env", 3));
}

#[test]
fn host_network_mode() {
    let r = lint("host_mode");
    let m = one(&r, HostNetworkMode, "monitor");
    assert_eq!((m.line, m.severity), (4, Severity::Warning));
    assert!(m.summary.contains("ports:` are ignored"), "{}", m.summary);
    assert_eq!(fix_lines(m)[0], "# remove line 4: network_mode: host");
    let p = one(&r, HostNetworkMode, "plain");
    assert_eq!((p.line, p.severity), (11, Severity::Info));
    none(&r, ContainerLoopback, "monitor");
}

#[test]
fn mtu_unset_needs_an_egress_below_1500() {
    // no egress known: not checked, and said
    let r = lint("mtu");
    assert!(r.findings.iter().all(|f| f.code != MtuUnset));
    assert!(
        r.notes
            .iter()
            .any(|n| n.message.starts_with("MTU_UNSET not checked")),
        "{:?}",
        r.notes
    );
    // 1500: nothing to say
    let r = lint_with(
        "mtu",
        Options::default(),
        &HostFacts::from_netns(host(1500, true), None),
    );
    assert!(r.findings.iter().all(|f| f.code != MtuUnset));
    // 1400 from the default route's interface
    let r = lint_with(
        "mtu",
        Options::default(),
        &HostFacts::from_netns(host(1400, true), None),
    );
    let mtu: Vec<_> = r.findings.iter().filter(|f| f.code == MtuUnset).collect();
    let nets: Vec<(&str, usize)> = mtu
        .iter()
        .map(|f| (f.network.as_deref().unwrap(), f.line))
        .collect();
    // front (no option, line 13), default (implicit: worker's line 5), tight (1500 > 1400, line 20);
    // back sets 1400; ext is external
    assert_eq!(nets, vec![("default", 5), ("front", 13), ("tight", 20)]);
    assert!(
        mtu.iter()
            .all(|f| f.service.is_none() && f.severity == Severity::Warning)
    );
    let front = mtu
        .iter()
        .find(|f| f.network.as_deref() == Some("front"))
        .unwrap();
    assert_eq!(
        fix_lines(front)[..2],
        [
            "    driver_opts:".to_string(),
            "      com.docker.network.driver.mtu: \"1400\"".to_string()
        ]
    );
    assert!(front.evidence.iter().any(
        |e| matches!(e, LintEvidence::Egress { interface, mtu: 1400, .. } if interface == "eth0")
    ));
    let default = mtu
        .iter()
        .find(|f| f.network.as_deref() == Some("default"))
        .unwrap();
    // the file has a top-level `networks:` (line 12): the entry goes under it
    assert!(
        default.fix[0]
            .summary
            .contains("top-level `networks:` (compose.yaml line 12)"),
        "{:?}",
        default.fix
    );
    assert_eq!(
        default.fix[0].commands,
        [
            "  default:",
            "    driver_opts:",
            "      com.docker.network.driver.mtu: \"1400\""
        ]
        .map(String::from)
    );
    // a file without one gets the whole block
    let r = lint_with(
        "override",
        Options::default(),
        &HostFacts::from_netns(host(1400, true), None),
    );
    let d = r.findings.iter().find(|f| f.code == MtuUnset).unwrap();
    assert_eq!(
        (d.file.as_str(), d.line, d.network.as_deref()),
        ("compose.yaml", 2, Some("default"))
    );
    assert_eq!(
        d.fix[0].commands,
        [
            "networks:",
            "  default:",
            "    driver_opts:",
            "      com.docker.network.driver.mtu: \"1400\""
        ]
        .map(String::from)
    );
    let tight = mtu
        .iter()
        .find(|f| f.network.as_deref() == Some("tight"))
        .unwrap();
    assert!(tight.summary.contains("sets MTU 1500"), "{}", tight.summary);
    // a given egress MTU works without host facts
    let facts = HostFacts::unavailable("no netlink", Some(1280));
    assert_eq!(
        facts.egress,
        Some(Egress {
            interface: "given".into(),
            mtu: 1280,
            route_mtu: None,
            given: true
        })
    );
    let r = lint_with("mtu", Options::default(), &facts);
    assert_eq!(
        r.findings.iter().filter(|f| f.code == MtuUnset).count(),
        4,
        "back's 1400 is above 1280 too"
    );
}

#[test]
fn bad_input_is_reported_with_file_and_line_and_the_rest_is_linted() {
    let r = lint("errors");
    let errs: Vec<(&str, usize)> = r.errors.iter().map(|e| (e.file.as_str(), e.line)).collect();
    assert_eq!(
        errs,
        vec![
            ("compose.yaml", 4),
            ("compose.yaml", 11),
            ("compose.override.yaml", 5)
        ],
        "{:?}",
        r.errors
    );
    assert!(
        r.errors[0].message.contains("unknown key `extra_host`")
            && r.errors[0].message.contains("did you mean `extra_hosts`")
    );
    assert!(r.errors[1].message.contains("TOKEN"));
    assert!(r.errors[2].message.starts_with("unreadable YAML"));
    assert_eq!(
        r.errors[0].to_string(),
        "compose.yaml:4: unknown key `extra_host` in service \"api\" (did you mean `extra_hosts`?)"
    );
    // the misspelt extra_hosts does not count as a mapping: the finding is there
    assert_eq!(one(&r, HostAliasNotMapped, "api").line, 7);
}

#[test]
fn explicit_files_and_project_directory() {
    let opts = Options {
        files: vec![
            "gateway/compose.yaml".into(),
            "override/compose.override.yaml".into(),
        ],
        ..Default::default()
    };
    let r =
        hostreach_compose::lint_project(&opts, &FixtureFs(fixture_dir("")), &HostFacts::default());
    assert_eq!(
        r.files,
        vec!["gateway/compose.yaml", "override/compose.override.yaml"]
    );
    // web of gateway gains the override's UPSTREAM_URL with host.docker.internal, and has extra_hosts (dbhost) without the alias
    let f = one(&r, HostAliasNotMapped, "web");
    assert_eq!(
        (f.file.as_str(), f.line),
        ("override/compose.override.yaml", 7)
    );
    assert_eq!(
        fix_lines(f),
        vec!["      - \"host.docker.internal:host-gateway\""]
    );
    // project directory: .env from there
    let opts = Options {
        project_directory: Some("interp".into()),
        ..Default::default()
    };
    let r =
        hostreach_compose::lint_project(&opts, &FixtureFs(fixture_dir("")), &HostFacts::default());
    assert_eq!(r.env_file.as_deref(), Some("interp/.env"));
    assert_eq!(
        one(&r, ContainerLoopback, "app").file,
        "interp/compose.yaml"
    );
}

#[test]
fn json_report_shape() {
    let r = lint_with(
        "host_alias",
        Options::default(),
        &HostFacts::from_netns(host(1500, true), None),
    );
    let v = serde_json::to_value(&r).unwrap();
    let s = serde_json::to_string(&r).unwrap();
    assert!(s.starts_with("{\"schema\":\"hostreach/v1\""), "{s}");
    for f in v["findings"].as_array().unwrap() {
        for k in [
            "code", "severity", "file", "line", "service", "summary", "evidence", "fix",
        ] {
            assert!(f.get(k).is_some(), "{k} missing in {f}");
        }
    }
    insta::assert_json_snapshot!("host_alias_report", v);
}
