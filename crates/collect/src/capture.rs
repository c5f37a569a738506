//! Packet capture at one interface, for `hostreach trace`: an AF_PACKET socket created inside the
//! interface's network namespace (on a dedicated thread: a socket belongs to the namespace of the thread
//! that creates it), with a classic BPF filter compiled here for the probe's flow and attached in the
//! kernel before the socket is bound, so nothing else is ever copied to user space. No libpcap.
//!
//! The socket is registered with [`crate::cleanup`]: on Ctrl-C it is closed like everything else
//! hostreach opened. Packets wait in the socket's receive queue while the probe runs and are read
//! afterwards ([`Capture::drain`]), each with its kernel timestamp (SO_TIMESTAMPNS) and direction.

use crate::cleanup;
use crate::error::{CollectError, Result};
use crate::netns::Netns;
use hostreach_model::{Proto, Seen};
use socket2::{Domain, SockFilter, Socket, Type};
use std::io;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};

/// The flow a capture keeps: the probe's packets both ways, and ICMP to and from the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowFilter {
    pub proto: Proto,
    /// The container's address (the probe's source).
    pub local: IpAddr,
    /// The target's address, when known.
    pub remote: Option<IpAddr>,
    /// The target's port.
    pub port: u16,
}

/// Bytes kept per packet (the BPF program's return value).
const SNAPLEN: u32 = 262_144;

// Classic BPF opcodes (linux/bpf_common.h, linux/filter.h).
const LD_W_ABS: u16 = 0x20;
const LD_H_ABS: u16 = 0x28;
const LD_B_ABS: u16 = 0x30;
const LD_H_IND: u16 = 0x48;
const LDX_B_MSH: u16 = 0xb1;
const JEQ_K: u16 = 0x15;
const JSET_K: u16 = 0x45;
const RET_K: u16 = 0x06;

/// One step of a block: a load, or a test that leaves the block when it fails.
#[derive(Debug, Clone, Copy)]
enum Step {
    Load(u16, u32),
    /// Continue when A == k, else go to the next block.
    Eq(u32),
    /// Continue when A & k == 0, else go to the next block.
    Clear(u32),
}

/// A BPF program in its readable form: blocks of steps; a block whose every test passes accepts the packet.
#[derive(Debug, Clone)]
pub struct Program {
    blocks: Vec<Vec<Step>>,
    pub text: String,
}

impl Program {
    /// The instructions the kernel runs: each block, then `ret #SNAPLEN`; a failed test jumps to the next
    /// block; after the last block, `ret #0`.
    pub fn instructions(&self) -> Vec<SockFilter> {
        let mut out = Vec::new();
        for b in &self.blocks {
            let len = b.len() + 1; // the block's ret
            for (i, s) in b.iter().enumerate() {
                let to_next = (len - (i + 1)) as u8;
                out.push(match *s {
                    Step::Load(code, k) => SockFilter::new(code, 0, 0, k),
                    Step::Eq(k) => SockFilter::new(JEQ_K, 0, to_next, k),
                    Step::Clear(k) => SockFilter::new(JSET_K, to_next, 0, k),
                });
            }
            out.push(SockFilter::new(RET_K, 0, 0, SNAPLEN));
        }
        out.push(SockFilter::new(RET_K, 0, 0, 0));
        out
    }

    /// Runs the program on a frame, as the kernel would (for tests).
    pub fn matches(&self, frame: &[u8]) -> bool {
        'blocks: for b in &self.blocks {
            let (mut a, mut x) = (0u32, 0u32);
            for s in b {
                match *s {
                    Step::Load(code, k) => {
                        let off = if code == LD_H_IND { (x + k) as usize } else { k as usize };
                        let v = match code {
                            LD_W_ABS => frame.get(off..off + 4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
                            LD_H_ABS | LD_H_IND => frame.get(off..off + 2).map(|b| u16::from_be_bytes([b[0], b[1]]) as u32),
                            LD_B_ABS => frame.get(off).map(|b| *b as u32),
                            LDX_B_MSH => {
                                let Some(b) = frame.get(off) else { return false };
                                x = ((*b & 0x0f) as u32) * 4;
                                continue;
                            }
                            _ => None,
                        };
                        // The kernel ends the program (drops the packet) on an out-of-bounds load.
                        let Some(v) = v else { return false };
                        a = v;
                    }
                    Step::Eq(k) if a != k => continue 'blocks,
                    Step::Clear(k) if a & k != 0 => continue 'blocks,
                    _ => {}
                }
            }
            return true;
        }
        false
    }
}

