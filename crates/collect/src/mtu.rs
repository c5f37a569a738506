//! The MTU search: ICMP echo requests with DF set, sent from inside the subject's network namespace on a
//! dedicated thread, to find the largest IP packet that reaches the target, in at most [`MAX_PROBES`]
//! probes; then, for a TCP target, one connection that sends full-sized segments while the kernel's own
//! TCP_INFO says what got through.
//!
//! The echo requests go through a raw ICMP socket with `IP_MTU_DISCOVER = IP_PMTUDISC_PROBE`
//! (`IPV6_PMTUDISC_PROBE`): DF is set and the kernel's cached path MTU is ignored, so every size can be
//! tried; the device MTU still applies (EMSGSIZE locally). The socket sees every ICMP message of the
//! namespace: echo replies and "fragmentation needed" / "packet too big" errors are matched to the probe
//! by the echo identifier and sequence quoted in them.
//!
//! What this leaves behind is what any application would: a "fragmentation needed" that comes back
//! updates the namespace's route cache (a PMTU exception that expires after
//! `net.ipv4.route.mtu_expires`, 10 minutes by default).

use crate::error::{CollectError, Result};
use crate::netns::Netns;
use hostreach_model::{MtuAttempt, MtuOutcome, MtuSearch, TcpTransfer};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io;
use std::mem::MaybeUninit;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// The search never sends more echo requests than this.
pub const MAX_PROBES: usize = 12;

/// The smallest size tried first when the full size fails: every IPv4 host must take 576 bytes, every IPv6
/// link 1280.
const SMALL_V4: u32 = 576;
const SMALL_V6: u32 = 1280;
/// The absolute minimum (IPv4's 68).
const TINY_V4: u32 = 68;

#[derive(Debug, Clone)]
pub struct MtuSpec {
    pub destination: IpAddr,
    /// The MTU of the subject's interface towards the destination: the largest size tried.
    pub interface_mtu: u32,
    /// How long to wait for an answer before the round-trip time is known.
    pub first_wait: Duration,
    /// Also a TCP transfer to this endpoint (the target's port), after the echo search.
    pub tcp: Option<SocketAddr>,
    pub tcp_wait: Duration,
}

/// Runs the search in `netns` (None: this process's namespace) on a dedicated thread.
pub fn search(netns: Option<&Netns>, spec: MtuSpec) -> Result<MtuSearch> {
    match netns {
        Some(ns) => ns.run("hostreach-mtu", move || Ok(search_here(&spec))),
        None => std::thread::Builder::new()
            .name("hostreach-mtu".into())
            .spawn(move || search_here(&spec))
            .map_err(|e| CollectError::io("spawning the MTU thread", e))?
            .join()
            .map_err(|_| CollectError::Unavailable("the MTU thread panicked".into())),
    }
}

/// The search in the calling thread's namespace. Never fails: what went wrong is in `error`.
pub fn search_here(spec: &MtuSpec) -> MtuSearch {
    let start = Instant::now();
    let mut out = MtuSearch {
        destination: Some(spec.destination),
        method: "icmp-echo".into(),
        interface_mtu: Some(spec.interface_mtu),
        ..Default::default()
    };
    match Pinger::new(spec.destination) {
        Ok(mut p) => run_search(&mut p, spec, &mut out),
        Err(e) => out.error = Some(e.to_string()),
    }
    if let Some(ep) = spec.tcp {
        out.tcp = Some(tcp_transfer(ep, spec.tcp_wait));
    }
    out.elapsed_ms = start.elapsed().as_millis() as u64;
    out
}

/// The search strategy, over anything that answers "does a packet of this size pass?".
pub trait Prober {
    fn probe(&mut self, size: u32, wait: Duration) -> MtuAttempt;
    fn v6(&self) -> bool;
}

