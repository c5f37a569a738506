//! `hostreach trace`: both sides of the wire during one probe. A capture socket (AF_PACKET, with a BPF
//! filter compiled for the probe's flow) on the container's interface, created inside its namespace, and one
//! on the host's veth (or a macvlan's parent); then doctor's probe and drop-reason recording; then what each
//! side saw (request, reply, resets, ICMP errors), the kernel's drop reasons, and optionally a pcapng file
//! with one interface block per capture point.

use crate::cli::{DoctorArgs, Format, ProtoArg};
use crate::exit::{self, Failure};
use clap::{Args, Parser};
use hostreach_collect::capture::{self, Capture, Decoded, FlowFilter, FrameKind, Packet};
use hostreach_collect::pcapng;
use hostreach_model::{CapturePoint, Code, ContainerReport, Facts, PacketSummary, SCHEMA, Seen, Skipped, TargetReport, TraceReport};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("subject").required(true).args(["container", "pid", "netns"])))]
pub struct TraceArgs {
    #[command(flatten)]
    pub subject: crate::subject::SubjectArgs,

    /// What to reach: host:PORT, IP:PORT, [IPv6]:PORT, NAME:PORT or a URL.
    #[arg(long, value_name = "TARGET")]
    pub to: String,
    #[arg(long, value_enum, default_value_t = ProtoArg::Tcp)]
    pub proto: ProtoArg,
    /// How long the probe waits for an answer: 500ms, 3s, or a number of seconds.
    #[arg(long, value_name = "DURATION", default_value = "3s", value_parser = crate::cli::parse_duration)]
    pub timeout: Duration,
    /// Write both sides to FILE as pcapng (one interface block per capture point; opens in Wireshark).
    #[arg(long, value_name = "FILE.pcapng")]
    pub write: Option<PathBuf>,
}

/// doctor's arguments for the same subject and target, built through clap so that fields doctor adds
/// later keep their defaults.
#[derive(Parser)]
struct DoctorWrap {
    #[command(flatten)]
    d: DoctorArgs,
}

fn doctor_args(a: &TraceArgs) -> Result<DoctorArgs, Failure> {
    let mut argv: Vec<String> = vec!["doctor".into()];
    if let Some(c) = &a.subject.container {
        argv.extend(["--container".into(), c.clone()]);
    }
    if let Some(p) = a.subject.pid {
        argv.extend(["--pid".into(), p.to_string()]);
    }
    if let Some(n) = &a.subject.netns {
        argv.extend(["--netns".into(), n.display().to_string()]);
    }
    argv.extend(["--to".into(), a.to.clone()]);
    argv.extend(["--proto".into(), if matches!(a.proto, ProtoArg::Udp) { "udp".into() } else { "tcp".into() }]);
    argv.extend(["--timeout".into(), format!("{}ms", a.timeout.as_millis())]);
    DoctorWrap::try_parse_from(argv).map(|w| w.d).map_err(|e| Failure::usage(e.to_string()))
}

struct Point {
    hop: &'static str,
    netns: &'static str,
    cap: Option<Capture>,
    ifname: String,
    error: Option<String>,
    packets: Vec<Packet>,
}

pub fn run(rt: &tokio::runtime::Runtime, args: &TraceArgs, format: Format, docker_host: Option<&str>) -> i32 {
    match run_inner(rt, args, format, docker_host) {
        Ok(code) => code,
        Err(f) => {
            exit::print_line(&f.message);
            f.code
        }
    }
}