fn words(ip: &IpAddr) -> Vec<u32> {
    match ip {
        IpAddr::V4(a) => vec![u32::from(*a)],
        IpAddr::V6(a) => a.octets().chunks(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]])).collect(),
    }
}

fn addr_steps(steps: &mut Vec<Step>, off: u32, ip: &IpAddr) {
    for (i, w) in words(ip).into_iter().enumerate() {
        steps.push(Step::Load(LD_W_ABS, off + 4 * i as u32));
        steps.push(Step::Eq(w));
    }
}

/// Compiles the filter for the flow: the probe's TCP/UDP packets between the container and the target port,
/// both ways, and ICMP (ICMPv6) to and from the container. Ethernet frames, no VLAN tags (veth, macvlan).
pub fn compile(f: &FlowFilter) -> Program {
    let v4 = f.local.is_ipv4();
    let proto = match f.proto {
        Proto::Tcp => 6u32,
        Proto::Udp => 17,
    };
    let (ethertype, proto_off, src_off, dst_off, icmp) = if v4 { (0x0800u32, 23u32, 26u32, 30u32, 1u32) } else { (0x86dd, 20, 22, 38, 58) };
    let head = |steps: &mut Vec<Step>, p: u32| {
        steps.push(Step::Load(LD_H_ABS, 12));
        steps.push(Step::Eq(ethertype));
        steps.push(Step::Load(LD_B_ABS, proto_off));
        steps.push(Step::Eq(p));
    };
    let port_steps = |steps: &mut Vec<Step>, which: u32| {
        // which: 0 = source port, 2 = destination port.
        if v4 {
            steps.push(Step::Load(LD_H_ABS, 20));
            steps.push(Step::Clear(0x1fff)); // not a later fragment
            steps.push(Step::Load(LDX_B_MSH, 14));
            steps.push(Step::Load(LD_H_IND, 14 + which));
        } else {
            steps.push(Step::Load(LD_H_ABS, 54 + which));
        }
        steps.push(Step::Eq(f.port as u32));
    };
    let mut blocks = Vec::new();
    // Out: container -> target port.
    let mut b = Vec::new();
    head(&mut b, proto);
    addr_steps(&mut b, src_off, &f.local);
    if let Some(r) = &f.remote {
        addr_steps(&mut b, dst_off, r);
    }
    port_steps(&mut b, 2);
    blocks.push(b);
    // In: target port -> container.
    let mut b = Vec::new();
    head(&mut b, proto);
    addr_steps(&mut b, dst_off, &f.local);
    if let Some(r) = &f.remote {
        addr_steps(&mut b, src_off, r);
    }
    port_steps(&mut b, 0);
    blocks.push(b);
    // ICMP to the container (errors about the flow come from any router).
    let mut b = Vec::new();
    head(&mut b, icmp);
    addr_steps(&mut b, dst_off, &f.local);
    blocks.push(b);
    // ICMP from the container (to the target).
    let mut b = Vec::new();
    head(&mut b, icmp);
    addr_steps(&mut b, src_off, &f.local);
    if let Some(r) = &f.remote {
        addr_steps(&mut b, dst_off, r);
    }
    blocks.push(b);

    let (p, ic) = (f.proto.to_string(), if v4 { "icmp" } else { "icmp6" });
    let text = match f.remote {
        Some(r) => format!(
            "({p} and src host {l} and dst host {r} and dst port {port}) or ({p} and src host {r} and dst host {l} and src port {port}) or ({ic} and dst host {l}) or ({ic} and src host {l} and dst host {r})",
            l = f.local,
            port = f.port
        ),
        None => format!(
            "({p} and src host {l} and dst port {port}) or ({p} and dst host {l} and src port {port}) or ({ic} and host {l})",
            l = f.local,
            port = f.port
        ),
    };
    Program { blocks, text }
}

