//! The active probe: a TCP connect (or a UDP datagram) sent from inside the subject's network namespace,
//! on a dedicated thread, while `skb:kfree_skb` records the kernel's drop reasons. When the kernel reports
//! that it dropped the probe's own packet and no answer follows, the probe concludes at once instead of
//! waiting for the connect timeout.

use crate::error::{CollectError, Result};
use crate::netns::{Netns, gettid};
use crate::tracefs::DropTracer;
use hostreach_model::{DropEvent, DropTrace, ProbeOutcome, ProbeResult, Proto, TraceStatus};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct ProbeSpec {
    pub destination: SocketAddr,
    pub proto: Proto,
    pub timeout: Duration,
    /// Record drop reasons during the probe (needs tracefs).
    pub trace: bool,
}

#[derive(Debug, Clone)]
pub struct ProbeRun {
    pub result: ProbeResult,
    pub drops: DropTrace,
}

/// How long to wait, after the kernel reports a drop of the probe's packet, for an answer that would
/// show the drop came with a reply (a REJECT sends an RST or an ICMP error right after dropping).
const GRACE_AFTER_DROP: Duration = Duration::from_millis(40);

/// How long a UDP probe waits for an ICMP error or a reply.
const UDP_WAIT: Duration = Duration::from_millis(600);

/// Runs the probe inside `netns` (None: this process's namespace), on a dedicated thread.
pub fn run(netns: Option<&Netns>, spec: ProbeSpec) -> Result<ProbeRun> {
    match netns {
        Some(ns) => ns.run("hostreach-probe", move || probe_here(&spec)),
        None => {
            let handle = std::thread::Builder::new()
                .name("hostreach-probe".into())
                .spawn(move || probe_here(&spec))
                .map_err(|e| CollectError::io("spawning the probe thread", e))?;
            handle.join().map_err(|_| CollectError::Unavailable("the probe thread panicked".into()))?
        }
    }
}

/// The probe itself, in the calling thread's namespace.
pub fn probe_here(spec: &ProbeSpec) -> Result<ProbeRun> {
    let tid = gettid();
    let mut tracer = None;
    let mut status = TraceStatus::NotRun;
    if spec.trace {
        match DropTracer::start() {
            Ok(t) => {
                tracer = Some(t);
                status = TraceStatus::Recorded;
            }
            Err(e) => status = TraceStatus::Unavailable(e.to_string()),
        }
    }
    let want_proto: u16 = if spec.destination.is_ipv4() { 0x0800 } else { 0x86dd };
    let mut events: Vec<DropEvent> = Vec::new();
    let outcome = {
        let mut watch = Watch { tid, want_proto, tracer: &mut tracer, events: &mut events, drop_seen_at: None };
        match spec.proto {
            Proto::Tcp => tcp(spec, &mut watch),
            Proto::Udp => udp(spec, &mut watch),
        }
    };
    if let Some(t) = tracer.take() {
        events.extend(t.stop());
    }
    for e in &mut events {
        e.attributed = e.pid == tid && e.protocol == want_proto;
    }
    let mut result = outcome?;
    result.tid = Some(tid);
    Ok(ProbeRun { result, drops: DropTrace { status, events } })
}

struct Partial {
    outcome: ProbeOutcome,
    errno: Option<i32>,
    concluded_by_drop: bool,
}

fn new_socket(spec: &ProbeSpec, ty: Type, proto: Protocol) -> Result<Socket> {
    let domain = if spec.destination.is_ipv4() { Domain::IPV4 } else { Domain::IPV6 };
    let s = Socket::new(domain, ty, Some(proto)).map_err(|e| CollectError::io("creating the probe socket", e))?;
    s.set_nonblocking(true).map_err(|e| CollectError::io("probe socket", e))?;
    s.set_cloexec(true).map_err(|e| CollectError::io("probe socket", e))?;
    Ok(s)
}

/// Waits on the probe's socket while reading the drop trace; remembers when the kernel first reported
/// dropping one of the probe's packets, after which only a short grace remains.
struct Watch<'a> {
    tid: u32,
    want_proto: u16,
    tracer: &'a mut Option<DropTracer>,
    events: &'a mut Vec<DropEvent>,
    drop_seen_at: Option<Instant>,
}

enum Wait {
    /// The socket is ready for the events asked.
    Ready,
    /// The deadline passed, or the grace after a reported drop ended (see `Watch::drop_seen_at`).
    Expired,
}

