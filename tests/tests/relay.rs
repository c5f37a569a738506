//! `hostreach relay` on the lab (issue 7): a busybox container reaches a service bound to the lab host's
//! 127.0.0.1 through a listener the relay creates inside the container's own namespace.
//!
//! hostreach runs on the lab host (nsenter into hostreach-lab), as a user would run it on a real host.
//! Clients are busybox in the container (docker exec) or, where the test must control each socket
//! (half-close, resets, 1,000 connections), this test process on a thread that entered the container's
//! network namespace; services are socat listeners or sockets of this process inside the lab namespace.

use hostreach_labtests::*;
use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// A relay running in the background on the lab host

struct Relay {
    child: Child,
    log: PathBuf,
    stdout: PathBuf,
    args: Vec<String>,
}

impl Relay {
    /// `hostreach relay ARGS -v` on the lab host; returns once it says it listens.
    fn start(args: &[&str]) -> Relay {
        Lab::get();
        let log = std::env::temp_dir().join(format!("hostreach-relay-test-{}-{}.log", std::process::id(), next()));
        let f = fs::File::create(&log).unwrap();
        let stdout = log.with_extension("stdout");
        let o = fs::File::create(&stdout).unwrap();
        let mut full: Vec<String> = vec!["relay".into()];
        full.extend(args.iter().map(|s| s.to_string()));
        full.push("-v".into());
        let child = Command::new("nsenter")
            .arg(format!("--net={NETNS_PATH}"))
            .arg("--")
            .arg(hostreach_bin())
            .args(&full)
            .env("DOCKER_HOST", DOCKER_HOST)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(o)
            .stderr(f)
            .spawn()
            .expect("spawn hostreach relay");
        let mut r = Relay { child, log, stdout, args: full };
        let ready = if args.windows(2).any(|w| w == ["--format", "json"]) { "\"event\":\"listening\"" } else { "listening on" };
        r.wait_log(ready, 1, Duration::from_secs(15));
        r
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// stderr, then stdout (JSON lines with --format json).
    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default() + &fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// The JSON lines it printed on stdout.
    fn events(&self) -> Vec<serde_json::Value> {
        fs::read_to_string(&self.stdout)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line: {l:?}: {e}")))
            .collect()
    }

    /// Waits until `needle` occurs `count` times in its stderr. Panics if it exits first.
    fn wait_log(&mut self, needle: &str, count: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log().matches(needle).count() >= count {
                return;
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("hostreach {} exited ({st}) before saying {needle:?}:\n{}", self.args.join(" "), self.log());
            }
            assert!(Instant::now() < deadline, "hostreach relay did not say {needle:?} within {timeout:?}:\n{}", self.log());
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn fd_count(&self) -> usize {
        fs::read_dir(format!("/proc/{}/fd", self.pid())).map(|d| d.count()).unwrap_or(0)
    }

    fn thread_count(&self) -> usize {
        fs::read_dir(format!("/proc/{}/task", self.pid())).map(|d| d.count()).unwrap_or(0)
    }

    /// SIGINT (Ctrl-C) and the exit code.
    fn interrupt(&mut self, timeout: Duration) -> i32 {
        // SAFETY: kill(2) on our own child.
        unsafe {
            libc::kill(self.pid() as libc::pid_t, libc::SIGINT);
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code().unwrap_or(-1);
            }
            assert!(Instant::now() < deadline, "hostreach relay still runs {timeout:?} after SIGINT:\n{}", self.log());
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!("--- hostreach {} stderr\n{}", self.args.join(" "), self.log());
        }
        let _ = fs::remove_file(&self.log);
        let _ = fs::remove_file(&self.stdout);
    }
}

fn next() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Runs `f` on a new thread inside the network namespace at `path` (sockets it creates stay there).
fn in_netns<T: Send + 'static>(path: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let ns = fs::File::open(path).unwrap_or_else(|e| panic!("open {path}: {e}"));
    thread::spawn(move || {
        // SAFETY: setns(2) on this (new, dedicated) thread with a namespace fd we own.
        let r = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// Sockets in LISTEN state on `port` in the namespace of `pid` (from /proc/PID/net/tcp{,6}).
fn listening_in(pid: u32, port: u16) -> bool {
    let want = format!(":{port:04X}");
    ["tcp", "tcp6"].iter().any(|t| {
        fs::read_to_string(format!("/proc/{pid}/net/{t}"))
            .unwrap_or_default()
            .lines()
            .skip(1)
            .any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.len() > 3 && f[1].ends_with(&want) && f[3] == "0A"
            })
    })
}

fn out(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn raise_nofile() {
    let mut rl = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: get/setrlimit with a local struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl);
        rl.rlim_cur = rl.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &rl);
    }
}