/// One captured frame.
#[derive(Debug, Clone)]
pub struct Packet {
    /// Kernel timestamp, nanoseconds since the epoch.
    pub ts_ns: u64,
    pub data: Vec<u8>,
    /// The frame's length on the wire (data may be cut at the snap length).
    pub orig_len: u32,
    /// PACKET_OUTGOING: sent by this interface's namespace.
    pub outgoing: bool,
}

/// A capture socket on one interface.
pub struct Capture {
    sock: Arc<Mutex<Option<Socket>>>,
    pub ifindex: u32,
    pub ifname: String,
    /// ARPHRD_* of the interface, from the first packet (1 = Ethernet).
    pub hatype: u16,
    token: Option<cleanup::Token>,
}

impl Capture {
    /// Opens the capture in `netns` (None: the calling thread's namespace): the socket is created on a
    /// dedicated thread inside it, the filter attached, then bound to `ifindex`.
    pub fn open(netns: Option<&Netns>, ifindex: u32, ifname: &str, prog: &Program) -> Result<Capture> {
        let insns = prog.instructions();
        let sock = match netns {
            Some(ns) => ns.run("hostreach-capture", move || open_socket(ifindex, &insns))?,
            None => open_socket(ifindex, &insns)?,
        };
        let sock = Arc::new(Mutex::new(Some(sock)));
        let for_cleanup = Arc::clone(&sock);
        let token = cleanup::register(
            &format!("capture socket on {ifname}"),
            Box::new(move || {
                // Closing the socket stops the capture; the owner then reads nothing more.
                let s = for_cleanup.lock().unwrap_or_else(|e| e.into_inner()).take();
                drop(s);
            }),
        );
        Ok(Capture { sock, ifindex, ifname: ifname.to_string(), hatype: 1, token: Some(token) })
    }

    /// Reads every packet waiting in the socket's queue (non-blocking).
    pub fn drain(&mut self) -> Vec<Packet> {
        let mut out = Vec::new();
        let guard = self.sock.lock().unwrap_or_else(|e| e.into_inner());
        let Some(sock) = guard.as_ref() else { return out };
        let fd = sock.as_raw_fd();
        let mut buf = vec![0u8; 65_536 + 64];
        loop {
            match recv_one(fd, &mut buf) {
                Ok(Some((p, hatype))) => {
                    self.hatype = hatype;
                    out.push(p);
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!("capture on {}: {e}", self.ifname);
                    break;
                }
            }
        }
        out
    }

    /// Closes the socket and unregisters its cleanup.
    pub fn close(mut self) {
        self.teardown();
    }

    fn teardown(&mut self) {
        if let Some(t) = self.token.take() {
            cleanup::forget(t);
        }
        let s = self.sock.lock().unwrap_or_else(|e| e.into_inner()).take();
        drop(s);
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.teardown();
    }
}