/// Full size first (one probe when nothing is wrong); the size a "fragmentation needed" names next, and one
/// byte more to pin it; otherwise a size every path must carry, then a binary search between the largest
/// size that passed and the smallest that did not. At most [`MAX_PROBES`] probes.
pub fn run_search(p: &mut dyn Prober, spec: &MtuSpec, out: &mut MtuSearch) {
    let top = spec.interface_mtu;
    let v6 = p.v6();
    let mut st = State { p, wait: spec.first_wait, first_wait: spec.first_wait, lo: None, hi: None, hint: None };

    // 1. Full size.
    let o = st.try_size(top, out);
    if o == MtuOutcome::Passed {
        out.largest_passing = Some(top);
        out.path_mtu = Some(top);
        return;
    }
    if o == MtuOutcome::Unreachable {
        out.error = Some(format!("{} answered the echo request with an ICMP unreachable: it cannot be measured this way", spec.destination));
        return;
    }
    // 2. The size a frag-needed named, if it is plausible, and one byte more to pin it.
    let floor = if v6 { SMALL_V6 } else { TINY_V4 };
    if let Some(m) = st.hint.take().filter(|m| *m >= floor && *m < top)
        && st.try_size(m, out) == MtuOutcome::Passed
        && m + 1 < top
    {
        st.try_size(m + 1, out);
    }
    // 3. A size every path carries, to know the target answers at all.
    if st.lo.is_none() {
        let small = if v6 { SMALL_V6 } else { SMALL_V4 }.min(top);
        let o = st.try_size(small, out);
        if o != MtuOutcome::Passed && !v6 && small > TINY_V4 {
            st.try_size(TINY_V4, out);
        }
    }
    if st.lo.is_none() {
        out.error = Some(format!(
            "{} answered no echo request, not even of {} bytes: it does not answer ICMP echo (or nothing gets through), so the path MTU cannot be measured this way",
            spec.destination,
            if v6 { SMALL_V6 } else { TINY_V4 }
        ));
        out.smallest_failing = st.hi;
        return;
    }
    // 4. Binary search between lo (passes) and hi (fails), jumping to a frag-needed's MTU when it falls inside.
    while out.attempts.len() < MAX_PROBES {
        let (l, h) = (st.lo.unwrap_or(0), st.hi.unwrap_or(top + 1));
        if h <= l + 1 {
            break;
        }
        let mid = match st.hint.take() {
            Some(m) if m > l && m < h => m,
            _ => l + (h - l) / 2,
        };
        st.try_size(mid, out);
    }
    out.largest_passing = st.lo;
    out.smallest_failing = st.hi;
    if let (Some(l), Some(h)) = (st.lo, st.hi)
        && h == l + 1
    {
        out.path_mtu = Some(l);
    }
}

struct State<'a> {
    p: &'a mut dyn Prober,
    wait: Duration,
    first_wait: Duration,
    /// Largest size that passed, smallest that did not, and a frag-needed MTU not tried yet.
    lo: Option<u32>,
    hi: Option<u32>,
    hint: Option<u32>,
}

impl State<'_> {
    fn try_size(&mut self, size: u32, out: &mut MtuSearch) -> MtuOutcome {
        let a = self.p.probe(size, self.wait);
        let o = a.outcome;
        match o {
            MtuOutcome::Passed => {
                self.lo = Some(self.lo.map_or(size, |l| l.max(size)));
                // A few round trips, at least 100 ms, at most the first wait.
                let rtt = Duration::from_micros(a.elapsed_us);
                self.wait = (rtt * 4 + Duration::from_millis(50)).clamp(Duration::from_millis(100), self.first_wait.max(Duration::from_millis(100)));
            }
            MtuOutcome::FragNeeded | MtuOutcome::Lost | MtuOutcome::LocalError => {
                self.hi = Some(self.hi.map_or(size, |h| h.min(size)));
                if let Some(m) = a.mtu.filter(|m| *m < size) {
                    self.hint = Some(m);
                }
            }
            MtuOutcome::Unreachable => {}
        }
        if o == MtuOutcome::FragNeeded && a.mtu.is_some() {
            out.frag_needed_mtu = a.mtu;
            out.frag_needed_from = a.from;
        }
        out.attempts.push(a);
        o
    }
}

