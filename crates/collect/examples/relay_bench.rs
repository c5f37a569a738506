//! Load tools for scripts/bench-relay (not part of hostreach). std only, so that the numbers measure the
//! path and not the tool.
//!
//!   relay_bench echo-server ADDR            echo every byte back; one thread per connection
//!   relay_bench rr ADDR SIZE COUNT          COUNT request/responses of SIZE bytes on one connection;
//!                                           prints p50/p99/mean round trip in microseconds
//!   relay_bench hold ADDR N SECS            opens N connections, round-trips 16 bytes on each every
//!                                           5 s, for SECS seconds; fails if any round trip fails
//!   relay_bench threads-relay LISTEN TO     measurement-only prototype: the same splice relay with
//!                                           two blocking threads per connection (no async runtime)

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let a = |i: usize| -> &str { args.get(i).map(String::as_str).unwrap_or_else(|| usage()) };
    match a(0) {
        "echo-server" => echo_server(a(1).parse().unwrap_or_else(|_| usage())),
        "rr" => rr(a(1).parse().unwrap_or_else(|_| usage()), a(2).parse().unwrap(), a(3).parse().unwrap()),
        "hold" => hold(a(1).parse().unwrap_or_else(|_| usage()), a(2).parse().unwrap(), a(3).parse().unwrap()),
        "threads-relay" => threads_relay(a(1).parse().unwrap_or_else(|_| usage()), a(2).parse().unwrap_or_else(|_| usage())),
        _ => usage(),
    }
}

fn usage() -> ! {
    eprintln!("usage: relay_bench echo-server ADDR | rr ADDR SIZE COUNT | hold ADDR N SECS | threads-relay LISTEN TO");
    std::process::exit(2)
}

fn raise_nofile() {
    let mut rl = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: get/setrlimit on a local struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl);
        rl.rlim_cur = rl.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &rl);
    }
}

fn echo_server(addr: SocketAddr) {
    raise_nofile();
    let l = TcpListener::bind(addr).unwrap_or_else(|e| {
        eprintln!("bind {addr}: {e}");
        std::process::exit(1)
    });
    eprintln!("echo-server listening on {addr}");
    for s in l.incoming() {
        let Ok(mut s) = s else { continue };
        let _ = s.set_nodelay(true);
        std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(move || {
                let mut b = vec![0u8; 16 * 1024];
                loop {
                    match s.read(&mut b) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if s.write_all(&b[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
            })
            .ok();
    }
}

fn rr(addr: SocketAddr, size: usize, count: usize) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_nodelay(true).unwrap();
    let msg = vec![0x5au8; size];
    let mut back = vec![0u8; size];
    // warm-up
    for _ in 0..count.min(1000) / 10 {
        s.write_all(&msg).unwrap();
        s.read_exact(&mut back).unwrap();
    }
    let mut t = Vec::with_capacity(count);
    for _ in 0..count {
        let t0 = Instant::now();
        s.write_all(&msg).unwrap();
        s.read_exact(&mut back).unwrap();
        t.push(t0.elapsed().as_nanos() as f64 / 1000.0);
    }
    t.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let pct = |p: f64| t[((t.len() as f64 - 1.0) * p).round() as usize];
    let mean = t.iter().sum::<f64>() / t.len() as f64;
    println!("size={size} count={count} p50_us={:.1} p99_us={:.1} mean_us={mean:.1}", pct(0.50), pct(0.99));
}

fn hold(addr: SocketAddr, n: usize, secs: u64) {
    raise_nofile();
    let mut v = Vec::with_capacity(n);
    for i in 0..n {
        let s = TcpStream::connect(addr).unwrap_or_else(|e| {
            eprintln!("connection {i}: {e}");
            std::process::exit(1)
        });
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        v.push(s);
    }
    println!("holding {n} connections for {secs} s");
    let end = Instant::now() + Duration::from_secs(secs);
    let mut rounds = 0;
    loop {
        for (i, s) in v.iter_mut().enumerate() {
            let msg = [b'h'; 16];
            let mut back = [0u8; 16];
            if s.write_all(&msg).and_then(|_| s.read_exact(&mut back)).is_err() || back != msg {
                eprintln!("round trip failed on connection {i}");
                std::process::exit(1);
            }
        }
        rounds += 1;
        if Instant::now() >= end {
            break;
        }
        std::thread::sleep(Duration::from_secs(5).min(end.saturating_duration_since(Instant::now())));
    }
    for s in &v {
        let _ = s.shutdown(Shutdown::Both);
    }
    println!("held {n} connections, {rounds} rounds of round trips on each: ok");
}

// ---- measurement-only prototype: thread per direction, blocking splice

fn splice_all(from: &TcpStream, to: &TcpStream) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 into a local array; splice between fds we own; closes what it opened.
    unsafe {
        if libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
            return;
        }
        libc::fcntl(fds[1], libc::F_SETPIPE_SZ, 1 << 20);
        loop {
            let n = libc::splice(from.as_raw_fd(), std::ptr::null_mut(), fds[1], std::ptr::null_mut(), 1 << 20, libc::SPLICE_F_MOVE);
            if n <= 0 {
                break;
            }
            let mut left = n as usize;
            while left > 0 {
                let m = libc::splice(fds[0], std::ptr::null_mut(), to.as_raw_fd(), std::ptr::null_mut(), left, libc::SPLICE_F_MOVE);
                if m <= 0 {
                    break;
                }
                left -= m as usize;
            }
            if left > 0 {
                break;
            }
        }
        libc::close(fds[0]);
        libc::close(fds[1]);
    }
    let _ = to.shutdown(Shutdown::Write);
}

fn threads_relay(listen: SocketAddr, to: SocketAddr) {
    raise_nofile();
    let l = TcpListener::bind(listen).expect("bind");
    eprintln!("threads-relay {listen} -> {to}");
    for c in l.incoming() {
        let Ok(c) = c else { continue };
        std::thread::spawn(move || {
            let Ok(t) = TcpStream::connect(to) else { return };
            let _ = (c.set_nodelay(true), t.set_nodelay(true));
            let (c2, t2) = (c.try_clone().unwrap(), t.try_clone().unwrap());
            let up = std::thread::spawn(move || splice_all(&c2, &t2));
            splice_all(&t, &c);
            let _ = up.join();
        });
    }
}