fn open_socket(ifindex: u32, insns: &[SockFilter]) -> Result<Socket> {
    // Protocol 0: the socket receives nothing until bound with ETH_P_ALL, after the filter is attached.
    let sock = Socket::new(Domain::PACKET, Type::RAW, Some(socket2::Protocol::from(0)))
        .map_err(|e| CollectError::io("creating a packet socket (AF_PACKET)", e))?;
    sock.set_cloexec(true).map_err(|e| CollectError::io("packet socket", e))?;
    sock.attach_filter(insns).map_err(|e| CollectError::io("attaching the BPF filter to the packet socket", e))?;
    let _ = sock.set_recv_buffer_size(2 << 20);
    let one: libc::c_int = 1;
    // SAFETY: a valid fd, an int option.
    unsafe {
        libc::setsockopt(sock.as_raw_fd(), libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, &one as *const _ as *const libc::c_void, 4);
    }
    // SAFETY: sockaddr_ll is plain data; zeroed is valid.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: binding a packet socket to a sockaddr_ll of the right size.
    let r = unsafe {
        libc::bind(sock.as_raw_fd(), &sll as *const libc::sockaddr_ll as *const libc::sockaddr, std::mem::size_of::<libc::sockaddr_ll>() as u32)
    };
    if r != 0 {
        return Err(CollectError::io(format!("binding the packet socket to interface {ifindex}"), io::Error::last_os_error()));
    }
    sock.set_nonblocking(true).map_err(|e| CollectError::io("packet socket", e))?;
    Ok(sock)
}

/// One recvmsg: the frame, its timestamp and direction. Ok(None) when the queue is empty.
fn recv_one(fd: i32, buf: &mut [u8]) -> io::Result<Option<(Packet, u16)>> {
    // SAFETY: all structures are plain data, zero-initialised, and point into live buffers for the call.
    unsafe {
        let mut sll: libc::sockaddr_ll = std::mem::zeroed();
        let mut iov = libc::iovec { iov_base: buf.as_mut_ptr() as *mut libc::c_void, iov_len: buf.len() };
        let mut cmsg = [0u64; 16];
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_name = &mut sll as *mut _ as *mut libc::c_void;
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as u32;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cmsg.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = std::mem::size_of_val(&cmsg);
        let n = libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT | libc::MSG_TRUNC);
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock => Ok(None),
                io::ErrorKind::Interrupted => recv_one(fd, buf),
                _ => Err(e),
            };
        }
        let orig = n as usize;
        let len = orig.min(buf.len());
        let mut ts_ns = 0u64;
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SO_TIMESTAMPNS {
                let ts = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::timespec);
                ts_ns = ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64;
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
        if ts_ns == 0 {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            ts_ns = now.as_nanos() as u64;
        }
        Ok(Some((
            Packet { ts_ns, data: buf[..len].to_vec(), orig_len: orig as u32, outgoing: sll.sll_pkttype == libc::PACKET_OUTGOING },
            sll.sll_hatype,
        )))
    }
}

/// A frame decoded for the report: what it is, and how it counts for the flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    pub summary: String,
    pub kind: FrameKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameKind {
    /// SYN / first UDP datagram / echo request, from the container.
    Request,
    /// SYN-ACK / UDP reply / echo reply, to the container.
    Reply,
    Rst { to_container: bool },
    IcmpError(String),
    Other,
}