fn relay_for(web: &Container, listen: u16, to: u16, extra: &[&str]) -> Relay {
    let l = format!("127.0.0.1:{listen}");
    let t = format!("127.0.0.1:{to}");
    let mut args = vec!["--container", web.name.as_str(), "--listen", &l, "--to", &t];
    args.extend_from_slice(extra);
    Relay::start(&args)
}

// ---------------------------------------------------------------------------------------------

#[test]
fn busybox_reaches_a_loopback_only_host_service_through_the_relay() {
    let lab = Lab::get();
    let port = lab.free_port();
    let svc = lab.listener(Proto::Tcp, "127.0.0.1", port);
    let web = lab.container("relay-basic", &[]);
    // Without the relay, the container's 127.0.0.1 is its own: nothing there.
    let before = web.sh(&format!("nc -w 2 127.0.0.1 {port} </dev/null"));
    assert!(out(&before).is_empty(), "reached the host's loopback without a relay?! {}", out(&before));

    let relay = relay_for(&web, 5432, port, &[]);
    let got = web.sh("nc -w 3 127.0.0.1 5432 </dev/null");
    assert_eq!(out(&got), svc.banner(), "stderr: {}\n{}", String::from_utf8_lossy(&got.stderr), relay.log());
    // The listener is in the container's namespace, not the lab host's; no process was added to the
    // container (no sidecar) and no NAT rule was needed.
    assert!(listening_in(web.pid, 5432), "no listener on 5432 in the container's namespace");
    assert!(!lab.port_in_use(5432), "a listener on 5432 appeared on the lab host");
    let procs = lab.docker_ok(&["top", &web.id, "-o", "pid,comm"]);
    assert!(!procs.contains("hostreach") && !procs.contains("socat"), "something runs in the container:\n{procs}");
    let nat = lab.sh_ok("iptables-save -t nat");
    assert!(
        !nat.split(|c: char| c.is_whitespace() || c == ':').any(|t| t == "5432"),
        "a NAT rule for 5432 appeared:\n{nat}"
    );
    // One info line per connection.
    let mut relay = relay;
    relay.wait_log("relay connection", 1, Duration::from_secs(5));
    assert!(relay.log().contains(&format!("-> 127.0.0.1:{port}")), "{}", relay.log());
}

#[test]
fn a_large_transfer_keeps_every_byte() {
    let lab = Lab::get();
    let port = lab.free_port();
    let _echo = lab.echo_listener(Proto::Tcp, "127.0.0.1", port);
    let web = lab.container("relay-bulk", &[]);
    let _relay = relay_for(&web, 5432, port, &[]);
    // 64 MB of random data up through the relay, echoed back down: both checksums and sizes agree.
    // nc half-closes after its stdin, so this also needs the client's FIN passed on.
    let o = web.sh(
        "mkdir -p /tmp && head -c 64000000 /dev/urandom > /tmp/f && sha256sum < /tmp/f && md5sum < /tmp/f \
         && nc 127.0.0.1 5432 < /tmp/f > /tmp/back && sha256sum < /tmp/back && md5sum < /tmp/back \
         && wc -c < /tmp/back && rm /tmp/f /tmp/back",
    );
    let text = out(&o);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}\n{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(lines[0], lines[2], "sha256 of what came back differs");
    assert_eq!(lines[1], lines[3], "md5 of what came back differs");
    assert_eq!(lines[4].trim(), "64000000");
}