fn run_inner(rt: &tokio::runtime::Runtime, args: &TraceArgs, format: Format, docker_host: Option<&str>) -> Result<i32, Failure> {
    let dargs = doctor_args(args)?;
    if !nix::unistd::geteuid().is_root() {
        return Err(Failure::cannot("trace needs root: capture sockets (CAP_NET_RAW) inside the container's namespace (CAP_SYS_ADMIN for setns)"));
    }
    // 1. Where to capture: the wire as netlink shows it.
    let g = rt.block_on(crate::path_cmd::gather(
        args.subject.container.as_deref(),
        args.subject.pid,
        args.subject.netns.as_deref(),
        Some(&args.to),
        args.proto.into(),
        docker_host,
    ))?;
    let addr = g.facts.resolution.as_ref().and_then(|r| r.address);
    let target = g.facts.target.clone().ok_or_else(|| Failure::usage("no target"))?;
    let w = hostreach_rules::path::wire(&g.facts, addr.as_ref());
    let mut skipped: Vec<Skipped> = Vec::new();
    let mut points: Vec<Point> = Vec::new();
    let flow = match (w.subject_addr, w.subject_if) {
        (Some(local), Some(_)) => Some(FlowFilter { proto: target.proto, local, remote: addr, port: target.port }),
        _ => {
            skipped.push(Skipped { what: "capture".into(), why: "the container's interface and address towards the target are unknown (no route, or links unreadable)".into() });
            None
        }
    };
    let prog = flow.as_ref().map(capture::compile);
    if let (Some(prog), Some(sub_if)) = (&prog, w.subject_if) {
        let host_side = w.host_veth.or_else(|| hostreach_rules::wirepath::macvlan_parent(&g.facts, sub_if));
        let same = hostreach_rules::wirepath::shares_host_netns(&g.facts);
        let mut open = |hop: &'static str, netns: &'static str, ns: Option<&hostreach_collect::netns::Netns>, index: u32, name: &str| {
            let (cap, error) = match Capture::open(ns, index, name, prog) {
                Ok(c) => (Some(c), None),
                Err(e) => (None, Some(e.to_string())),
            };
            points.push(Point { hop, netns, cap, ifname: name.to_string(), error, packets: vec![] });
        };
        if same {
            open("host-egress", "host", None, sub_if.index, &sub_if.name);
        } else {
            open("container-eth0", "container", g.foreign_ns(), sub_if.index, &sub_if.name);
            match host_side {
                Some(h) => open(if w.host_veth.is_some() { "host-veth" } else { "macvlan-parent" }, "host", None, h.index, &h.name),
                None => skipped.push(Skipped { what: "capture-host-side".into(), why: "the host side of the container's interface was not found".into() }),
            }
        }
    }

    // 2. doctor's probe, with drop reasons, while the sockets queue what they see.
    let facts: Facts = rt.block_on(crate::doctor::collect(&dargs, docker_host))?;
    std::thread::sleep(Duration::from_millis(30));
    for p in &mut points {
        if let Some(c) = p.cap.as_mut() {
            p.packets = c.drain();
        }
    }
    let hatypes: Vec<u16> = points.iter().map(|p| p.cap.as_ref().map(|c| c.hatype).unwrap_or(1)).collect();
    for p in &mut points {
        if let Some(c) = p.cap.take() {
            c.close();
        }
    }

    // 3. What each side saw.
    let t0 = points.iter().flat_map(|p| p.packets.iter().map(|x| x.ts_ns)).min().unwrap_or(0);
    let mut timeline: Vec<(u64, PacketSummary)> = Vec::new();
    let mut cps = Vec::new();
    let probe_port = facts.probe.as_ref().and_then(|p| p.source).map(|s| s.port());
    for p in &points {
        let decoded: Vec<(Decoded, &Packet)> = p
            .packets
            .iter()
            .map(|pk| (flow.as_ref().map(|f| capture::decode(&pk.data, f)).unwrap_or(Decoded { summary: String::new(), kind: FrameKind::Other }), pk))
            .filter(|(d, _)| keep_for_probe(d, probe_port))
            .collect();
        let seen: Seen = capture::tally(&decoded.iter().map(|(d, _)| d.clone()).collect::<Vec<_>>());
        for (d, pk) in &decoded {
            timeline.push((
                pk.ts_ns,
                PacketSummary {
                    t_us: pk.ts_ns.saturating_sub(t0) / 1000,
                    hop: p.hop.into(),
                    interface: p.ifname.clone(),
                    direction: if pk.outgoing { "out".into() } else { "in".into() },
                    length: pk.orig_len,
                    summary: d.summary.clone(),
                },
            ));
        }
        cps.push(CapturePoint {
            hop: p.hop.into(),
            interface: p.ifname.clone(),
            netns: p.netns.into(),
            filter: prog.as_ref().map(|x| x.text.clone()).unwrap_or_default(),
            packets: decoded.len() as u32,
            seen,
            error: p.error.clone(),
        });
    }
    timeline.sort_by_key(|(t, _)| *t);

    // 4. The pcapng.
    let mut pcap_path = None;
    if let Some(path) = &args.write {
        let descs: Vec<String> = points.iter().map(|p| format!("{} ({} namespace)", p.hop, p.netns)).collect();
        let ifs: Vec<pcapng::InterfaceDesc> = points
            .iter()
            .zip(&descs)
            .zip(&hatypes)
            .map(|((p, d), h)| pcapng::InterfaceDesc { name: &p.ifname, description: d, linktype: pcapng::linktype_for(*h), snaplen: 262_144 })
            .collect();
        let mut frames: Vec<pcapng::Frame> = points
            .iter()
            .enumerate()
            .flat_map(|(i, p)| {
                p.packets.iter().map(move |pk| pcapng::Frame { interface: i as u32, ts_ns: pk.ts_ns, data: &pk.data, orig_len: pk.orig_len, outbound: Some(pk.outgoing) })
            })
            .collect();
        frames.sort_by_key(|f| f.ts_ns);
        let file = std::fs::File::create(path).map_err(|e| Failure::cannot(format!("cannot write {}: {e}", path.display())))?;
        let mut bw = std::io::BufWriter::new(file);
        pcapng::write(&mut bw, &format!("hostreach {}", env!("CARGO_PKG_VERSION")), &ifs, &frames)
            .and_then(|_| bw.flush())
            .map_err(|e| Failure::cannot(format!("cannot write {}: {e}", path.display())))?;
        pcap_path = Some(path.display().to_string());
    }

    // 5. The verdict on the same facts, and one sentence from the capture.
    let report = hostreach_rules::diagnose(&facts);
    let drops = facts.drops.events.clone();
    let summary = summarize(&cps, &facts);
    let mut all_skipped = facts.skipped.clone();
    all_skipped.extend(skipped);
    let out = TraceReport {
        schema: SCHEMA.into(),
        container: facts.subject.container().map(|c| ContainerReport {
            id: c.id.clone(),
            name: c.name.clone(),
            pid: c.pid,
            network_mode: c.network_mode,
            network: c.networks.first().map(|n| n.name.clone()),
        }),
        target: TargetReport { input: target.input.clone(), address: addr, port: target.port, proto: target.proto, name: target.name().map(str::to_string) },
        probe: facts.probe.clone(),
        points: cps,
        packets: timeline.into_iter().map(|(_, p)| p).collect(),
        drops,
        summary,
        verdict: Some(report.verdict.clone()),
        pcapng: pcap_path,
        skipped: all_skipped,
    };
    match format {
        Format::Json => {
            let mut o = std::io::stdout().lock();
            let _ = serde_json::to_writer_pretty(&mut o, &out);
            let _ = writeln!(o);
        }
        Format::Text => {
            let mut o = anstream::stdout();
            let _ = write!(o, "{}", text(&out));
        }
    }
    Ok(if report.verdict.code == Code::Ok { exit::OK } else { exit::DIAGNOSED })
}