/// Echo requests through a raw ICMP socket with DF set.
pub struct Pinger {
    sock: Socket,
    dst: IpAddr,
    id: u16,
    seq: u16,
}

impl Pinger {
    pub fn new(dst: IpAddr) -> Result<Pinger> {
        let (domain, proto) = match dst {
            IpAddr::V4(_) => (Domain::IPV4, Protocol::ICMPV4),
            IpAddr::V6(_) => (Domain::IPV6, Protocol::ICMPV6),
        };
        let sock = Socket::new(domain, Type::RAW, Some(proto)).map_err(|e| CollectError::io("creating a raw ICMP socket for the MTU search", e))?;
        sock.set_nonblocking(true).map_err(|e| CollectError::io("raw ICMP socket", e))?;
        let (level, opt, val) = match dst {
            IpAddr::V4(_) => (libc::IPPROTO_IP, libc::IP_MTU_DISCOVER, libc::IP_PMTUDISC_PROBE),
            IpAddr::V6(_) => (libc::IPPROTO_IPV6, libc::IPV6_MTU_DISCOVER, libc::IPV6_PMTUDISC_PROBE),
        };
        setsockopt_int(&sock, level, opt, val).map_err(|e| CollectError::io("setting IP_MTU_DISCOVER on the ICMP socket", e))?;
        let id = (std::process::id() as u16) ^ (Instant::now().elapsed().subsec_nanos() as u16) ^ 0x4852;
        Ok(Pinger { sock, dst, id, seq: 0 })
    }

    fn overhead(&self) -> u32 {
        if self.dst.is_ipv4() { 28 } else { 48 }
    }

    fn echo(&self, seq: u16, payload: usize) -> Vec<u8> {
        let mut b = vec![0u8; 8 + payload];
        b[0] = if self.dst.is_ipv4() { 8 } else { 128 };
        b[4..6].copy_from_slice(&self.id.to_be_bytes());
        b[6..8].copy_from_slice(&seq.to_be_bytes());
        for (i, x) in b[8..].iter_mut().enumerate() {
            *x = (i as u8) ^ 0x5a;
        }
        if self.dst.is_ipv4() {
            let c = checksum(&b);
            b[2..4].copy_from_slice(&c.to_be_bytes());
        }
        // ICMPv6: the kernel fills in the checksum on raw ICMPv6 sockets.
        b
    }

    /// Matches a received ICMP message to our echo `seq`.
    fn classify(&self, pkt: &[u8], seq: u16) -> Option<(MtuOutcome, Option<u32>, Option<IpAddr>)> {
        if self.dst.is_ipv4() {
            // Raw IPv4 sockets receive the IP header too.
            let ihl = (*pkt.first()? as usize & 0x0f) * 4;
            let from = IpAddr::from(<[u8; 4]>::try_from(pkt.get(12..16)?).ok()?);
            let icmp = pkt.get(ihl..)?;
            let (ty, code) = (*icmp.first()?, *icmp.get(1)?);
            match ty {
                0 => (icmp.get(4..6)? == self.id.to_be_bytes() && icmp.get(6..8)? == seq.to_be_bytes() && from == self.dst)
                    .then_some((MtuOutcome::Passed, None, Some(from))),
                3 | 11 | 12 => {
                    let inner = icmp.get(8..)?;
                    let iihl = (*inner.first()? as usize & 0x0f) * 4;
                    let iicmp = inner.get(iihl..)?;
                    let ours = *inner.get(9)? == 1 && iicmp.first() == Some(&8) && iicmp.get(4..6)? == self.id.to_be_bytes() && iicmp.get(6..8)? == seq.to_be_bytes();
                    if !ours {
                        return None;
                    }
                    if ty == 3 && code == 4 {
                        let mtu = u16::from_be_bytes([*icmp.get(6)?, *icmp.get(7)?]) as u32;
                        Some((MtuOutcome::FragNeeded, (mtu > 0).then_some(mtu), Some(from)))
                    } else {
                        Some((MtuOutcome::Unreachable, None, Some(from)))
                    }
                }
                _ => None,
            }
        } else {
            let (ty, _code) = (*pkt.first()?, *pkt.get(1)?);
            match ty {
                129 => (pkt.get(4..6)? == self.id.to_be_bytes() && pkt.get(6..8)? == seq.to_be_bytes()).then_some((MtuOutcome::Passed, None, None)),
                1..=4 => {
                    let inner = pkt.get(8..)?;
                    let iicmp = inner.get(40..)?;
                    let ours = *inner.get(6)? == 58 && iicmp.first() == Some(&128) && iicmp.get(4..6)? == self.id.to_be_bytes() && iicmp.get(6..8)? == seq.to_be_bytes();
                    if !ours {
                        return None;
                    }
                    if ty == 2 {
                        let mtu = u32::from_be_bytes(pkt.get(4..8)?.try_into().ok()?);
                        Some((MtuOutcome::FragNeeded, Some(mtu), None))
                    } else {
                        Some((MtuOutcome::Unreachable, None, None))
                    }
                }
                _ => None,
            }
        }
    }
}