#[test]
fn half_close_passes_through_both_ways() {
    let lab = Lab::get();
    let port = lab.free_port();
    let web = lab.container("relay-half", &[]);
    // A service on the lab host's 127.0.0.1 owned by this test: it first sends a banner and shuts its
    // sending side, then reads until the client's EOF and answers with what it got.
    let listener = in_netns(NETNS_PATH, move || TcpListener::bind(("127.0.0.1", port)).unwrap());
    let (tx, rx) = mpsc::channel::<String>();
    let server = thread::spawn(move || {
        for _ in 0..2 {
            let (mut s, _) = listener.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.write_all(b"banner").unwrap();
            s.shutdown(Shutdown::Write).unwrap();
            let mut got = String::new();
            s.read_to_string(&mut got).unwrap();
            tx.send(got).unwrap();
        }
    });
    let _relay = relay_for(&web, 5432, port, &[]);

    // Target -> client half-close: the client sees EOF after the banner and can still send.
    let addr: SocketAddr = "127.0.0.1:5432".parse().unwrap();
    let banner = in_netns(&web.netns_path(), move || {
        let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut b = String::new();
        c.read_to_string(&mut b).unwrap(); // returns only at EOF
        c.write_all(b"after the server's FIN").unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        b
    });
    assert_eq!(banner, "banner");
    assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), "after the server's FIN");

    // Client -> target half-close, with busybox: nc shuts its sending side at the end of its stdin
    // and still prints what comes back.
    let o = web.sh("printf 'from busybox' | nc 127.0.0.1 5432");
    assert_eq!(out(&o), "banner");
    assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), "from busybox");
    server.join().unwrap();
}

fn read_error(c: &mut TcpStream) -> std::io::Error {
    let mut b = [0u8; 256];
    loop {
        match c.read(&mut b) {
            Ok(0) => panic!("EOF where a reset was expected"),
            Ok(_) => {}
            Err(e) => return e,
        }
    }
}

/// Connects and reads until an error. A reset that follows the handshake at once may already be
/// reported by connect() itself.
fn connect_and_read_error(addr: SocketAddr) -> std::io::Error {
    match TcpStream::connect_timeout(&addr, Duration::from_secs(3)) {
        Ok(mut c) => {
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            read_error(&mut c)
        }
        Err(e) => e,
    }
}

#[test]
fn target_down_resets_the_client_at_once() {
    let lab = Lab::get();
    let port = lab.free_port(); // nothing listens there
    let web = lab.container("relay-down", &[]);
    let mut relay = relay_for(&web, 5432, port, &[]);
    let addr: SocketAddr = "127.0.0.1:5432".parse().unwrap();
    let (err, took) = in_netns(&web.netns_path(), move || {
        let t0 = Instant::now();
        // The handshake completes in the container's kernel (the relay's listener accepts), then the
        // relay's reset follows at once: it may even beat connect()'s return.
        (connect_and_read_error(addr), t0.elapsed())
    });
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
    assert!(took < Duration::from_millis(500), "the reset took {took:?}");
    relay.wait_log("target unreachable", 1, Duration::from_secs(5));
}

#[test]
fn a_reset_on_one_side_resets_the_other() {
    let lab = Lab::get();
    let port = lab.free_port();
    let web = lab.container("relay-rst", &[]);
    let listener = in_netns(NETNS_PATH, move || TcpListener::bind(("127.0.0.1", port)).unwrap());
    let (tx, rx) = mpsc::channel::<std::io::Result<usize>>();
    let server = thread::spawn(move || {
        // 1st connection: the client resets; what does the server see?
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut b = [0u8; 16];
        let _ = s.read(&mut b); // "x"
        tx.send(s.read(&mut b)).unwrap();
        // 2nd connection: the server resets.
        let (s, _) = listener.accept().unwrap();
        linger0(&s);
        drop(s);
    });
    let _relay = relay_for(&web, 5432, port, &[]);
    let addr: SocketAddr = "127.0.0.1:5432".parse().unwrap();
    in_netns(&web.netns_path(), move || {
        let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).unwrap();
        c.write_all(b"x").unwrap();
        thread::sleep(Duration::from_millis(200));
        linger0(&c);
    });
    let seen = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(seen.as_ref().map_err(|e| e.kind()), Err(std::io::ErrorKind::ConnectionReset), "server saw {seen:?}");
    let err = in_netns(&web.netns_path(), move || connect_and_read_error(addr));
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
    server.join().unwrap();
}