/// Keeps the probe's own TCP/UDP packets (by its source port, when known) and every ICMP message.
fn keep_for_probe(d: &Decoded, probe_port: Option<u16>) -> bool {
    let Some(port) = probe_port else { return true };
    if d.summary.contains(" ICMP") {
        return true;
    }
    d.summary.contains(&format!(":{port} ")) || d.summary.contains(&format!(":{port}\u{0}")) || d.summary.split(' ').any(|w| w.ends_with(&format!(":{port}")))
}

fn summarize(points: &[CapturePoint], facts: &Facts) -> String {
    let c = points.first();
    let h = points.get(1);
    let drop = facts.drops.events.iter().find(|e| e.attributed);
    let drop_txt = drop.map(|d| format!("; the kernel dropped it: {} at {}", d.reason, d.location)).unwrap_or_default();
    let Some(c) = c else { return "nothing was captured".into() };
    let name = |p: &CapturePoint| format!("{} ({})", p.interface, p.hop);
    let icmp = points.iter().flat_map(|p| p.seen.icmp_errors.iter()).next();
    if c.seen.request == 0 {
        let why = facts.probe.as_ref().and_then(|p| p.error.clone()).map(|e| format!(" ({e})")).unwrap_or_default();
        return format!("nothing left {}: the kernel refused to send{why}{drop_txt}", name(c));
    }
    let crossed = h.is_some_and(|h| h.seen.request > 0);
    let mut s = match h {
        Some(h) if crossed => format!("the request left {} and reached {}", name(c), name(h)),
        Some(h) => format!("the request left {} but never reached {}", name(c), name(h)),
        None => format!("the request left {}", name(c)),
    };
    if c.seen.reply > 0 {
        s.push_str(&format!("; the reply came back to {}", c.interface));
    } else if h.is_some_and(|h| h.seen.reply > 0) {
        s.push_str("; a reply reached the host side but not the container");
    } else if c.seen.rst > 0 || h.is_some_and(|h| h.seen.rst > 0) {
        s.push_str("; a reset (RST) came back");
    } else if let Some(e) = icmp {
        s.push_str(&format!("; an ICMP error came back: {e}"));
    } else {
        s.push_str("; nothing came back");
    }
    s.push_str(&drop_txt);
    s
}

