//! TCP and UDP sockets of a network namespace, from sock_diag (NETLINK_SOCK_DIAG / inet_diag), and
//! their owning processes, from a scan of `/proc/*/fd`.
//!
//! `/proc/net/tcp` would follow the namespace of the process's *main thread*; a sock_diag socket
//! answers for the namespace of the thread that created it, so [`read`] opens it on a thread inside
//! the namespace. Socket inodes are global, so the owner scan runs outside, once, for any namespace.

use crate::error::{CollectError, Result};
use crate::netns::Netns;
use hostreach_model::{ProcessRef, Proto, SocketFact};
use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_sock_diag::SockDiagMessage;
use netlink_packet_sock_diag::constants::{AF_INET, AF_INET6, IPPROTO_TCP, IPPROTO_UDP};
use crate::netlink::DumpPart;
use netlink_packet_core::{NlasIterator, Parseable};
use netlink_packet_sock_diag::inet::{
    ExtensionFlags, InetRequest, InetResponseHeader, SocketId, StateFlags, nlas::Nla,
};
use netlink_sys::protocols::NETLINK_SOCK_DIAG;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Which sockets to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketQuery {
    pub tcp: bool,
    pub udp: bool,
    /// TCP in LISTEN; UDP sockets with no connected peer.
    pub listening_only: bool,
    /// Only sockets bound to this local port (filtered in the kernel).
    pub port: Option<u16>,
    /// Find the owning process of each socket (scan of /proc/*/fd).
    pub owners: bool,
}

impl Default for SocketQuery {
    /// Every TCP and UDP socket, with owners.
    fn default() -> Self {
        SocketQuery {
            tcp: true,
            udp: true,
            listening_only: false,
            port: None,
            owners: true,
        }
    }
}

impl SocketQuery {
    /// TCP listeners and unconnected UDP sockets, optionally on one port, with owners.
    pub fn listeners(port: Option<u16>) -> Self {
        SocketQuery {
            listening_only: true,
            port,
            ..Self::default()
        }
    }
}

/// TCP/UDP sockets (IPv4 and IPv6) of the namespace the calling thread is in, with owners when
/// `q.owners` is set (a process we may not inspect leaves `process` None).
pub fn read_current(q: &SocketQuery) -> Result<Vec<SocketFact>> {
    if !q.owners {
        return diag_current(q);
    }
    let ns = std::fs::metadata("/proc/thread-self/ns/net").ok().map(|m| std::os::unix::fs::MetadataExt::ino(&m));
    // The owner scan of the namespace's processes runs while the kernel lists the sockets.
    std::thread::scope(|s| {
        let scan = s.spawn(move || first_pass(std::path::Path::new("/proc"), ns));
        let sockets = diag_current(q);
        let first = scan.join().unwrap_or_default();
        let mut sockets = sockets?;
        attach_owners(&mut sockets, first);
        Ok(sockets)
    })
}

/// The same for another namespace: sock_diag runs on a thread inside it while the owner scan
/// runs here.
pub fn read(ns: &Netns, q: &SocketQuery) -> Result<Vec<SocketFact>> {
    let query = *q;
    if !q.owners {
        return ns.run("hr-sockets", move || diag_current(&query));
    }
    let inode = ns.inode();
    std::thread::scope(|s| {
        let scan = s.spawn(move || first_pass(std::path::Path::new("/proc"), Some(inode)));
        let sockets = ns.run("hr-sockets", move || diag_current(&query));
        let first = scan.join().unwrap_or_default();
        let mut sockets = sockets?;
        attach_owners(&mut sockets, first);
        Ok(sockets)
    })
}

fn attach_owners(sockets: &mut [SocketFact], first: FirstPass) {
    let inodes: HashSet<u64> = sockets
        .iter()
        .map(|s| s.inode)
        .filter(|i| *i != 0)
        .collect();
    let owners = owners_from(std::path::Path::new("/proc"), first, &inodes);
    for s in sockets.iter_mut() {
        s.process = owners.get(&s.inode).cloned();
    }
}