impl Watch<'_> {
    fn wait(&mut self, fd: RawFd, poll_events: i16, deadline: Instant) -> Result<Wait> {
        loop {
            let until = match self.drop_seen_at {
                Some(t) => deadline.min(t + GRACE_AFTER_DROP),
                None => deadline,
            };
            let now = Instant::now();
            if now >= until {
                return Ok(Wait::Expired);
            }
            let trace_fd = if self.drop_seen_at.is_none() { self.tracer.as_ref().map(|t| t.fd().as_raw_fd()) } else { None };
            let (sock_ready, trace_ready) = poll2(fd, poll_events, trace_fd, until - now)?;
            if sock_ready {
                return Ok(Wait::Ready);
            }
            if trace_ready && let Some(t) = self.tracer.as_mut() {
                let fresh = t.read_available();
                let ours = fresh.iter().any(|e| e.pid == self.tid && e.protocol == self.want_proto);
                self.events.extend(fresh);
                if ours && self.drop_seen_at.is_none() {
                    self.drop_seen_at = Some(Instant::now());
                }
            }
        }
    }

    fn by_drop(&self) -> bool {
        self.drop_seen_at.is_some()
    }
}

fn tcp(spec: &ProbeSpec, watch: &mut Watch) -> Result<ProbeResult> {
    let start = Instant::now();
    let sock = new_socket(spec, Type::STREAM, Protocol::TCP)?;
    // Linger 0: closing a connected probe resets it instead of leaving TIME_WAIT on the host.
    let _ = sock.set_linger(Some(Duration::ZERO));
    let partial = match sock.connect(&SockAddr::from(spec.destination)) {
        Ok(()) => Partial { outcome: ProbeOutcome::Connected, errno: None, concluded_by_drop: false },
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => match watch.wait(sock.as_raw_fd(), libc::POLLOUT, start + spec.timeout)? {
            Wait::Ready => match sock.take_error() {
                Ok(None) => Partial { outcome: ProbeOutcome::Connected, errno: None, concluded_by_drop: false },
                Ok(Some(e)) | Err(e) => classify_errno(e.raw_os_error()),
            },
            Wait::Expired => Partial {
                outcome: ProbeOutcome::NoAnswer,
                errno: if watch.by_drop() { None } else { Some(libc::ETIMEDOUT) },
                concluded_by_drop: watch.by_drop(),
            },
        },
        Err(e) => classify_errno(e.raw_os_error()),
    };
    let source = sock.local_addr().ok().and_then(|a| a.as_socket()).filter(|a| a.port() != 0);
    Ok(finish(spec, start, source, partial))
}

fn udp(spec: &ProbeSpec, watch: &mut Watch) -> Result<ProbeResult> {
    let start = Instant::now();
    let sock = new_socket(spec, Type::DGRAM, Protocol::UDP)?;
    // A connected UDP socket gets the ICMP errors the kernel receives for it.
    if let Err(e) = sock.connect(&SockAddr::from(spec.destination)) {
        return Ok(finish(spec, start, None, classify_errno(e.raw_os_error())));
    }
    if let Err(e) = sock.send(b"hostreach probe\n") {
        let source = sock.local_addr().ok().and_then(|a| a.as_socket());
        return Ok(finish(spec, start, source, classify_errno(e.raw_os_error())));
    }
    let deadline = start + spec.timeout.min(UDP_WAIT);
    let partial = loop {
        match watch.wait(sock.as_raw_fd(), libc::POLLIN, deadline)? {
            Wait::Ready => {
                let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 512];
                match sock.recv(&mut buf) {
                    Ok(_) => break Partial { outcome: ProbeOutcome::Connected, errno: None, concluded_by_drop: false },
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => break classify_errno(e.raw_os_error()),
                }
            }
            Wait::Expired if watch.by_drop() => break Partial { outcome: ProbeOutcome::NoAnswer, errno: None, concluded_by_drop: true },
            Wait::Expired => break Partial { outcome: ProbeOutcome::UdpNoError, errno: None, concluded_by_drop: false },
        }
    };
    let source = sock.local_addr().ok().and_then(|a| a.as_socket());
    Ok(finish(spec, start, source, partial))
}

fn finish(spec: &ProbeSpec, start: Instant, source: Option<SocketAddr>, p: Partial) -> ProbeResult {
    ProbeResult {
        proto: spec.proto,
        destination: spec.destination,
        source,
        outcome: p.outcome,
        errno: p.errno,
        error: p.errno.map(errno_name),
        elapsed_ms: start.elapsed().as_millis() as u64,
        timeout_ms: spec.timeout.as_millis() as u64,
        concluded_by_drop: p.concluded_by_drop,
        tid: None,
    }
}