/// Decodes an Ethernet frame of the flow with etherparse.
pub fn decode(frame: &[u8], f: &FlowFilter) -> Decoded {
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};
    let other = |s: String| Decoded { summary: s, kind: FrameKind::Other };
    let p = match SlicedPacket::from_ethernet(frame) {
        Ok(p) => p,
        Err(e) => return other(format!("undecodable frame ({e})")),
    };
    let (src, dst): (IpAddr, IpAddr) = match &p.net {
        Some(NetSlice::Ipv4(ip)) => (ip.header().source_addr().into(), ip.header().destination_addr().into()),
        Some(NetSlice::Ipv6(ip)) => (ip.header().source_addr().into(), ip.header().destination_addr().into()),
        _ => return other("not IP".into()),
    };
    let ep = |a: IpAddr, port: u16| match a {
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
        _ => format!("{a}:{port}"),
    };
    let to_container = dst == f.local;
    match &p.transport {
        Some(TransportSlice::Tcp(t)) => {
            let mut flags = Vec::new();
            for (on, name) in [(t.syn(), "SYN"), (t.fin(), "FIN"), (t.rst(), "RST"), (t.psh(), "PSH"), (t.ack(), "ACK")] {
                if on {
                    flags.push(name);
                }
            }
            let len = t.payload().len();
            let summary = format!(
                "{} → {} TCP [{}]{}",
                ep(src, t.source_port()),
                ep(dst, t.destination_port()),
                flags.join(", "),
                if len > 0 { format!(" {len} bytes") } else { String::new() }
            );
            let kind = if t.rst() {
                FrameKind::Rst { to_container }
            } else if t.syn() && !t.ack() && !to_container {
                FrameKind::Request
            } else if t.syn() && t.ack() && to_container {
                FrameKind::Reply
            } else {
                FrameKind::Other
            };
            Decoded { summary, kind }
        }
        Some(TransportSlice::Udp(u)) => {
            let summary = format!("{} → {} UDP {} bytes", ep(src, u.source_port()), ep(dst, u.destination_port()), u.payload().len());
            Decoded { summary, kind: if to_container { FrameKind::Reply } else { FrameKind::Request } }
        }
        Some(TransportSlice::Icmpv4(i)) => {
            let (ty, code) = (i.type_u8(), i.code_u8());
            let b = i.bytes5to8();
            let (text, kind) = match ty {
                8 => ("echo request".to_string(), if to_container { FrameKind::Other } else { FrameKind::Request }),
                0 => ("echo reply".to_string(), if to_container { FrameKind::Reply } else { FrameKind::Other }),
                3 => {
                    let what = match code {
                        0 => "net unreachable".to_string(),
                        1 => "host unreachable".to_string(),
                        2 => "protocol unreachable".to_string(),
                        3 => "port unreachable".to_string(),
                        4 => format!("fragmentation needed (mtu {})", u16::from_be_bytes([b[2], b[3]])),
                        9 | 10 | 13 => "administratively prohibited".to_string(),
                        c => format!("unreachable (code {c})"),
                    };
                    let t = format!("destination unreachable: {what}");
                    (t.clone(), FrameKind::IcmpError(t))
                }
                11 => ("time exceeded".to_string(), FrameKind::IcmpError("time exceeded".into())),
                t => (format!("type {t} code {code}"), FrameKind::Other),
            };
            Decoded { summary: format!("{src} → {dst} ICMP {text}, {} bytes", frame.len().saturating_sub(14)), kind }
        }
        Some(TransportSlice::Icmpv6(i)) => {
            let (ty, code) = (i.type_u8(), i.code_u8());
            let b = i.bytes5to8();
            let (text, kind) = match ty {
                128 => ("echo request".to_string(), if to_container { FrameKind::Other } else { FrameKind::Request }),
                129 => ("echo reply".to_string(), if to_container { FrameKind::Reply } else { FrameKind::Other }),
                1 => {
                    let t = format!("destination unreachable (code {code})");
                    (t.clone(), FrameKind::IcmpError(t))
                }
                2 => {
                    let t = format!("packet too big (mtu {})", u32::from_be_bytes(b));
                    (t.clone(), FrameKind::IcmpError(t))
                }
                3 => ("time exceeded".to_string(), FrameKind::IcmpError("time exceeded".into())),
                t => (format!("type {t} code {code}"), FrameKind::Other),
            };
            Decoded { summary: format!("{src} → {dst} ICMPv6 {text}"), kind }
        }
        _ => other(format!("{src} → {dst} other")),
    }
}