/// The sock_diag part of [`read_current`]: no owners.
fn diag_current(q: &SocketQuery) -> Result<Vec<SocketFact>> {
    let mut out = Vec::new();
    for (proto, ipproto, enabled) in [
        (Proto::Tcp, IPPROTO_TCP, q.tcp),
        (Proto::Udp, IPPROTO_UDP, q.udp),
    ] {
        if !enabled {
            continue;
        }
        for family in [AF_INET, AF_INET6] {
            let states = match proto {
                Proto::Tcp if q.listening_only => StateFlags::LISTEN,
                _ => StateFlags::all(),
            };
            let mut request = inet_request(family, ipproto, states, q.port);
            let what = format!(
                "listing {proto} sockets (sock_diag, {})",
                if family == AF_INET { "IPv4" } else { "IPv6" }
            );
            let before = out.len();
            let keep = |fact: &SocketFact| {
                (!q.listening_only || fact.is_listener()) && q.port.is_none_or(|p| p == fact.local_port)
            };
            match diag_dump(&mut request, &what, proto, &mut out, keep) {
                Ok(()) => {}
                Err(e)
                    if family == AF_INET6 && crate::netlink::errno_of(&e) == Some(libc::ENOENT) =>
                {
                    // No IPv6 in this kernel: nothing to list.
                    tracing::debug!("{e}");
                    out.truncate(before);
                    continue;
                }
                Err(e) if crate::netlink::errno_of(&e) == Some(libc::ENOENT) => {
                    let module = if proto == Proto::Tcp {
                        "tcp_diag"
                    } else {
                        "udp_diag"
                    };
                    return Err(CollectError::Unavailable(format!(
                        "{what}: the kernel has no sock_diag handler for it (module {module} not loaded?)"
                    )));
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(out)
}

/// An inet_diag_req_v2 dump request, with a bytecode filter on the local port when one is given.
fn inet_request(family: u8, protocol: u8, states: StateFlags, port: Option<u16>) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    // INET_DIAG_SKV6ONLY needs no extension bit (its number, 11, does not fit the 8-bit mask): the
    // kernel sends it on its own for AF_INET6 sockets in LISTEN or CLOSE (unconnected UDP).
    let socket_id = if family == AF_INET {
        SocketId::new_v4()
    } else {
        SocketId::new_v6()
    };
    let msg = SockDiagMessage::InetRequest(InetRequest {
        family,
        protocol,
        extensions: ExtensionFlags::empty(),
        states,
        socket_id,
    });
    let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
    packet.finalize();
    let mut buf = vec![0; packet.buffer_len()];
    packet.serialize(&mut buf);
    if let Some(port) = port {
        buf.extend_from_slice(&port_filter_attr(port));
        let len = buf.len() as u32;
        buf[0..4].copy_from_slice(&len.to_ne_bytes());
    }
    buf
}

/// The INET_DIAG_REQ_BYTECODE attribute for "local port == P", written as `sport >= P && sport <= P`
/// (INET_DIAG_BC_S_EQ only exists since Linux 4.17). Each `struct inet_diag_bc_op { u8 code; u8 yes;
/// u16 no; }` is followed by one carrying the port in `no`; a jump past the end (`no` = remaining + 4)
/// rejects the socket.
fn port_filter_attr(port: u16) -> [u8; 20] {
    const INET_DIAG_BC_S_GE: u8 = 2;
    const INET_DIAG_BC_S_LE: u8 = 3;
    port_range_attr(INET_DIAG_BC_S_GE, INET_DIAG_BC_S_LE, port)
}

/// The same on the remote (destination) port: `dport >= P && dport <= P`.
fn remote_port_filter_attr(port: u16) -> [u8; 20] {
    const INET_DIAG_BC_D_GE: u8 = 4;
    const INET_DIAG_BC_D_LE: u8 = 5;
    port_range_attr(INET_DIAG_BC_D_GE, INET_DIAG_BC_D_LE, port)
}

fn port_range_attr(ge: u8, le: u8, port: u16) -> [u8; 20] {
    const INET_DIAG_REQ_BYTECODE: u16 = 1;
    let ops: [(u8, u8, u16); 4] = [(ge, 8, 20), (0, 0, port), (le, 8, 12), (0, 0, port)];
    let mut attr = [0u8; 20];
    attr[0..2].copy_from_slice(&20u16.to_ne_bytes());
    attr[2..4].copy_from_slice(&INET_DIAG_REQ_BYTECODE.to_ne_bytes());
    for (i, (code, yes, no)) in ops.iter().enumerate() {
        let o = 4 + i * 4;
        attr[o] = *code;
        attr[o + 1] = *yes;
        attr[o + 2..o + 4].copy_from_slice(&no.to_ne_bytes());
    }
    attr
}

/// Sockets of the calling thread's namespace connected to `dest` (every state, TIME_WAIT
/// included; the remote port is filtered in the kernel), without owners: the local ports in use
/// towards one destination. An IPv4 destination also matches AF_INET6 sockets connected to its
/// IPv4-mapped address.
pub fn connected_to_current(dest: std::net::SocketAddr, proto: Proto) -> Result<Vec<SocketFact>> {
    let ipproto = if proto == Proto::Tcp { IPPROTO_TCP } else { IPPROTO_UDP };
    let want = |a: &IpAddr| match (a, dest.ip()) {
        (IpAddr::V6(v6), IpAddr::V4(d)) => v6.to_ipv4_mapped() == Some(d),
        (a, d) => *a == d,
    };
    let mut out = Vec::new();
    for family in [AF_INET, AF_INET6] {
        if family == AF_INET && dest.is_ipv6() {
            continue;
        }
        let mut request = inet_request(family, ipproto, StateFlags::all(), None);
        request.extend_from_slice(&remote_port_filter_attr(dest.port()));
        let len = request.len() as u32;
        request[0..4].copy_from_slice(&len.to_ne_bytes());
        let what = format!("listing {proto} sockets connected to {dest} (sock_diag)");
        let keep = |fact: &SocketFact| fact.remote_port == Some(dest.port()) && fact.remote_address.as_ref().is_some_and(want);
        match diag_dump(&mut request, &what, proto, &mut out, keep) {
            Ok(()) => {}
            Err(e) if crate::netlink::errno_of(&e) == Some(libc::ENOENT) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// A TCP state as `ss` names it.
pub fn tcp_state_name(state: u8) -> std::borrow::Cow<'static, str> {
    let name = match state {
        1 => "ESTABLISHED",
        2 => "SYN_SENT",
        3 => "SYN_RECV",
        4 => "FIN_WAIT1",
        5 => "FIN_WAIT2",
        6 => "TIME_WAIT",
        7 => "CLOSE",
        8 => "CLOSE_WAIT",
        9 => "LAST_ACK",
        10 => "LISTEN",
        11 => "CLOSING",
        12 => "SYN_RECV", // TCP_NEW_SYN_RECV: a request socket, shown as SYN-RECV by ss
        n => return format!("STATE_{n}").into(),
    };
    name.into()
}

/// A UDP socket's state as `ss` names it: unconnected ones are in TCP_CLOSE, shown as UNCONN.
pub fn udp_state_name(state: u8) -> std::borrow::Cow<'static, str> {
    match state {
        7 => "UNCONN".into(),
        n => tcp_state_name(n),
    }
}

fn is_unspecified(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => *a == Ipv4Addr::UNSPECIFIED,
        IpAddr::V6(a) => *a == Ipv6Addr::UNSPECIFIED,
    }
}

/// One sock_diag dump, each answer turned into a fact as it arrives (no message is kept) and
/// appended to `out` when `keep` says so. A dump the kernel repeats (tables changed while read)
/// drops what this call appended before.
fn diag_dump(
    request: &mut [u8],
    what: &str,
    proto: Proto,
    out: &mut Vec<SocketFact>,
    keep: impl Fn(&SocketFact) -> bool,
) -> Result<()> {
    let start = out.len();
    crate::netlink::dump_each(NETLINK_SOCK_DIAG, request, what, |part| match part {
        DumpPart::Restart => out.truncate(start),
        DumpPart::Message(chunk) => {
            // Only SOCK_DIAG_BY_FAMILY answers carry sockets; the payload follows the 16-byte header.
            if u16::from_ne_bytes([chunk[4], chunk[5]]) != SOCK_DIAG_BY_FAMILY {
                return;
            }
            let payload = &chunk[16..];
            let Ok(header) = InetResponseHeader::parse(payload) else {
                tracing::debug!("{what}: skipping a short sock_diag answer ({} bytes)", payload.len());
                return;
            };
            let v6only = (header.family == AF_INET6).then(|| v6only_of(&payload[INET_RESPONSE_LEN.min(payload.len())..])).flatten();
            let fact = socket_fact(proto, &header, v6only);
            if keep(&fact) {
                out.push(fact);
            }
        }
    })
}

/// struct inet_diag_msg: the attributes follow it.
const INET_RESPONSE_LEN: usize = 72;
const SOCK_DIAG_BY_FAMILY: u16 = 20;

/// INET_DIAG_SKV6ONLY among the attributes of one answer (only that one is decoded).
fn v6only_of(attrs: &[u8]) -> Option<bool> {
    const INET_DIAG_SKV6ONLY: u16 = 11;
    NlasIterator::new(attrs).flatten().find(|nla| nla.kind() == INET_DIAG_SKV6ONLY).and_then(|nla| match Nla::parse(&nla) {
        Ok(Nla::SkV6Only(b)) => Some(b),
        _ => None,
    })
}

fn socket_fact(proto: Proto, h: &InetResponseHeader, v6only: Option<bool>) -> SocketFact {
    let id = &h.socket_id;
    let has_remote = id.destination_port != 0 || !is_unspecified(&id.destination_address);
    let state = match proto {
        Proto::Tcp => tcp_state_name(h.state),
        Proto::Udp => udp_state_name(h.state),
    };
    let listening = proto == Proto::Tcp && h.state == 10;
    SocketFact {
        proto,
        local_address: id.source_address,
        local_port: id.source_port,
        remote_address: (has_remote && !listening).then_some(id.destination_address),
        remote_port: (has_remote && !listening).then_some(id.destination_port),
        state,
        v6only,
        bound_device: (id.interface_id != 0).then_some(id.interface_id),
        inode: u64::from(h.inode),
        uid: h.uid,
        recv_q: h.recv_queue,
        send_q: h.send_queue,
        process: None,
    }
}

/// Maps socket inodes to the process holding them, by reading the links in `/proc/<pid>/fd`.
/// The lowest PID holding a socket wins (a forking server's parent), processes that vanish or that
/// we may not inspect are skipped.
pub fn socket_owners(inodes: &HashSet<u64>) -> HashMap<u64, Arc<ProcessRef>> {
    socket_owners_in(std::path::Path::new("/proc"), inodes, None)
}

/// The scan, made fast for hosts with very many sockets: processes in the sockets' own network
/// namespace (`netns`, by `/proc/PID/ns/net` inode) are scanned first ([`first_pass`], which needs
/// no list of sockets, so it can run while the kernel lists them), and the rest only if some socket
/// is still without an owner (a process may hold a socket of another namespace); each process's fd
/// directory is read with readlinkat(2) relative to it; the processes are split over a few threads.
fn socket_owners_in(
    proc_root: &std::path::Path,
    inodes: &HashSet<u64>,
    netns: Option<u64>,
) -> HashMap<u64, Arc<ProcessRef>> {
    if inodes.is_empty() {
        return HashMap::new();
    }
    owners_from(proc_root, first_pass(proc_root, netns), inodes)
}

/// Every socket link held by the processes of one namespace (all processes when `netns` is
/// None), and the processes left for a second pass.
#[derive(Default)]
struct FirstPass {
    found: Vec<(u64, u32)>,
    rest: Vec<u32>,
    netns: Option<u64>,
}

fn first_pass(proc_root: &std::path::Path, netns: Option<u64>) -> FirstPass {
    let (first, rest) = processes(proc_root, netns);
    FirstPass { found: scan_parallel(proc_root, &first, None), rest, netns }
}

/// The PIDs in `/proc`, split into those in network namespace `netns` (all of them when None) and
/// the others.
fn processes(proc_root: &std::path::Path, netns: Option<u64>) -> (Vec<u32>, Vec<u32>) {
    let Ok(dir) = std::fs::read_dir(proc_root) else {
        return (Vec::new(), Vec::new());
    };
    let mut pids: Vec<u32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .collect();
    pids.sort_unstable();
    match netns {
        Some(ino) => pids.iter().partition(|pid| {
            std::fs::metadata(proc_root.join(pid.to_string()).join("ns/net"))
                .map(|m| std::os::unix::fs::MetadataExt::ino(&m) == ino)
                .unwrap_or(false)
        }),
        None => (pids, Vec::new()),
    }
}

/// The owners of `inodes`: from the first pass, then from the other processes if some socket is
/// still without one.
fn owners_from(proc_root: &std::path::Path, first: FirstPass, inodes: &HashSet<u64>) -> HashMap<u64, Arc<ProcessRef>> {
    let mut found: HashMap<u64, u32> = HashMap::with_capacity(inodes.len());
    let add = |found: &mut HashMap<u64, u32>, pairs: Vec<(u64, u32)>| {
        for (inode, pid) in pairs {
            if inodes.contains(&inode) {
                let e = found.entry(inode).or_insert(pid);
                *e = (*e).min(pid);
            }
        }
    };
    add(&mut found, first.found);
    if found.len() < inodes.len() {
        // The first pass ran while the kernel listed the sockets: a socket opened, or a process
        // started, in the meantime was not seen. Scan the namespace's processes again (as they are
        // now) for just the sockets still without an owner, then the other namespaces' processes.
        let missing: HashSet<u64> = inodes.iter().filter(|i| !found.contains_key(i)).copied().collect();
        let (now, rest) = processes(proc_root, first.netns);
        add(&mut found, scan_parallel(proc_root, &now, Some(&missing)));
        if found.len() < inodes.len() {
            let missing: HashSet<u64> = inodes.iter().filter(|i| !found.contains_key(i)).copied().collect();
            let others: Vec<u32> = if first.netns.is_some() { rest } else { first.rest };
            add(&mut found, scan_parallel(proc_root, &others, Some(&missing)));
        }
    }
    let mut refs: HashMap<u32, Arc<ProcessRef>> = HashMap::new();
    found
        .into_iter()
        .map(|(inode, pid)| (inode, refs.entry(pid).or_insert_with(|| Arc::new(process_ref(proc_root, pid))).clone()))
        .collect()
}

/// (inode, pid) for every socket held by one of `pids` (only the wanted inodes when `inodes` is
/// given), over a few threads.
fn scan_parallel(proc_root: &std::path::Path, pids: &[u32], inodes: Option<&HashSet<u64>>) -> Vec<(u64, u32)> {
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).clamp(1, 8);
    if threads == 1 || pids.len() < 2 {
        let mut out = Vec::new();
        for pid in pids {
            scan_one(proc_root, *pid, inodes, &mut out);
        }
        return out;
    }
    // Interleaved chunks: big processes (often consecutive PIDs) spread over the threads.
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let mut out = Vec::new();
                    for pid in pids.iter().skip(t).step_by(threads) {
                        scan_one(proc_root, *pid, inodes, &mut out);
                    }
                    out
                })
            })
            .collect();
        let mut all = Vec::new();
        for h in handles {
            all.extend(h.join().unwrap_or_default());
        }
        all
    })
}