fn mark(n: u32) -> String {
    if n > 0 { format!("✓{}", if n > 1 { format!("×{n}") } else { String::new() }) } else { "–".into() }
}

pub fn text(r: &TraceReport) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    if let Some(v) = &r.verdict {
        let m = if v.code == Code::Ok { "✓" } else { "✗" };
        let _ = writeln!(o, "{m} {}  {}", v.code, v.summary);
    }
    let who = r.container.as_ref().map(|c| format!("container {} · ", c.name)).unwrap_or_default();
    let dest = r.target.address.map(|a| format!(" → {a}:{}", r.target.port)).unwrap_or_default();
    let _ = writeln!(o, "  {who}target {}{dest}/{}", r.target.input, r.target.proto);
    let _ = writeln!(o, "\ncapture");
    if let Some(p) = r.points.first() {
        let _ = writeln!(o, "  filter: {}", p.filter);
    }
    for p in &r.points {
        let req = if r.target.proto == hostreach_model::Proto::Tcp { "SYN" } else { "sent" };
        let rep = if r.target.proto == hostreach_model::Proto::Tcp { "SYN-ACK" } else { "reply" };
        let mut line = format!(
            "  {:<15} {:<14} {req} {} · {rep} {} · RST {} · ICMP {}",
            p.hop,
            p.interface,
            mark(p.seen.request),
            mark(p.seen.reply),
            mark(p.seen.rst),
            if p.seen.icmp_errors.is_empty() { "–".to_string() } else { p.seen.icmp_errors.join(", ") }
        );
        if let Some(e) = &p.error {
            let _ = write!(line, "  (no capture: {e})");
        }
        let _ = writeln!(o, "{line}");
    }
    if !r.packets.is_empty() {
        let _ = writeln!(o, "\npackets");
        for p in &r.packets {
            let _ = writeln!(o, "  +{:>9.3} ms  {:<14} {:<3}  {}", p.t_us as f64 / 1000.0, p.interface, p.direction, p.summary);
        }
    }
    let ours: Vec<_> = r.drops.iter().filter(|d| d.attributed).collect();
    if !r.drops.is_empty() {
        let _ = writeln!(o, "\nkernel drop reasons");
        for d in r.drops.iter().take(8) {
            let _ = writeln!(o, "  {} at {}{}", d.reason, d.location, if d.attributed { " (the probe's own packet)" } else { "" });
        }
    }
    let _ = ours;
    let _ = writeln!(o, "\n{}", r.summary);
    if let Some(p) = &r.pcapng {
        let n: u32 = r.points.iter().map(|x| x.packets).sum();
        let _ = writeln!(o, "pcapng: {p} ({} capture points, {n} packets of the flow)", r.points.len());
    }
    if !r.skipped.is_empty() {
        let _ = writeln!(o, "\nnot checked");
        for s in &r.skipped {
            let _ = writeln!(o, "  - {}: {}", s.what, s.why);
        }
    }
    o
}