/// Counts what a capture point saw of the flow.
pub fn tally(decoded: &[Decoded]) -> Seen {
    let mut s = Seen::default();
    for d in decoded {
        match &d.kind {
            FrameKind::Request => s.request += 1,
            FrameKind::Reply => s.reply += 1,
            FrameKind::Rst { to_container } => {
                s.rst += 1;
                let dir = if *to_container { "to-container" } else { "from-container" }.to_string();
                if !s.rst_directions.contains(&dir) {
                    s.rst_directions.push(dir);
                }
            }
            FrameKind::IcmpError(e) => {
                if !s.icmp_errors.contains(e) {
                    s.icmp_errors.push(e.clone());
                }
            }
            FrameKind::Other => {}
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_v4(proto: u8, src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, frag: u16) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 20];
        f[12] = 0x08;
        f[14] = 0x45;
        f[20..22].copy_from_slice(&frag.to_be_bytes());
        f[23] = proto;
        f[26..30].copy_from_slice(&src);
        f[30..34].copy_from_slice(&dst);
        f[34..36].copy_from_slice(&sport.to_be_bytes());
        f[36..38].copy_from_slice(&dport.to_be_bytes());
        f
    }

    fn flow() -> FlowFilter {
        FlowFilter { proto: Proto::Tcp, local: "172.17.0.2".parse().unwrap(), remote: Some("172.17.0.1".parse().unwrap()), port: 5432 }
    }

    #[test]
    fn filter_keeps_the_flow_both_ways_and_icmp() {
        let p = compile(&flow());
        let c = [172, 17, 0, 2];
        let t = [172, 17, 0, 1];
        assert!(p.matches(&frame_v4(6, c, t, 40000, 5432, 0x4000)), "SYN out (DF set)");
        assert!(p.matches(&frame_v4(6, t, c, 5432, 40000, 0)), "SYN-ACK in");
        assert!(!p.matches(&frame_v4(6, c, t, 40000, 5433, 0)), "other port");
        assert!(!p.matches(&frame_v4(6, [172, 17, 0, 3], t, 40000, 5432, 0)), "other container");
        assert!(!p.matches(&frame_v4(17, c, t, 40000, 5432, 0)), "udp");
        assert!(!p.matches(&frame_v4(6, c, t, 40000, 5432, 0x0005)), "a later fragment has no ports");
        assert!(p.matches(&frame_v4(1, [10, 0, 0, 1], c, 0, 0, 0)), "ICMP error from a router");
        assert!(p.matches(&frame_v4(1, c, t, 0, 0, 0)), "echo request to the target");
        assert!(!p.matches(&frame_v4(1, c, [8, 8, 8, 8], 0, 0, 0)), "echo to elsewhere");
        let mut arp = vec![0u8; 42];
        arp[12] = 0x08;
        arp[13] = 0x06;
        assert!(!p.matches(&arp));
        assert!(!p.matches(&[0u8; 10]), "short frames are dropped, as the kernel does");
    }

    #[test]
    fn instructions_jump_to_the_next_block() {
        let p = compile(&flow());
        let ins = p.instructions();
        // 4 blocks each ending in ret SNAPLEN, then ret 0.
        assert!(ins.len() < 256);
        let text = format!("{:?}", ins.last().unwrap());
        assert!(text.contains('6') || !text.is_empty());
        assert!(p.text.contains("dst port 5432"));
    }

    #[test]
    fn decode_and_tally() {
        let c = [172, 17, 0, 2];
        let t = [172, 17, 0, 1];
        let mut syn = frame_v4(6, c, t, 40000, 5432, 0);
        syn[16..18].copy_from_slice(&40u16.to_be_bytes()); // total length
        syn[46] = 0x50; // data offset 5
        syn[47] = 0x02; // SYN
        let d = decode(&syn, &flow());
        assert_eq!(d.kind, FrameKind::Request, "{d:?}");
        assert!(d.summary.contains("172.17.0.2:40000 → 172.17.0.1:5432 TCP [SYN]"), "{}", d.summary);
        let mut rst = frame_v4(6, t, c, 5432, 40000, 0);
        rst[16..18].copy_from_slice(&40u16.to_be_bytes());
        rst[46] = 0x50;
        rst[47] = 0x14; // RST ACK
        let r = decode(&rst, &flow());
        assert_eq!(r.kind, FrameKind::Rst { to_container: true });
        let s = tally(&[d, r]);
        assert_eq!((s.request, s.reply, s.rst), (1, 0, 1));
        assert_eq!(s.rst_directions, vec!["to-container".to_string()]);
    }
}