impl Prober for Pinger {
    fn v6(&self) -> bool {
        self.dst.is_ipv6()
    }

    fn probe(&mut self, size: u32, wait: Duration) -> MtuAttempt {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let start = Instant::now();
        let payload = size.saturating_sub(self.overhead()) as usize;
        let pkt = self.echo(seq, payload);
        let done = |outcome, mtu, from| MtuAttempt { size, outcome, mtu, from, elapsed_us: start.elapsed().as_micros() as u64 };
        if let Err(e) = self.sock.send_to(&pkt, &SockAddr::from(SocketAddr::new(self.dst, 0))) {
            tracing::debug!("MTU probe of {size} bytes: {e}");
            return done(MtuOutcome::LocalError, None, None);
        }
        let deadline = start + wait;
        let mut buf = [MaybeUninit::<u8>::uninit(); 2048];
        loop {
            let now = Instant::now();
            if now >= deadline {
                return done(MtuOutcome::Lost, None, None);
            }
            let mut pfd = libc::pollfd { fd: self.sock.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            let ms = (deadline - now).as_millis().clamp(1, 60_000) as i32;
            // SAFETY: one valid pollfd for the duration of the call.
            let n = unsafe { libc::poll(&mut pfd, 1, ms) };
            if n <= 0 {
                continue;
            }
            loop {
                match self.sock.recv_from(&mut buf) {
                    Ok((len, from)) => {
                        // SAFETY: recv_from initialised the first `len` bytes.
                        let bytes: &[u8] = unsafe { std::slice::from_raw_parts(buf.as_ptr() as *const u8, len) };
                        if let Some((o, mtu, src)) = self.classify(bytes, seq) {
                            let src = src.or_else(|| from.as_socket().map(|s| s.ip()));
                            return done(o, mtu, src);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        tracing::debug!("MTU probe: {e}");
                        break;
                    }
                }
            }
        }
    }
}

fn setsockopt_int(s: &Socket, level: i32, opt: i32, val: i32) -> io::Result<()> {
    // SAFETY: a valid fd and a pointer to an int of the size given.
    let r = unsafe { libc::setsockopt(s.as_raw_fd(), level, opt, &val as *const i32 as *const libc::c_void, std::mem::size_of::<i32>() as u32) };
    if r == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// The Internet checksum (RFC 1071).
pub fn checksum(b: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for c in b.chunks(2) {
        let w = if c.len() == 2 { u16::from_be_bytes([c[0], c[1]]) } else { u16::from_be_bytes([c[0], 0]) };
        sum += w as u32;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Bytes sent by the TCP transfer: enough for several full-sized segments, little enough to be polite.
const TCP_BYTES: usize = 64 * 1024;

/// Connects, sends [`TCP_BYTES`] of zeros in full-sized segments and waits until the kernel reports them all
/// acknowledged (SIOCOUTQ drops to 0) or `wait` passes; TCP_INFO gives the path MTU and the retransmissions.
/// The connection is closed with a reset (SO_LINGER 0), like the probe's.
pub fn tcp_transfer(dst: SocketAddr, wait: Duration) -> TcpTransfer {
    let start = Instant::now();
    let mut t = TcpTransfer {
        destination: dst,
        connected: false,
        bytes_sent: 0,
        bytes_acked: 0,
        complete: false,
        pmtu: None,
        mss_start: None,
        mss_end: None,
        retransmits: 0,
        elapsed_ms: 0,
        error: None,
    };
    let domain = if dst.is_ipv4() { Domain::IPV4 } else { Domain::IPV6 };
    let sock = match Socket::new(domain, Type::STREAM, Some(Protocol::TCP)) {
        Ok(s) => s,
        Err(e) => {
            t.error = Some(format!("socket: {e}"));
            return t;
        }
    };
    let _ = sock.set_linger(Some(Duration::ZERO));
    let _ = sock.set_tcp_nodelay(true);
    if let Err(e) = sock.connect_timeout(&SockAddr::from(dst), wait) {
        t.error = Some(format!("connect: {e}"));
        t.elapsed_ms = start.elapsed().as_millis() as u64;
        return t;
    }
    t.connected = true;
    let info0 = tcp_info(&sock);
    t.mss_start = info0.map(|i| i.tcpi_snd_mss);
    let _ = sock.set_nonblocking(true);
    let data = vec![0u8; TCP_BYTES];
    let deadline = Instant::now() + wait;
    let mut sent = 0usize;
    while sent < data.len() && Instant::now() < deadline {
        match sock.send(&data[sent..]) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(2)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                t.error = Some(format!("send: {e}"));
                break;
            }
        }
    }
    t.bytes_sent = sent as u64;
    // Wait for the acknowledgements.
    loop {
        let outq = outq(&sock).unwrap_or(0);
        if outq == 0 && t.error.is_none() {
            t.complete = sent == data.len();
            break;
        }
        if Instant::now() >= deadline || t.error.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    if let Some(i) = tcp_info(&sock) {
        t.pmtu = Some(i.tcpi_pmtu);
        t.mss_end = Some(i.tcpi_snd_mss);
        t.retransmits = i.tcpi_total_retrans;
        t.bytes_acked = i.tcpi_bytes_acked.min(t.bytes_sent);
    } else {
        t.bytes_acked = t.bytes_sent.saturating_sub(outq(&sock).unwrap_or(0) as u64);
    }
    t.elapsed_ms = start.elapsed().as_millis() as u64;
    t
}

fn tcp_info(s: &Socket) -> Option<libc::tcp_info> {
    let mut info = MaybeUninit::<libc::tcp_info>::zeroed();
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: the buffer is a zeroed tcp_info of the size given; the kernel writes at most `len` bytes.
    let r = unsafe { libc::getsockopt(s.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_INFO, info.as_mut_ptr() as *mut libc::c_void, &mut len) };
    // SAFETY: zeroed is a valid tcp_info, and the kernel filled a prefix of it.
    (r == 0).then(|| unsafe { info.assume_init() })
}

/// Bytes not yet acknowledged by the peer (SIOCOUTQ).
fn outq(s: &Socket) -> Option<i32> {
    let mut n: libc::c_int = 0;
    // SAFETY: SIOCOUTQ (= TIOCOUTQ) writes one int.
    let r = unsafe { libc::ioctl(s.as_raw_fd(), libc::TIOCOUTQ, &mut n) };
    (r == 0).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A simulated path: passes up to `mtu`; above it, a frag-needed (when `icmp`) or silence.
    struct Sim {
        mtu: u32,
        icmp: bool,
        answers: bool,
    }
    impl Prober for Sim {
        fn v6(&self) -> bool {
            false
        }
        fn probe(&mut self, size: u32, _wait: Duration) -> MtuAttempt {
            let (outcome, mtu) = if !self.answers {
                (MtuOutcome::Lost, None)
            } else if size <= self.mtu {
                (MtuOutcome::Passed, None)
            } else if self.icmp {
                (MtuOutcome::FragNeeded, Some(self.mtu))
            } else {
                (MtuOutcome::Lost, None)
            };
            MtuAttempt { size, outcome, mtu, from: None, elapsed_us: 300 }
        }
    }

    fn spec() -> MtuSpec {
        MtuSpec {
            destination: "10.0.0.1".parse().unwrap(),
            interface_mtu: 1500,
            first_wait: Duration::from_millis(500),
            tcp: None,
            tcp_wait: Duration::from_secs(1),
        }
    }

    fn run(mtu: u32, icmp: bool, answers: bool) -> MtuSearch {
        let mut out = MtuSearch::default();
        run_search(&mut Sim { mtu, icmp, answers }, &spec(), &mut out);
        out
    }

    #[test]
    fn full_size_passes_in_one_probe() {
        let s = run(1500, true, true);
        assert_eq!(s.path_mtu, Some(1500));
        assert_eq!(s.probes(), 1);
    }

    #[test]
    fn frag_needed_is_pinned_in_three_probes() {
        let s = run(1400, true, true);
        assert_eq!(s.path_mtu, Some(1400), "{s:#?}");
        assert_eq!(s.frag_needed_mtu, Some(1400));
        assert_eq!(s.probes(), 3, "{s:#?}");
    }

    #[test]
    fn blackhole_is_found_exactly_within_twelve_probes_for_every_mtu() {
        for mtu in (576..1500).step_by(7).chain([576, 577, 1280, 1420, 1450, 1499]) {
            let s = run(mtu, false, true);
            assert_eq!(s.path_mtu, Some(mtu), "mtu {mtu}: {s:#?}");
            assert!(s.probes() <= MAX_PROBES, "mtu {mtu}: {} probes", s.probes());
            assert_eq!(s.frag_needed_mtu, None);
        }
        for mtu in (68..576).step_by(13) {
            let s = run(mtu, false, true);
            assert!(s.probes() <= MAX_PROBES, "mtu {mtu}: {} probes", s.probes());
            assert!(s.largest_passing.unwrap() <= mtu);
        }
    }

    #[test]
    fn frag_needed_path_stays_within_budget_for_every_mtu() {
        for mtu in (576..1500).step_by(11) {
            let s = run(mtu, true, true);
            assert_eq!(s.path_mtu, Some(mtu), "mtu {mtu}: {s:#?}");
            assert!(s.probes() <= 3);
        }
    }

    #[test]
    fn silent_target_is_an_error_not_a_size() {
        let s = run(1500, false, false);
        assert!(s.error.as_deref().unwrap().contains("does not answer ICMP echo"), "{s:#?}");
        assert_eq!(s.path_mtu, None);
        assert_eq!(s.largest_passing, None);
        assert!(s.probes() <= 3);
    }

    #[test]
    fn checksum_of_an_echo() {
        // type 8 code 0 id 1 seq 1 no payload: checksum 0xf7fd
        let b = [8u8, 0, 0, 0, 0, 1, 0, 1];
        assert_eq!(checksum(&b), 0xf7fd);
    }

    #[test]
    fn loopback_echo_passes_at_full_size() {
        // Needs a raw socket (root). The loopback MTU is 65536: ask for 1500.
        let mut s = spec();
        s.destination = "127.0.0.1".parse().unwrap();
        let r = search_here(&s);
        if r.error.as_deref().is_some_and(|e| e.contains("permission")) {
            return;
        }
        assert_eq!(r.path_mtu, Some(1500), "{r:#?}");
    }
}