fn scan_one(proc_root: &std::path::Path, pid: u32, inodes: Option<&HashSet<u64>>, out: &mut Vec<(u64, u32)>) {
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    let fd_dir = proc_root.join(pid.to_string()).join("fd");
    // One open, then readlinkat relative to it: no path walk per descriptor.
    let Ok(dirf) = std::fs::File::open(&fd_dir) else {
        return; // gone, or not ours to see
    };
    let mut buf = [0u8; 64];
    let mut read_link = |name: &[u8]| -> Option<()> {
        // SAFETY: a NUL-terminated name, a buffer of the given length, a directory fd we own.
        let n = unsafe { libc::readlinkat(dirf.as_raw_fd(), name.as_ptr().cast(), buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            return None;
        }
        // A fake /proc in tests has real symlinks; anything longer is not a socket link.
        if (n as usize) < buf.len()
            && let Some(inode) = parse_socket_link(&buf[..n as usize])
            && inodes.is_none_or(|set| set.contains(&inode))
        {
            out.push((inode, pid));
        }
        Some(())
    };
    // Since Linux 6.2 the size of /proc/PID/fd is the number of open descriptors. Descriptors are
    // mostly dense from 0, so probing 0, 1, 2, ... until that many answered saves listing the
    // directory (a fifth of the cost per descriptor); a sparse table falls back to the listing.
    let mut name = Vec::with_capacity(16);
    let count = dirf.metadata().map(|m| m.size()).unwrap_or(0);
    let (mut seen, mut next, mut misses) = (0u64, 0u64, 0u64);
    if count > 0 && proc_root == std::path::Path::new("/proc") {
        while seen < count && misses <= 64 + seen / 8 {
            name.clear();
            let _ = std::io::Write::write_fmt(&mut name, format_args!("{next}\0"));
            match read_link(&name) {
                Some(()) => seen += 1,
                None => misses += 1,
            }
            next += 1;
        }
        if seen >= count {
            return;
        }
    }
    let Ok(entries) = std::fs::read_dir(&fd_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let bytes = file_name.as_bytes();
        // Descriptors below `next` were read by the probe above.
        if next > 0 && std::str::from_utf8(bytes).ok().and_then(|t| t.parse::<u64>().ok()).is_some_and(|fd| fd < next) {
            continue;
        }
        name.clear();
        name.extend_from_slice(bytes);
        name.push(0);
        read_link(&name);
    }
}

/// `socket:[12345]` -> 12345.
fn parse_socket_link(link: &[u8]) -> Option<u64> {
    let inner = link.strip_prefix(b"socket:[")?.strip_suffix(b"]")?;
    std::str::from_utf8(inner).ok()?.parse().ok()
}

fn process_ref(proc_root: &std::path::Path, pid: u32) -> ProcessRef {
    let base = proc_root.join(pid.to_string());
    let name = std::fs::read_to_string(base.join("comm"))
        .map(|s| s.trim_end_matches('\n').to_string())
        .unwrap_or_default();
    let cmdline = std::fs::read(base.join("cmdline")).ok().and_then(|raw| {
        let parts: Vec<String> = raw
            .split(|b| *b == 0)
            .filter(|p| !p.is_empty())
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect();
        (!parts.is_empty()).then(|| parts.join(" "))
    });
    ProcessRef { pid, name, cmdline }
}

#[cfg(test)]
mod tests {
    use super::*;
    use socket2::{Domain, Protocol, Socket, Type};
    use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
    use std::os::unix::fs::MetadataExt;

    fn my_comm() -> String {
        std::fs::read_to_string("/proc/self/comm")
            .unwrap()
            .trim_end()
            .to_string()
    }

    fn inode_of(fd: &impl std::os::fd::AsRawFd) -> u64 {
        std::fs::metadata(format!("/proc/self/fd/{}", fd.as_raw_fd()))
            .unwrap()
            .ino()
    }

    fn find(sockets: &[SocketFact], proto: Proto, inode: u64) -> &SocketFact {
        sockets
            .iter()
            .find(|s| s.proto == proto && s.inode == inode)
            .unwrap_or_else(|| panic!("socket {inode} not listed: {sockets:#?}"))
    }

    #[test]
    fn tcp_listener_with_owner() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let inode = inode_of(&l);
        let q = SocketQuery {
            tcp: true,
            udp: false,
            listening_only: true,
            port: Some(port),
            owners: true,
        };
        let all = read_current(&q).unwrap();
        assert_eq!(all.len(), 1, "the port filter leaves only ours: {all:#?}");
        let s = find(&all, Proto::Tcp, inode);
        assert_eq!(s.state, "LISTEN");
        assert!(s.is_listener());
        assert_eq!(s.local_address, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(s.local_port, port);
        assert_eq!(s.remote_address, None);
        assert_eq!(s.v6only, None);
        assert_eq!(s.uid, nix::unistd::geteuid().as_raw());
        assert_eq!(s.recv_q, 0, "nothing waiting to be accepted");
        assert_eq!(s.send_q, 128, "backlog of std's listen()");
        let p = s
            .process
            .as_ref()
            .expect("our own process is always visible");
        assert_eq!(p.pid, std::process::id());
        assert_eq!(p.name, my_comm());
        assert!(
            p.cmdline.as_deref().unwrap().contains("hostreach_collect"),
            "{p:?}"
        );
    }

    #[test]
    fn accept_queue_and_established_pair() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let c = TcpStream::connect(addr).unwrap();
        let client_port = c.local_addr().unwrap().port();
        let q = SocketQuery {
            tcp: true,
            udp: false,
            listening_only: false,
            port: None,
            owners: false,
        };
        let all = read_current(&q).unwrap();
        let listener = find(&all, Proto::Tcp, inode_of(&l));
        assert_eq!(
            listener.recv_q, 1,
            "one connection waits in the accept queue"
        );
        let client = find(&all, Proto::Tcp, inode_of(&c));
        assert_eq!(client.state, "ESTABLISHED");
        assert_eq!(client.local_port, client_port);
        assert_eq!(client.remote_address, Some(addr.ip()));
        assert_eq!(client.remote_port, Some(addr.port()));
        assert!(client.process.is_none(), "owners not asked");
        // The server side, not accepted yet, has no inode (no file) until accept().
        let server = all
            .iter()
            .find(|s| s.local_port == addr.port() && s.remote_port == Some(client_port))
            .expect("server side of the pair");
        assert_eq!(server.state, "ESTABLISHED");
        assert_eq!(server.inode, 0);
        // A port filter is on the local port: the client (ephemeral local port) drops out.
        let q = SocketQuery {
            port: Some(addr.port()),
            ..q
        };
        let filtered = read_current(&q).unwrap();
        assert!(
            filtered.iter().all(|s| s.local_port == addr.port()),
            "{filtered:#?}"
        );
        assert_eq!(filtered.len(), 2, "listener and server side: {filtered:#?}");
    }

    #[test]
    fn v6_listeners_report_v6only() {
        for only in [true, false] {
            let s = Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP)).unwrap();
            s.set_only_v6(only).unwrap();
            s.bind(&"[::]:0".parse::<SocketAddr>().unwrap().into())
                .unwrap();
            s.listen(16).unwrap();
            let port = s.local_addr().unwrap().as_socket().unwrap().port();
            let all = read_current(&SocketQuery::listeners(Some(port))).unwrap();
            let f = find(&all, Proto::Tcp, inode_of(&s));
            assert_eq!(f.v6only, Some(only));
            assert_eq!(f.local_endpoint(), format!("[::]:{port}"));
            assert_eq!(f.send_q, 16);
        }
    }

    #[test]
    fn udp_sockets_unconnected_and_connected() {
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = u.local_addr().unwrap().port();
        let v6 = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP)).unwrap();
        v6.set_only_v6(true).unwrap();
        v6.bind(&"[::1]:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        c.connect(("127.0.0.1", port)).unwrap();

        let all = read_current(&SocketQuery {
            tcp: false,
            ..SocketQuery::default()
        })
        .unwrap();
        let s = find(&all, Proto::Udp, inode_of(&u));
        assert_eq!(s.state, "UNCONN");
        assert_eq!(s.remote_address, None);
        assert!(s.is_listener());
        assert_eq!(s.process.as_ref().unwrap().pid, std::process::id());
        let s6 = find(&all, Proto::Udp, inode_of(&v6));
        assert_eq!(s6.local_address, IpAddr::V6(Ipv6Addr::LOCALHOST));
        assert_eq!(s6.v6only, Some(true));
        let sc = find(&all, Proto::Udp, inode_of(&c));
        assert_eq!(sc.state, "ESTABLISHED");
        assert_eq!(sc.remote_port, Some(port));
        assert!(!sc.is_listener());
        assert!(all.iter().all(|s| s.proto == Proto::Udp));

        let listeners = read_current(&SocketQuery {
            tcp: false,
            ..SocketQuery::listeners(None)
        })
        .unwrap();
        assert!(listeners.iter().any(|s| s.inode == inode_of(&u)));
        assert!(
            !listeners.iter().any(|s| s.inode == inode_of(&c)),
            "a connected UDP socket is no listener"
        );
    }

    #[test]
    fn port_filter_excludes_other_ports() {
        let a = TcpListener::bind("127.0.0.1:0").unwrap();
        let b = TcpListener::bind("127.0.0.1:0").unwrap();
        let pa = a.local_addr().unwrap().port();
        let all = read_current(&SocketQuery {
            owners: false,
            ..SocketQuery::listeners(Some(pa))
        })
        .unwrap();
        assert!(all.iter().all(|s| s.local_port == pa), "{all:#?}");
        assert!(all.iter().any(|s| s.inode == inode_of(&a)));
        assert!(!all.iter().any(|s| s.inode == inode_of(&b)));
        // The kernel filter agrees with listing everything and filtering here.
        let everything = read_current(&SocketQuery {
            owners: false,
            ..SocketQuery::listeners(None)
        })
        .unwrap();
        assert!(everything.iter().any(|s| s.inode == inode_of(&b)));
    }

    #[test]
    fn read_in_own_namespace_via_netns_matches() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let ns = Netns::of_pid(std::process::id()).unwrap();
        match read(&ns, &SocketQuery::listeners(Some(port))) {
            Ok(all) => {
                let s = find(&all, Proto::Tcp, inode_of(&l));
                assert_eq!(s.process.as_ref().unwrap().pid, std::process::id());
            }
            Err(e) => assert!(e.is_permission(), "{e}"),
        }
    }

    /// A socket created in a fresh namespace is seen from inside it only; a socket of ours is not
    /// seen from inside. The owner scan (run outside) still finds this process.
    #[test]
    fn fresh_namespace_sees_only_its_sockets() {
        let outside = TcpListener::bind("127.0.0.1:0").unwrap();
        let outside_port = outside.local_addr().unwrap().port();
        let r = std::thread::spawn(move || -> Option<(Vec<SocketFact>, u64, u16)> {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).ok()?;
            // lo is down, but binding the unspecified address works.
            let l = TcpListener::bind("0.0.0.0:0").unwrap();
            let port = l.local_addr().unwrap().port();
            let all = read_current(&SocketQuery::listeners(None)).unwrap();
            Some((all, inode_of(&l), port))
        })
        .join()
        .unwrap();
        let Some((inside, inode, port)) = r else {
            eprintln!("skipped: unshare(CLONE_NEWNET) not permitted");
            return;
        };
        assert_eq!(inside.len(), 1, "{inside:#?}");
        assert_eq!(inside[0].inode, inode);
        assert_eq!(inside[0].local_port, port);
        assert!(
            !inside
                .iter()
                .any(|s| s.local_port == outside_port && s.inode == inode_of(&outside))
        );
    }

    #[test]
    fn owners_of_unknown_inodes_are_absent_and_empty_set_is_free() {
        assert!(socket_owners(&HashSet::new()).is_empty());
        let none = socket_owners(&[u64::MAX].into_iter().collect());
        assert!(none.is_empty());
    }

    #[test]
    fn owner_scan_finds_a_socket_on_a_sparse_descriptor() {
        use std::os::fd::AsRawFd;
        // The probe of descriptors 0, 1, 2, ... gives up on a sparse table and lists the directory.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let inode = inode_of(&l);
        // SAFETY: duplicating a descriptor we own onto a number we then own and close.
        let high = unsafe { libc::dup2(l.as_raw_fd(), 900) };
        assert_eq!(high, 900);
        drop(l);
        let found = socket_owners(&[inode].into_iter().collect());
        unsafe { libc::close(900) };
        assert_eq!(found.get(&inode).map(|p| p.pid), Some(std::process::id()), "{found:?}");
    }

    #[test]
    fn sockets_opened_during_the_overlapped_scan_still_get_their_owner() {
        // The first pass runs while the kernel lists the sockets; a process that starts (or a
        // socket opened) in between is found by the rescan for the inodes left without an owner.
        let root = std::env::temp_dir().join(format!("hr-fakeproc-late-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let proc_with = |pid: &str, links: &[(&str, &str)]| {
            let d = root.join(pid);
            std::fs::create_dir_all(d.join("fd")).unwrap();
            std::fs::write(d.join("comm"), "srv\n").unwrap();
            std::fs::write(d.join("cmdline"), b"srv\0").unwrap();
            for (fd, target) in links {
                std::os::unix::fs::symlink(target, d.join("fd").join(fd)).unwrap();
            }
        };
        proc_with("5", &[("3", "socket:[500]")]);
        let first = first_pass(&root, None);
        proc_with("9", &[("4", "socket:[900]")]); // started after the first pass
        std::os::unix::fs::symlink("socket:[501]", root.join("5/fd/7")).unwrap(); // opened after it
        let found = owners_from(&root, first, &[500, 501, 900].into_iter().collect());
        std::fs::remove_dir_all(&root).unwrap();
        assert_eq!(found.get(&500).map(|p| p.pid), Some(5));
        assert_eq!(found.get(&501).map(|p| p.pid), Some(5));
        assert_eq!(found.get(&900).map(|p| p.pid), Some(9));
    }

    #[test]
    fn owner_scan_on_fake_proc() {
        let root = std::env::temp_dir().join(format!("hr-fakeproc-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for (pid, comm, cmdline, links) in [
            (
                "7",
                "nginx\n",
                &b"nginx: master\0"[..],
                vec![("3", "socket:[100]"), ("4", "pipe:[5]")],
            ),
            (
                "12",
                "nginx\n",
                &b"nginx: worker\0"[..],
                vec![("3", "socket:[100]"), ("5", "socket:[200]")],
            ),
            ("30", "kworker\n", &b""[..], vec![]),
        ] {
            let d = root.join(pid);
            std::fs::create_dir_all(d.join("fd")).unwrap();
            std::fs::write(d.join("comm"), comm).unwrap();
            std::fs::write(d.join("cmdline"), cmdline).unwrap();
            for (fd, target) in links {
                std::os::unix::fs::symlink(target, d.join("fd").join(fd)).unwrap();
            }
        }
        std::fs::create_dir_all(root.join("self")).unwrap();
        let found = socket_owners_in(&root, &[100, 200, 300].into_iter().collect(), None);
        assert_eq!(
            *found[&100],
            ProcessRef {
                pid: 7,
                name: "nginx".into(),
                cmdline: Some("nginx: master".into())
            }
        );
        assert_eq!(found[&200].pid, 12);
        assert!(!found.contains_key(&300));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn kernel_refusal_keeps_its_errno() {
        // Bytecode with an unknown operation: the kernel's audit refuses it with EINVAL.
        let mut req = inet_request(AF_INET, IPPROTO_TCP, StateFlags::all(), Some(80));
        let first_op = req.len() - 16;
        req[first_op] = 99;
        let e = crate::netlink::dump::<SockDiagMessage>(NETLINK_SOCK_DIAG, &mut req, "test dump")
            .unwrap_err();
        assert_eq!(crate::netlink::errno_of(&e), Some(libc::EINVAL), "{e}");
        assert!(e.to_string().starts_with("test dump"), "{e}");
    }

    #[test]
    fn small_pure_parts() {
        assert_eq!(parse_socket_link(b"socket:[12345]"), Some(12345));
        assert_eq!(parse_socket_link(b"pipe:[12345]"), None);
        assert_eq!(parse_socket_link(b"socket:[x]"), None);
        assert_eq!(tcp_state_name(10), "LISTEN");
        assert_eq!(tcp_state_name(6), "TIME_WAIT");
        assert_eq!(udp_state_name(7), "UNCONN");
        assert_eq!(udp_state_name(1), "ESTABLISHED");
        let attr = port_filter_attr(0x1234);
        assert_eq!(u16::from_ne_bytes([attr[0], attr[1]]), 20);
        assert_eq!(&attr[4..6], &[2, 8]);
        assert_eq!(u16::from_ne_bytes([attr[10], attr[11]]), 0x1234);
        let req = inet_request(AF_INET, IPPROTO_TCP, StateFlags::LISTEN, Some(80));
        assert_eq!(
            u32::from_ne_bytes(req[0..4].try_into().unwrap()) as usize,
            req.len()
        );
        assert_eq!(req.len(), 16 + 56 + 20);
    }
}