fn classify_errno(errno: Option<i32>) -> Partial {
    let outcome = match errno {
        Some(libc::ECONNREFUSED) => ProbeOutcome::Refused,
        Some(libc::EHOSTUNREACH) | Some(libc::EACCES) | Some(libc::EPERM) | Some(libc::EPROTO) => {
            ProbeOutcome::Unreachable
        }
        Some(libc::ENETUNREACH) => ProbeOutcome::NoRoute,
        Some(libc::ETIMEDOUT) => ProbeOutcome::NoAnswer,
        Some(libc::EADDRNOTAVAIL) => ProbeOutcome::AddressNotAvailable,
        _ => ProbeOutcome::Error,
    };
    Partial { outcome, errno, concluded_by_drop: false }
}

/// The symbolic name of an errno, with its text: `ECONNREFUSED (Connection refused)`.
pub fn errno_name(errno: i32) -> String {
    let name = nix::errno::Errno::from_raw(errno);
    format!("{name:?} ({})", io::Error::from_raw_os_error(errno).to_string().split(" (os error").next().unwrap_or(""))
}

/// poll() on the socket and optionally the trace pipe; returns (socket ready, trace ready).
fn poll2(sock: RawFd, events: i16, trace: Option<RawFd>, wait: Duration) -> Result<(bool, bool)> {
    let mut fds = [
        libc::pollfd { fd: sock, events, revents: 0 },
        libc::pollfd { fd: trace.unwrap_or(-1), events: libc::POLLIN, revents: 0 },
    ];
    let ms = wait.as_millis().clamp(1, i32::MAX as u128) as i32;
    loop {
        // SAFETY: fds is a valid array of two pollfd for the duration of the call; fd -1 is ignored by poll.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(CollectError::io("poll", e));
        }
        let sock_ready = fds[0].revents & (events | libc::POLLERR | libc::POLLHUP) != 0;
        let trace_ready = trace.is_some() && fds[1].revents & libc::POLLIN != 0;
        return Ok((sock_ready, trace_ready));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn spec(dest: SocketAddr, proto: Proto) -> ProbeSpec {
        ProbeSpec { destination: dest, proto, timeout: Duration::from_secs(2), trace: false }
    }

    #[test]
    fn tcp_connects_to_a_listener() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let r = run(None, spec(l.local_addr().unwrap(), Proto::Tcp)).unwrap();
        assert_eq!(r.result.outcome, ProbeOutcome::Connected);
        assert!(r.result.source.is_some());
        assert_eq!(r.drops.status, TraceStatus::NotRun);
    }

    #[test]
    fn tcp_refused_without_listener() {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let r = run(None, spec(SocketAddr::from(([127, 0, 0, 1], port)), Proto::Tcp)).unwrap();
        assert_eq!(r.result.outcome, ProbeOutcome::Refused);
        assert_eq!(r.result.errno, Some(libc::ECONNREFUSED));
        assert!(r.result.error.as_deref().unwrap().starts_with("ECONNREFUSED"));
    }

    #[test]
    fn udp_port_unreachable_is_reported() {
        let port = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let r = run(None, spec(SocketAddr::from(([127, 0, 0, 1], port)), Proto::Udp)).unwrap();
        assert_eq!(r.result.outcome, ProbeOutcome::Refused);
    }

    #[test]
    fn udp_answered() {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = s.local_addr().unwrap();
        let echo = std::thread::spawn(move || {
            let mut b = [0u8; 64];
            let (n, from) = s.recv_from(&mut b).unwrap();
            s.send_to(&b[..n], from).unwrap();
        });
        let r = run(None, spec(addr, Proto::Udp)).unwrap();
        echo.join().unwrap();
        assert_eq!(r.result.outcome, ProbeOutcome::Connected);
    }

    #[test]
    fn traced_refusal_records_no_socket() {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut s = spec(SocketAddr::from(([127, 0, 0, 1], port)), Proto::Tcp);
        s.trace = true;
        let r = run(None, s).unwrap();
        assert_eq!(r.result.outcome, ProbeOutcome::Refused);
        // Tests run as root with tracefs mounted (scripts/test makes sure): the kernel must have said why.
        assert_eq!(r.drops.status, TraceStatus::Recorded, "{:?}", r.drops.status);
        assert!(
            r.drops.events.iter().any(|e| e.attributed && e.reason == "NO_SOCKET"),
            "{:#?}",
            r.drops.events
        );
    }
}