fn linger0(s: &TcpStream) {
    let l = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: setsockopt with a local struct on a socket we own.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &l as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

#[test]
fn container_restart_is_followed() {
    let lab = Lab::get();
    let port = lab.free_port();
    let svc = lab.listener(Proto::Tcp, "127.0.0.1", port);
    let mut web = lab.container("relay-restart", &[]);
    let mut relay = relay_for(&web, 5432, port, &[]);
    assert_eq!(out(&web.sh("nc -w 3 127.0.0.1 5432 </dev/null")), svc.banner());
    let old_pid = web.pid;
    lab.docker_ok(&["restart", "-t", "0", &web.id]);
    web.refresh();
    assert_ne!(web.pid, old_pid);
    relay.wait_log("re-entered", 1, Duration::from_secs(15));
    let log = relay.log();
    assert!(log.contains(&format!("process {old_pid} exited")), "{log}");
    assert!(log.contains(&format!("pid {}", web.pid)), "the relay did not name the new process {}:\n{log}", web.pid);
    assert!(listening_in(web.pid, 5432), "no listener in the restarted container's namespace");
    assert_eq!(out(&web.sh("nc -w 3 127.0.0.1 5432 </dev/null")), svc.banner());
}

#[test]
fn udp_pairs_relay_datagrams() {
    let lab = Lab::get();
    let port = lab.free_port();
    let _echo = lab.echo_listener(Proto::Udp, "127.0.0.1", port);
    let web = lab.container("relay-udp", &[]);
    let _relay = relay_for(&web, 5353, port, &["--udp"]);
    match probe_from(&web.netns_path(), Proto::Udp, "127.0.0.1", 5353, Duration::from_secs(3)) {
        Probe::Connected(s) => assert_eq!(s.trim(), "probe"),
        other => panic!("no UDP echo through the relay: {other:?}"),
    }
}

#[test]
fn thousand_concurrent_connections_leave_no_fd_behind() {
    const N: usize = 1000;
    raise_nofile();
    let lab = Lab::get();
    let port = lab.free_port();
    let web = lab.container("relay-1000", &[]);
    // An echo service on the lab host's 127.0.0.1: one small thread per connection.
    let listener = in_netns(NETNS_PATH, move || TcpListener::bind(("127.0.0.1", port)).unwrap());
    let server = thread::spawn(move || {
        for _ in 0..N {
            let Ok((mut s, _)) = listener.accept() else { return };
            thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn(move || {
                    let mut b = [0u8; 1024];
                    while let Ok(n) = s.read(&mut b) {
                        if n == 0 || s.write_all(&b[..n]).is_err() {
                            break;
                        }
                    }
                })
                .unwrap();
        }
    });
    let relay = relay_for(&web, 5432, port, &["--stats", "1"]);
    let (fds0, threads0) = (relay.fd_count(), relay.thread_count());
    let addr: SocketAddr = "127.0.0.1:5432".parse().unwrap();
    let clients = in_netns(&web.netns_path(), move || {
        let mut v = Vec::with_capacity(N);
        for i in 0..N {
            let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap_or_else(|e| panic!("connection {i}: {e}"));
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let msg = format!("hello {i:>6}");
            c.write_all(msg.as_bytes()).unwrap();
            let mut back = vec![0u8; msg.len()];
            c.read_exact(&mut back).unwrap();
            assert_eq!(back, msg.as_bytes());
            v.push(c);
        }
        v
    });
    // All 1,000 open at once through the relay: 2 sockets + 2 pipes each.
    let peak = relay.fd_count();
    assert!(peak >= fds0 + 6 * N, "relay has {peak} fds with {N} connections open (idle: {fds0})\n{}", relay.log());
    for (i, c) in clients.into_iter().enumerate() {
        if i % 2 == 1 {
            linger0(&c);
        }
        drop(c);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while relay.fd_count() > fds0 {
        assert!(Instant::now() < deadline, "relay still has {} fds (idle: {fds0}, peak {peak})\n{}", relay.fd_count(), relay.log());
        thread::sleep(Duration::from_millis(50));
    }
    assert!(relay.fd_count() <= fds0);
    assert_eq!(relay.thread_count(), threads0, "threads left in the relay");
    let mut relay = relay;
    relay.wait_log("stats: 1000 connections (0 open)", 1, Duration::from_secs(5));
    server.join().unwrap();
}

#[test]
fn ctrl_c_closes_everything_cleanly() {
    let lab = Lab::get();
    let port = lab.free_port();
    let _echo = lab.echo_listener(Proto::Tcp, "127.0.0.1", port);
    let web = lab.container("relay-int", &[]);
    let mut relay = relay_for(&web, 5432, port, &[]);
    let addr: SocketAddr = "127.0.0.1:5432".parse().unwrap();
    let (tx, rx) = mpsc::channel::<std::io::Result<usize>>();
    let netns = web.netns_path();
    let client = thread::spawn(move || {
        in_netns(&netns, move || {
            let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            c.write_all(b"ping").unwrap();
            let mut b = [0u8; 4];
            c.read_exact(&mut b).unwrap();
            tx.send(Ok(4)).unwrap();
            // Now wait for the relay to go away: EOF (or a reset), not a hang.
            tx.send(c.read(&mut b)).unwrap();
        })
    });
    assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap().unwrap(), 4);
    let t0 = Instant::now();
    let code = relay.interrupt(Duration::from_secs(5));
    assert_eq!(code, 130, "{}", relay.log());
    assert!(t0.elapsed() < Duration::from_secs(3), "Ctrl-C took {:?}", t0.elapsed());
    let end = rx.recv_timeout(Duration::from_secs(5)).expect("the client's connection was left open");
    assert!(matches!(end, Ok(0) | Err(_)), "{end:?}");
    client.join().unwrap();
    assert!(relay.log().contains("stopped"), "{}", relay.log());
    assert!(!listening_in(web.pid, 5432), "the listener outlived the relay");
}

#[test]
fn bad_input_and_missing_subjects_are_one_line() {
    let lab = Lab::get();
    let web = lab.container("relay-bad", &[]);
    for (args, code, needle) in [
        (vec!["relay", "--container", "hrt-no-such-container", "--listen", "5432", "--to", "5432"], 3, "no container"),
        (vec!["relay", "--container", &web.name, "--listen", "5432", "--listen", "6379", "--to", "5432"], 2, "--to"),
        (vec!["relay", "--container", &web.name, "--listen", "db:5432", "--to", "5432"], 2, "not an IP address"),
        (vec!["relay", "--container", &web.name, "--listen", "5432"], 2, "--to"),
        (vec!["relay", "--pid", "999999999", "--listen", "5432", "--to", "5432"], 3, "does not exist"),
        (vec!["relay", "--listen", "5432", "--to", "5432"], 2, "--container"),
    ] {
        let run = hostreach(&args);
        assert_eq!(run.code, code, "{run}");
        assert_eq!(run.stderr.trim().lines().count(), 1, "{run}");
        assert!(run.stderr.contains(needle), "{run}");
        assert!(!run.stderr.contains("panicked"), "{run}");
    }
    // A stopped container: exit 3, saying so.
    lab.docker_ok(&["stop", "-t", "0", &web.id]);
    let run = hostreach(&["relay", "--container", &web.name, "--listen", "5432", "--to", "5432"]);
    assert_eq!(run.code, 3, "{run}");
    assert!(run.stderr.contains("not running"), "{run}");
}

#[test]
fn pid_and_netns_subjects_with_json_events() {
    let lab = Lab::get();
    let port = lab.free_port();
    let svc = lab.listener(Proto::Tcp, "127.0.0.1", port);
    let web = lab.container("relay-subjects", &[]);
    let to = format!("127.0.0.1:{port}");
    let pid = web.pid.to_string();
    let netns = web.netns_path();
    for (subject, value, listen) in [("--pid", pid.as_str(), "6001"), ("--netns", netns.as_str(), "6002")] {
        let mut relay = Relay::start(&[subject, value, "--listen", listen, "--to", &to, "--format", "json", "--stats", "1"]);
        assert_eq!(out(&web.sh(&format!("nc -w 3 127.0.0.1 {listen} </dev/null"))), svc.banner(), "{subject}");
        relay.wait_log("\"event\":\"stats\"", 1, Duration::from_secs(5));
        let ev = relay.events();
        assert!(ev.iter().all(|e| e["schema"] == "hostreach/v1"), "{ev:?}");
        let l = ev.iter().find(|e| e["event"] == "listening").expect("a listening event");
        assert_eq!(l["listen"], format!("127.0.0.1:{listen}"));
        assert_eq!(l["to"], to);
        assert_eq!(l["proto"], "tcp");
        let ino = fs::metadata(&netns).map(|m| std::os::unix::fs::MetadataExt::ino(&m)).unwrap();
        assert_eq!(l["netns_inode"], ino, "{l}");
        let code = relay.interrupt(Duration::from_secs(5));
        assert_eq!(code, 130);
        let ev = relay.events();
        let st = ev.iter().rev().find(|e| e["event"] == "stats").expect("stats");
        assert_eq!(st["accepted"], 1, "{st}");
        assert!(ev.iter().any(|e| e["event"] == "stopped"), "{ev:?}");
    }
}
