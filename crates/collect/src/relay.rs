//! The engine of `hostreach relay`: serve a host service on a container's own localhost.
//!
//! Each listening socket is created inside the subject's network namespace (a dedicated thread enters it
//! with `setns`, creates, binds and listens, and hands the fd back; the thread then ends, the socket stays
//! in that namespace for good). Everything else runs on the caller's tokio runtime, in hostreach's own
//! namespace: accepting, connecting to the target (so `127.0.0.1` is the host's loopback), and moving the
//! bytes. No sidecar, no NAT, nothing changes on the host's service.
//!
//! Bytes move with `splice(2)` through one pipe per direction (socket → pipe → socket, no copy to user
//! space), driven by tokio's edge-triggered readiness; [`CopyMode::ReadWrite`] (a user-space buffer) is kept
//! for comparison and for kernels without splice on sockets. See docs/relay.md for the measurements.
//!
//! TCP semantics passed through:
//! - half-close: EOF from one side becomes `shutdown(SHUT_WR)` towards the other, the other direction
//!   goes on;
//! - reset: a reset (or any error) on one side closes the other with `SO_LINGER 0`, i.e. a reset;
//! - target down: the client's connection is reset at once;
//! - subject restart: when the container's process (and so its namespace) changes, the listeners are
//!   closed and created again in the new namespace ([`Event::Lost`], then [`Event::Listening`] with
//!   `again: true`);
//! - stop ([`Control::stop`], wired to Ctrl-C by the CLI): listeners and connections are closed, and
//!   [`run`] returns once no connection is left.

use crate::docker::DockerClient;
use crate::error::CollectError;
use crate::netns::Netns;
use hostreach_model::{NetworkMode, Proto};
use serde::Serialize;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use tokio::io::Interest;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

/// What can go wrong in the relay. `Invalid` is bad input (exit 2); everything else could not be done
/// (exit 3: privileges, subject gone, address in use).
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Collect(#[from] CollectError),
}

pub type Result<T, E = RelayError> = std::result::Result<T, E>;

/// One `--listen` / `--to` pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pair {
    pub proto: Proto,
    /// Where to listen, inside the subject's namespace.
    pub listen: SocketAddr,
    /// Where to connect, in hostreach's own namespace.
    pub to: SocketAddr,
}

/// Where the listeners live.
pub enum Subject {
    /// A container, found again through the Docker API when its process changes (restart).
    Container { docker: DockerClient, name: String },
    /// The namespace of a process; the relay ends when the process does.
    Pid(u32),
    /// A namespace file (`/run/netns/NAME`); re-entered if the file comes to name another namespace.
    Netns(PathBuf),
    /// hostreach's own namespace, without setns (tests, plain port forwarding).
    Current,
}

/// How bytes move between the two sockets of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyMode {
    /// socket → pipe → socket with splice(2): no copy through user space.
    Splice,
    /// recv into a buffer, send from it.
    ReadWrite,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub copy: CopyMode,
    /// Pipe size (splice) or buffer size (read/write) in bytes, per direction. Pipes start at the kernel's
    /// default (64 KiB) and grow to this size once a connection turns out to carry bulk data.
    pub buffer: usize,
    /// How long a connection to the target may take before the client is reset.
    pub connect_timeout: Duration,
    /// A UDP "session" (one client address) ends after this long without a datagram.
    pub udp_idle: Duration,
    /// How often the subject's process is checked (restart detection).
    pub watch_interval: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            copy: CopyMode::Splice,
            buffer: 1 << 20,
            connect_timeout: Duration::from_secs(5),
            udp_idle: Duration::from_secs(60),
            watch_interval: Duration::from_millis(200),
        }
    }
}

/// What the relay reports as it runs (the CLI prints these; tests wait for them).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A listener is up inside the subject's namespace. `again` after a restart of the subject.
    Listening {
        pair: usize,
        proto: &'static str,
        listen: SocketAddr,
        to: SocketAddr,
        subject: String,
        pid: Option<u32>,
        netns_inode: u64,
        again: bool,
    },
    /// The subject's namespace went away (container stopped or restarting): its listeners are closed,
    /// the relay waits for it to come back.
    Lost { subject: String, why: String },
    /// A listener could not be created again after a restart; retried every second.
    BindFailed { pair: usize, listen: SocketAddr, error: String },
    /// The relay stopped: listeners and connections closed.
    Stopped { connections_closed: u64 },
}

/// Receives [`Event`]s (called on the runtime's thread: keep it short).
pub type EventSink = Arc<dyn Fn(&Event) + Send + Sync>;

#[derive(Default)]
struct Stats {
    accepted: AtomicU64,
    active: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
    errors: AtomicU64,
    resets: AtomicU64,
    target_failures: AtomicU64,
    udp_sessions: AtomicU64,
    udp_datagrams: AtomicU64,
}

/// Counters since the start (`--stats`).
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// TCP connections accepted.
    pub accepted: u64,
    /// TCP connections open now.
    pub active: u64,
    /// Bytes client → target and target → client (TCP and UDP payload).
    pub bytes_up: u64,
    pub bytes_down: u64,
    /// Connections that ended in an error (resets included), target failures, accept errors.
    pub errors: u64,
    /// Connections that ended with a reset passed on.
    pub resets: u64,
    /// Connections whose target refused or did not answer (the client was reset).
    pub target_failures: u64,
    pub udp_sessions: u64,
    pub udp_datagrams: u64,
}

struct ControlInner {
    stop_tx: watch::Sender<bool>,
    stats: Stats,
    /// Signalled when the last connection closes.
    idle: Notify,
    finished: Mutex<bool>,
    finished_cv: Condvar,
    stopped: AtomicBool,
}

/// Controls a running relay from any thread (the signal thread included).
#[derive(Clone)]
pub struct Control {
    inner: Arc<ControlInner>,
}

impl Default for Control {
    fn default() -> Self {
        Self::new()
    }
}

impl Control {
    pub fn new() -> Control {
        let (stop_tx, _) = watch::channel(false);
        Control {
            inner: Arc::new(ControlInner {
                stop_tx,
                stats: Stats::default(),
                idle: Notify::new(),
                finished: Mutex::new(false),
                finished_cv: Condvar::new(),
                stopped: AtomicBool::new(false),
            }),
        }
    }

    /// Asks the relay to close its listeners and connections; [`run`] then returns. Any thread.
    pub fn stop(&self) {
        self.inner.stopped.store(true, Ordering::SeqCst);
        self.inner.stop_tx.send_replace(true);
    }

    pub fn is_stopped(&self) -> bool {
        self.inner.stopped.load(Ordering::SeqCst)
    }

    pub fn stats(&self) -> StatsSnapshot {
        let s = &self.inner.stats;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            accepted: l(&s.accepted),
            active: l(&s.active),
            bytes_up: l(&s.bytes_up),
            bytes_down: l(&s.bytes_down),
            errors: l(&s.errors),
            resets: l(&s.resets),
            target_failures: l(&s.target_failures),
            udp_sessions: l(&s.udp_sessions),
            udp_datagrams: l(&s.udp_datagrams),
        }
    }

    /// Marks the whole relay as done (the CLI calls it once it has said its last word).
    pub fn mark_finished(&self) {
        *self.inner.finished.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.inner.finished_cv.notify_all();
    }

    /// Waits until [`Control::mark_finished`], at most `timeout`. True if finished.
    pub fn wait_finished(&self, timeout: Duration) -> bool {
        let g = self.inner.finished.lock().unwrap_or_else(|e| e.into_inner());
        let (g, _) = self
            .inner
            .finished_cv
            .wait_timeout_while(g, timeout, |f| !*f)
            .unwrap_or_else(|e| e.into_inner());
        *g
    }

    fn stop_rx(&self) -> watch::Receiver<bool> {
        self.inner.stop_tx.subscribe()
    }

    fn stats_ref(&self) -> &Stats {
        &self.inner.stats
    }
}

/// Raises the soft limit of open files to the hard limit (each TCP connection holds 6 fds: two sockets
/// and two pipes). Returns the new soft limit.
pub fn raise_fd_limit() -> u64 {
    let mut rl = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) != 0 {
            return 0;
        }
        if rl.rlim_cur < rl.rlim_max {
            let want = libc::rlimit { rlim_cur: rl.rlim_max, rlim_max: rl.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                return want.rlim_cur;
            }
        }
    }
    rl.rlim_cur
}

// ---------------------------------------------------------------------------------------------
// The subject and its namespace

/// The namespace currently served.
struct Resolved {
    netns: Option<Netns>,
    pid: Option<u32>,
    inode: u64,
    /// For the watcher: the file whose inode must stay `inode` (/proc/PID/ns/net or the --netns path).
    watch_path: Option<PathBuf>,
}

impl Subject {
    /// How the subject is named in messages.
    pub fn describe(&self) -> String {
        match self {
            Subject::Container { name, .. } => format!("container {name}"),
            Subject::Pid(p) => format!("process {p}"),
            Subject::Netns(p) => format!("network namespace {}", p.display()),
            Subject::Current => "hostreach's own network namespace".into(),
        }
    }

    /// The namespace to serve now; `None` while it is not there (container stopped, restarting).
    async fn resolve(&self) -> Result<Option<Resolved>> {
        match self {
            Subject::Current => {
                let ino = std::fs::metadata("/proc/self/ns/net").map(|m| m.ino()).unwrap_or(0);
                Ok(Some(Resolved { netns: None, pid: None, inode: ino, watch_path: None }))
            }
            Subject::Pid(pid) => match Netns::of_pid(*pid) {
                Ok(ns) => Ok(Some(resolved(ns, Some(*pid), PathBuf::from(format!("/proc/{pid}/ns/net"))))),
                Err(CollectError::Subject(_)) => {
                    Err(CollectError::Subject(format!("process {pid} does not exist (any more)")).into())
                }
                Err(e) => Err(e.into()),
            },
            Subject::Netns(path) => match Netns::open(path) {
                Ok(ns) => Ok(Some(resolved(ns, None, path.clone()))),
                Err(e) => Err(e.into()),
            },
            Subject::Container { docker, name } => {
                let c = docker.container(name).await?;
                if matches!(c.network_mode, NetworkMode::Host) {
                    return Err(RelayError::Invalid(format!(
                        "container {name} uses the host's network (network mode host): 127.0.0.1 in it is already the host's loopback, no relay needed"
                    )));
                }
                if matches!(c.network_mode, NetworkMode::Container) {
                    tracing::info!(
                        "container {name} shares another container's network namespace ({}): the relay serves that namespace",
                        c.network_mode_raw
                    );
                }
                let Some(pid) = c.pid.filter(|_| c.running) else { return Ok(None) };
                match Netns::of_pid(pid) {
                    Ok(ns) => Ok(Some(resolved(ns, Some(pid), PathBuf::from(format!("/proc/{pid}/ns/net"))))),
                    // Docker still names a process that just exited: not there yet.
                    Err(CollectError::Subject(_)) => Ok(None),
                    Err(e) => Err(e.into()),
                }
            }
        }
    }
}

fn resolved(ns: Netns, pid: Option<u32>, watch: PathBuf) -> Resolved {
    Resolved { inode: ns.inode(), netns: Some(ns), pid, watch_path: Some(watch) }
}

/// Is the namespace still the one being served? (cheap: one stat)
fn still_current(r: &Resolved) -> bool {
    match &r.watch_path {
        None => true,
        Some(p) => std::fs::metadata(p).map(|m| m.ino() == r.inode).unwrap_or(false),
    }
}

// ---------------------------------------------------------------------------------------------
// Listeners, created inside the namespace

enum Bound {
    Tcp(std::net::TcpListener),
    Udp(std::net::UdpSocket),
}

fn proto_str(p: Proto) -> &'static str {
    match p {
        Proto::Tcp => "tcp",
        Proto::Udp => "udp",
    }
}

fn bind_one(p: &Pair) -> io::Result<Bound> {
    use socket2::{Domain, Protocol, Socket, Type};
    let domain = Domain::for_address(p.listen);
    match p.proto {
        Proto::Tcp => {
            let s = Socket::new(domain, Type::STREAM.cloexec(), Some(Protocol::TCP))?;
            s.set_reuse_address(true)?;
            if p.listen.is_ipv6() {
                s.set_only_v6(true)?;
            }
            s.bind(&p.listen.into())?;
            s.listen(4096)?;
            s.set_nonblocking(true)?;
            Ok(Bound::Tcp(s.into()))
        }
        Proto::Udp => {
            let s = Socket::new(domain, Type::DGRAM.cloexec(), Some(Protocol::UDP))?;
            if p.listen.is_ipv6() {
                s.set_only_v6(true)?;
            }
            s.bind(&p.listen.into())?;
            s.set_nonblocking(true)?;
            Ok(Bound::Udp(s.into()))
        }
    }
}

fn bind_err(p: &Pair, idx: usize, where_: &str, e: io::Error) -> (usize, RelayError) {
    let what = format!("listening on {} {} in {where_}", proto_str(p.proto), p.listen);
    let err = match e.raw_os_error() {
        Some(libc::EADDRINUSE) => CollectError::Unavailable(format!(
            "{what}: the address is already in use there (another process in that namespace listens on it)"
        )),
        Some(libc::EADDRNOTAVAIL) => CollectError::Unavailable(format!(
            "{what}: that namespace has no such address (listen on 127.0.0.1, ::1 or one of its own addresses)"
        )),
        _ => CollectError::io(what, e),
    };
    (idx, err.into())
}

/// Creates every listener of `pairs` inside the namespace, on a dedicated thread that enters it and
/// ends; the sockets come back and stay in that namespace. Errors name the pair (its index).
fn bind_all(ns: Option<&Netns>, pairs: &[Pair], where_: &str) -> std::result::Result<Vec<Bound>, (usize, RelayError)> {
    let pairs_owned = pairs.to_vec();
    let w = where_.to_string();
    let work = move || -> std::result::Result<Vec<Bound>, (usize, RelayError)> {
        let mut out = Vec::with_capacity(pairs_owned.len());
        for (i, p) in pairs_owned.iter().enumerate() {
            out.push(bind_one(p).map_err(|e| bind_err(p, i, &w, e))?);
        }
        Ok(out)
    };
    match ns {
        None => work(),
        Some(ns) => {
            // Netns::run speaks CollectError: carry the pair's index through it.
            let slot: Arc<Mutex<Option<(usize, RelayError)>>> = Arc::new(Mutex::new(None));
            let s2 = Arc::clone(&slot);
            let r = ns.run("hr-relay-bind", move || match work() {
                Ok(v) => Ok(Some(v)),
                Err(e) => {
                    *s2.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
                    Ok(None)
                }
            });
            match r {
                Ok(Some(v)) => Ok(v),
                Ok(None) => Err(slot.lock().unwrap_or_else(|e| e.into_inner()).take().unwrap_or((
                    0,
                    RelayError::Collect(CollectError::Unavailable("creating the listeners failed".into())),
                ))),
                Err(e) => Err((0, e.into())),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The main loop

/// Runs the relay until [`Control::stop`] (returns `Ok`) or until the subject is gone for good
/// (returns the error). The first listeners must come up, else the error is returned at once.
pub async fn run(subject: Subject, pairs: Vec<Pair>, opts: Options, ctl: Control, events: EventSink) -> Result<()> {
    if pairs.is_empty() {
        return Err(RelayError::Invalid("nothing to relay: give at least one --listen/--to pair".into()));
    }
    let desc = subject.describe();
    let mut stop = ctl.stop_rx();
    let opts = Arc::new(opts);
    let own_inode = std::fs::metadata("/proc/self/ns/net").map(|m| m.ino()).unwrap_or(0);

    let mut current = match subject.resolve().await? {
        Some(r) => r,
        None => {
            return Err(CollectError::Subject(format!("{desc} is not running: start it first (docker start)")).into());
        }
    };
    let mut again = false;
    let mut last_bind_error: Option<String> = None;
    loop {
        if let Some(p) = pairs.iter().find(|p| p.listen == p.to).filter(|_| current.inode == own_inode) {
            return Err(RelayError::Invalid(format!(
                "{desc} shares hostreach's network namespace: listening on {} and relaying to {} would relay to itself",
                p.listen, p.to
            )));
        }
        // Listeners, on a thread inside the namespace.
        let bound = match bind_all(current.netns.as_ref(), &pairs, &desc) {
            Ok(b) => b,
            Err((_, e)) if !again => return Err(e),
            Err((i, e)) => {
                let msg = e.to_string();
                if last_bind_error.as_deref() != Some(&msg) {
                    events(&Event::BindFailed { pair: i, listen: pairs[i].listen, error: msg.clone() });
                    last_bind_error = Some(msg);
                }
                // Retry in a second, unless the namespace changes or we are stopped.
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => break,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                if !still_current(&current) {
                    match wait_for_subject(&subject, &desc, &ctl, &opts, &events, "its process changed").await? {
                        Some(r) => current = r,
                        None => break,
                    }
                }
                continue;
            }
        };
        last_bind_error = None;
        let mut tasks = JoinSet::new();
        for (i, (b, p)) in bound.into_iter().zip(pairs.iter()).enumerate() {
            let listen = match b {
                Bound::Tcp(l) => {
                    let addr = l.local_addr().unwrap_or(p.listen);
                    let l = TcpListener::from_std(l).map_err(|e| CollectError::io("registering the listener", e))?;
                    let ctx = Arc::new(PairCtx { index: i, pair: Pair { listen: addr, ..*p }, opts: Arc::clone(&opts) });
                    tasks.spawn(accept_loop(l, ctx, ctl.clone()));
                    addr
                }
                Bound::Udp(u) => {
                    let addr = u.local_addr().unwrap_or(p.listen);
                    let u = UdpSocket::from_std(u).map_err(|e| CollectError::io("registering the UDP socket", e))?;
                    let ctx = Arc::new(PairCtx { index: i, pair: Pair { listen: addr, ..*p }, opts: Arc::clone(&opts) });
                    tasks.spawn(udp_loop(u, ctx, ctl.clone()));
                    addr
                }
            };
            events(&Event::Listening {
                pair: i,
                proto: proto_str(p.proto),
                listen,
                to: p.to,
                subject: desc.clone(),
                pid: current.pid,
                netns_inode: current.inode,
                again,
            });
        }

        // Serve until stopped or until the namespace changes.
        let mut tick = tokio::time::interval(opts.watch_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let changed = loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break false,
                _ = tick.tick() => if !still_current(&current) { break true },
            }
        };
        // Close the listeners (the accept loops own them).
        tasks.shutdown().await;
        if !changed {
            break;
        }
        // Connections already open stay: they end by themselves when their ends close.
        let why = match current.pid {
            Some(pid) => format!("its process {pid} exited"),
            None => "its namespace file now names another namespace".to_string(),
        };
        drop(current);
        match wait_for_subject(&subject, &desc, &ctl, &opts, &events, &why).await? {
            Some(r) => current = r,
            None => break,
        }
        again = true;
    }

    // Stopped: every connection task sees the stop too; wait until the last one is closed.
    let stats = ctl.stats_ref();
    loop {
        let idle = ctl.inner.idle.notified();
        if stats.active.load(Ordering::SeqCst) == 0 {
            break;
        }
        idle.await;
    }
    events(&Event::Stopped { connections_closed: stats.accepted.load(Ordering::Relaxed) });
    Ok(())
}

/// Waits for the subject to be back (container restarted). `Ok(None)`: stopped meanwhile.
async fn wait_for_subject(
    subject: &Subject,
    desc: &str,
    ctl: &Control,
    opts: &Options,
    events: &EventSink,
    why: &str,
) -> Result<Option<Resolved>> {
    let mut stop = ctl.stop_rx();
    if let Subject::Pid(pid) = subject {
        return Err(CollectError::Subject(format!("process {pid} exited: its network namespace is gone")).into());
    }
    events(&Event::Lost { subject: desc.to_string(), why: format!("{why}; listeners closed, waiting for it to come back") });
    let mut warned_docker = false;
    // Poll quickly at first (a restart takes well under a second), then back off to every 2 s for a
    // container that stays stopped.
    let mut pause = opts.watch_interval.max(Duration::from_millis(100));
    loop {
        match subject.resolve().await {
            Ok(Some(r)) => return Ok(Some(r)),
            Ok(None) => {}
            Err(RelayError::Collect(CollectError::Docker(m))) => {
                // The daemon restarts with its containers sometimes: keep trying, say it once.
                if !warned_docker {
                    tracing::warn!("{m} (retrying)");
                    warned_docker = true;
                }
            }
            Err(e) => return Err(e),
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return Ok(None),
            _ = tokio::time::sleep(pause) => {}
        }
        pause = (pause + pause / 4).min(Duration::from_secs(2));
    }
}

struct PairCtx {
    index: usize,
    pair: Pair,
    opts: Arc<Options>,
}

/// Counts an open connection; the last one to close wakes [`run`]'s final wait.
struct ActiveGuard(Control);

impl ActiveGuard {
    fn new(ctl: &Control) -> ActiveGuard {
        ctl.stats_ref().active.fetch_add(1, Ordering::SeqCst);
        ActiveGuard(ctl.clone())
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        if self.0.stats_ref().active.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.inner.idle.notify_one();
        }
    }
}

static CONN_ID: AtomicU64 = AtomicU64::new(1);

async fn accept_loop(listener: TcpListener, ctx: Arc<PairCtx>, ctl: Control) {
    loop {
        match listener.accept().await {
            Ok((client, peer)) => {
                ctl.stats_ref().accepted.fetch_add(1, Ordering::Relaxed);
                let guard = ActiveGuard::new(&ctl);
                tokio::spawn(serve_tcp(client, peer, Arc::clone(&ctx), ctl.clone(), guard));
            }
            Err(e) => {
                ctl.stats_ref().errors.fetch_add(1, Ordering::Relaxed);
                match e.raw_os_error() {
                    // Out of fds or memory: say so, breathe, go on (the kernel keeps the backlog).
                    Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => {
                        tracing::warn!(listen = %ctx.pair.listen, "relay: accept: {e}; raise `ulimit -n`");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    _ => {
                        tracing::debug!(listen = %ctx.pair.listen, "relay: accept: {e}");
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// One TCP connection

/// How a connection ended, for the log line and the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Closed,
    ClientReset,
    TargetReset,
    TargetFailed,
    Stopped,
    Error,
}

impl End {
    fn as_str(self) -> &'static str {
        match self {
            End::Closed => "closed",
            End::ClientReset => "reset by client, target reset",
            End::TargetReset => "reset by target, client reset",
            End::TargetFailed => "target unreachable, client reset",
            End::Stopped => "closed by stop",
            End::Error => "error, both reset",
        }
    }
}

/// Closes with a reset (RST) instead of FIN.
fn reset(s: TcpStream) {
    let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
    drop(s);
}

fn is_reset(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ECONNRESET | libc::EPIPE | libc::ECONNABORTED | libc::ETIMEDOUT | libc::EHOSTUNREACH | libc::ENETUNREACH)
    )
}

async fn serve_tcp(client: TcpStream, peer: SocketAddr, ctx: Arc<PairCtx>, ctl: Control, _guard: ActiveGuard) {
    let id = CONN_ID.fetch_add(1, Ordering::Relaxed);
    let started = Instant::now();
    let stats = ctl.stats_ref();
    let mut stop = ctl.stop_rx();
    let to = ctx.pair.to;
    tracing::debug!(conn = id, pair = ctx.index, client = %peer, "relay: accepted");

    // The target, from hostreach's own namespace.
    let connect = tokio::time::timeout(ctx.opts.connect_timeout, TcpStream::connect(to));
    let target = tokio::select! {
        r = connect => r,
        _ = stop.wait_for(|s| *s) => {
            drop(client);
            return;
        }
    };
    let target = match target {
        Ok(Ok(t)) => t,
        other => {
            let why = match other {
                Ok(Err(e)) => e.to_string(),
                _ => format!("no answer within {:?}", ctx.opts.connect_timeout),
            };
            reset(client);
            stats.errors.fetch_add(1, Ordering::Relaxed);
            stats.target_failures.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                conn = id, pair = ctx.index, client = %peer, to = %to, end = End::TargetFailed.as_str(),
                "relay connection {id}: {peer} -> {to}: target unreachable ({why}); client reset"
            );
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = target.set_nodelay(true);

    let (mut up_buf, mut down_buf) = match (Buffer::new(&ctx.opts), Buffer::new(&ctx.opts)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            reset(client);
            reset(target);
            stats.errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(conn = id, "relay connection {id}: cannot create its pipes: {e}; both ends reset");
            return;
        }
    };
    let mut up_bytes = 0u64;
    let mut down_bytes = 0u64;
    let end = {
        let up = pump(&client, &target, &mut up_buf, &stats.bytes_up, &mut up_bytes);
        let down = pump(&target, &client, &mut down_buf, &stats.bytes_down, &mut down_bytes);
        tokio::pin!(up, down);
        let (mut up_done, mut down_done) = (false, false);
        loop {
            if up_done && down_done {
                break End::Closed;
            }
            tokio::select! {
                r = &mut up, if !up_done => match r {
                    Ok(()) => {
                        up_done = true;
                        // client sent FIN: pass the half-close on
                        let _ = target.as_ref_sock().shutdown(std::net::Shutdown::Write);
                    }
                    Err(PumpError::Read(e)) => break end_of(&e, End::ClientReset),
                    Err(PumpError::Write(e)) => break end_of(&e, End::TargetReset),
                },
                r = &mut down, if !down_done => match r {
                    Ok(()) => {
                        down_done = true;
                        let _ = client.as_ref_sock().shutdown(std::net::Shutdown::Write);
                    }
                    Err(PumpError::Read(e)) => break end_of(&e, End::TargetReset),
                    Err(PumpError::Write(e)) => break end_of(&e, End::ClientReset),
                },
                // A side that has finished sending can still be reset: no pump reads it any more.
                _ = client.ready(Interest::ERROR), if up_done => break End::ClientReset,
                _ = target.ready(Interest::ERROR), if down_done => break End::TargetReset,
                _ = stop.wait_for(|s| *s) => break End::Stopped,
            }
        }
    };
    match end {
        End::ClientReset => {
            reset(target);
            drop(client);
        }
        End::TargetReset => {
            reset(client);
            drop(target);
        }
        End::Error => {
            reset(client);
            reset(target);
        }
        _ => {
            drop(client);
            drop(target);
        }
    }
    if matches!(end, End::ClientReset | End::TargetReset | End::Error) {
        stats.errors.fetch_add(1, Ordering::Relaxed);
        stats.resets.fetch_add(1, Ordering::Relaxed);
    }
    let ms = started.elapsed().as_millis() as u64;
    tracing::info!(
        conn = id, pair = ctx.index, client = %peer, to = %to, up = up_bytes, down = down_bytes, ms, end = end.as_str(),
        "relay connection {id}: {peer} -> {to}: {up_bytes} bytes up, {down_bytes} down, {ms} ms, {}", end.as_str()
    );
}

/// A read error that is a reset is the reader's side's reset; anything else is an error of the relay.
fn end_of(e: &io::Error, side: End) -> End {
    if is_reset(e) {
        side
    } else {
        tracing::debug!("relay: {e}");
        End::Error
    }
}

trait AsRefSock {
    fn as_ref_sock(&self) -> socket2::SockRef<'_>;
}

impl AsRefSock for TcpStream {
    fn as_ref_sock(&self) -> socket2::SockRef<'_> {
        socket2::SockRef::from(self)
    }
}

// ---------------------------------------------------------------------------------------------
// Moving bytes

enum PumpError {
    Read(io::Error),
    Write(io::Error),
}

/// The per-direction buffer: a pipe (splice) or memory (read/write).
enum Buffer {
    Pipe { r: OwnedFd, w: OwnedFd, cap: usize, max: usize },
    Mem(Box<[u8]>),
}

impl Buffer {
    fn new(opts: &Options) -> io::Result<Buffer> {
        match opts.copy {
            CopyMode::Splice => {
                let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)
                    .map_err(|e| io::Error::from_raw_os_error(e as i32))?;
                // SAFETY: F_GETPIPE_SZ on a pipe we own.
                let cap = unsafe { libc::fcntl(r.as_raw_fd(), libc::F_GETPIPE_SZ) };
                let cap = if cap > 0 { cap as usize } else { 65536 };
                Ok(Buffer::Pipe { r, w, cap, max: opts.buffer.max(cap) })
            }
            CopyMode::ReadWrite => Ok(Buffer::Mem(vec![0u8; opts.buffer.clamp(4096, 16 << 20)].into_boxed_slice())),
        }
    }
}

fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: splice(2) between two fds we own, no offsets.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 { Err(io::Error::last_os_error()) } else { Ok(n as usize) }
}

/// Copies `src` to `dst` until EOF on `src` (`Ok`) or an error. Does not shut `dst` down.
///
/// Splice: fill the pipe from `src` only when it is empty, then drain it completely into `dst`. With an
/// empty pipe, EAGAIN from the first splice can only mean "no data on the socket", so clearing the
/// socket's read readiness is right (edge-triggered readiness must never be cleared on a guess).
async fn pump(src: &TcpStream, dst: &TcpStream, buf: &mut Buffer, counter: &AtomicU64, total: &mut u64) -> Result<(), PumpError> {
    let (sfd, dfd) = (src.as_raw_fd(), dst.as_raw_fd());
    match buf {
        Buffer::Pipe { r, w, cap, max } => loop {
            let n = loop {
                match src.try_io(Interest::READABLE, || splice(sfd, w.as_raw_fd(), *cap)) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => src.readable().await.map_err(PumpError::Read)?,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(PumpError::Read(e)),
                }
            };
            if n == 0 {
                return Ok(());
            }
            let mut left = n;
            while left > 0 {
                match dst.try_io(Interest::WRITABLE, || splice(r.as_raw_fd(), dfd, left)) {
                    Ok(m) => {
                        left -= m;
                        *total += m as u64;
                        counter.fetch_add(m as u64, Ordering::Relaxed);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => dst.writable().await.map_err(PumpError::Write)?,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(PumpError::Write(e)),
                }
            }
            // A full pipe in one go: this is bulk data; a bigger pipe means fewer rounds.
            if n >= *cap && *cap < *max {
                // SAFETY: F_SETPIPE_SZ on our own (now empty) pipe; failure (limits) keeps the old size.
                let got = unsafe { libc::fcntl(w.as_raw_fd(), libc::F_SETPIPE_SZ, *max as libc::c_int) };
                if got > 0 {
                    *cap = got as usize;
                } else {
                    *max = *cap; // over the pipe limits: keep the size, do not try again
                }
            }
        },
        Buffer::Mem(b) => loop {
            let n = loop {
                match src.try_read(b) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => src.readable().await.map_err(PumpError::Read)?,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(PumpError::Read(e)),
                }
            };
            if n == 0 {
                return Ok(());
            }
            let mut off = 0;
            while off < n {
                match dst.try_write(&b[off..n]) {
                    Ok(m) => {
                        off += m;
                        *total += m as u64;
                        counter.fetch_add(m as u64, Ordering::Relaxed);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => dst.writable().await.map_err(PumpError::Write)?,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(PumpError::Write(e)),
                }
            }
        },
    }
}

// ---------------------------------------------------------------------------------------------
// UDP

/// One client address of a UDP pair: a socket connected to the target, in hostreach's namespace, and
/// the task that carries the target's replies back. Aborted when dropped.
struct UdpSession {
    up: Arc<UdpSocket>,
    last: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
    id: u64,
    started: Instant,
    up_bytes: u64,
    down_bytes: Arc<AtomicU64>,
}

impl Drop for UdpSession {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const UDP_MAX_SESSIONS: usize = 4096;

async fn udp_loop(sock: UdpSocket, ctx: Arc<PairCtx>, ctl: Control) {
    let sock = Arc::new(sock);
    let stats = ctl.stats_ref();
    let epoch = Instant::now();
    let now_ms = move || epoch.elapsed().as_millis() as u64;
    let mut sessions: HashMap<SocketAddr, UdpSession> = HashMap::new();
    let mut buf = vec![0u8; 65536];
    let idle = ctx.opts.udp_idle;
    let mut sweep = tokio::time::interval((idle / 4).max(Duration::from_millis(100)));
    let to = ctx.pair.to;
    let log_end = |peer: &SocketAddr, s: &UdpSession, why: &str| {
        let down = s.down_bytes.load(Ordering::Relaxed);
        tracing::info!(
            conn = s.id, pair = ctx.index, client = %peer, to = %to, up = s.up_bytes, down, ms = s.started.elapsed().as_millis() as u64,
            "relay udp session {}: {peer} -> {to}: {} bytes up, {down} down, {why}", s.id, s.up_bytes
        );
    };
    loop {
        tokio::select! {
            r = sock.recv_from(&mut buf) => {
                let (n, peer) = match r {
                    Ok(x) => x,
                    Err(e) => {
                        stats.errors.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!("relay: udp recv: {e}");
                        continue;
                    }
                };
                stats.udp_datagrams.fetch_add(1, Ordering::Relaxed);
                if !sessions.contains_key(&peer) {
                    if sessions.len() >= UDP_MAX_SESSIONS {
                        stats.errors.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    match udp_session(Arc::clone(&sock), peer, to, &ctl, now_ms()).await {
                        Ok(s) => {
                            stats.udp_sessions.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(conn = s.id, client = %peer, "relay: udp session");
                            sessions.insert(peer, s);
                        }
                        Err(e) => {
                            stats.errors.fetch_add(1, Ordering::Relaxed);
                            stats.target_failures.fetch_add(1, Ordering::Relaxed);
                            tracing::info!(client = %peer, to = %to, "relay udp: cannot reach target: {e}");
                            continue;
                        }
                    }
                }
                let Some(s) = sessions.get_mut(&peer) else { continue };
                s.last.store(now_ms(), Ordering::Relaxed);
                match s.up.send(&buf[..n]).await {
                    Ok(m) => {
                        s.up_bytes += m as u64;
                        stats.bytes_up.fetch_add(m as u64, Ordering::Relaxed);
                    }
                    Err(e) => {
                        // ECONNREFUSED: an ICMP port unreachable came back for an earlier datagram.
                        stats.errors.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(client = %peer, "relay udp: send to target: {e}");
                    }
                }
            }
            _ = sweep.tick() => {
                let now = now_ms();
                let limit = idle.as_millis() as u64;
                let expired: Vec<SocketAddr> = sessions
                    .iter()
                    .filter(|(_, s)| now.saturating_sub(s.last.load(Ordering::Relaxed)) >= limit)
                    .map(|(k, _)| *k)
                    .collect();
                for k in expired {
                    if let Some(s) = sessions.remove(&k) {
                        log_end(&k, &s, "idle");
                    }
                }
            }
        }
    }
}

async fn udp_session(listener: Arc<UdpSocket>, peer: SocketAddr, to: SocketAddr, ctl: &Control, now: u64) -> io::Result<UdpSession> {
    let local: SocketAddr = if to.is_ipv6() { "[::]:0".parse().unwrap() } else { "0.0.0.0:0".parse().unwrap() };
    let up = UdpSocket::bind(local).await?;
    up.connect(to).await?;
    let up = Arc::new(up);
    let last = Arc::new(AtomicU64::new(now));
    let down_bytes = Arc::new(AtomicU64::new(0));
    let (r_up, r_down) = (Arc::clone(&up), Arc::clone(&down_bytes));
    let ctl2 = ctl.clone();
    let task = tokio::spawn(async move {
        let stats = ctl2.stats_ref();
        let mut b = vec![0u8; 65536];
        loop {
            match r_up.recv(&mut b).await {
                Ok(n) => {
                    if let Ok(m) = listener.send_to(&b[..n], peer).await {
                        r_down.fetch_add(m as u64, Ordering::Relaxed);
                        stats.bytes_down.fetch_add(m as u64, Ordering::Relaxed);
                    }
                }
                Err(e) => {
                    stats.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(client = %peer, "relay udp: from target: {e}");
                }
            }
        }
    });
    Ok(UdpSession {
        up,
        last,
        task,
        id: CONN_ID.fetch_add(1, Ordering::Relaxed),
        started: Instant::now(),
        up_bytes: 0,
        down_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const CHILD_ENV: &str = "HOSTREACH_RELAY_TEST_CHILD";

    fn tcp(listen: &str, to: SocketAddr) -> Pair {
        Pair { proto: Proto::Tcp, listen: listen.parse().unwrap(), to }
    }

    struct Running {
        ctl: Control,
        events: mpsc::Receiver<Event>,
        task: tokio::task::JoinHandle<Result<()>>,
        addrs: Vec<SocketAddr>,
    }

    impl Running {
        /// Waits for the next event matching `f` (other events are skipped).
        async fn wait_event(&self, what: &str, f: impl Fn(&Event) -> bool) -> Event {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match self.events.try_recv() {
                    Ok(e) if f(&e) => return e,
                    Ok(_) => {}
                    Err(_) if Instant::now() > deadline => panic!("no {what} event within 10 s"),
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            }
        }

        async fn stop(self) -> Result<()> {
            self.ctl.stop();
            tokio::time::timeout(Duration::from_secs(10), self.task).await.expect("relay stops within 10 s").unwrap()
        }
    }

    /// Starts the relay on this runtime and waits until every pair listens.
    async fn start(subject: Subject, pairs: Vec<Pair>, opts: Options) -> Running {
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let sink: EventSink = Arc::new(move |e: &Event| {
            let _ = tx.lock().unwrap().send(e.clone());
        });
        let ctl = Control::new();
        let n = pairs.len();
        let task = tokio::spawn(run(subject, pairs, opts, ctl.clone(), sink));
        let mut r = Running { ctl, events: rx, task, addrs: Vec::new() };
        for _ in 0..n {
            if let Event::Listening { listen, .. } = r.wait_event("listening", |e| matches!(e, Event::Listening { .. })).await {
                r.addrs.push(listen);
            }
        }
        r
    }

    /// A target: accepts connections and hands each to `f` on this runtime.
    async fn target<F, Fut>(f: F) -> SocketAddr
    where
        F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((s, _)) = l.accept().await else { return };
                tokio::spawn(f(s));
            }
        });
        addr
    }

    /// An address on which nothing listens.
    fn dead_addr() -> SocketAddr {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    }

    async fn echo(mut s: tokio::net::TcpStream) {
        let (mut r, mut w) = s.split();
        let _ = tokio::io::copy(&mut r, &mut w).await;
        let _ = w.shutdown().await;
    }

    /// Deterministic pseudo-random bytes (xorshift), so the receiver can check every byte.
    fn fill(seed: &mut u64, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            let b = seed.to_le_bytes();
            chunk.copy_from_slice(&b[..chunk.len()]);
        }
    }

    fn fnv(h: &mut u64, data: &[u8]) {
        for b in data {
            *h ^= *b as u64;
            *h = h.wrapping_mul(0x100000001b3);
        }
    }

    fn opts(copy: CopyMode) -> Options {
        Options { copy, connect_timeout: Duration::from_secs(2), ..Options::default() }
    }

    async fn read_err_within(s: &mut tokio::net::TcpStream, limit: Duration) -> io::Error {
        let mut b = [0u8; 1024];
        let deadline = Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline.into(), s.read(&mut b)).await {
                Err(_) => panic!("no error within {limit:?}"),
                Ok(Ok(0)) => panic!("got EOF, expected a reset"),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return e,
            }
        }
    }

    #[tokio::test]
    async fn relay_half_close_client_to_target() {
        // The target answers only after the client's EOF: the FIN must be passed on.
        let to = target(|mut s| async move {
            let mut got = Vec::new();
            s.read_to_end(&mut got).await.unwrap();
            s.write_all(format!("got {} bytes: {}", got.len(), String::from_utf8_lossy(&got)).as_bytes()).await.unwrap();
        })
        .await;
        for copy in [CopyMode::Splice, CopyMode::ReadWrite] {
            let r = start(Subject::Current, vec![tcp("127.0.0.1:0", to)], opts(copy)).await;
            let mut c = tokio::net::TcpStream::connect(r.addrs[0]).await.unwrap();
            c.write_all(b"hello relay").await.unwrap();
            c.shutdown().await.unwrap();
            let mut answer = String::new();
            tokio::time::timeout(Duration::from_secs(5), c.read_to_string(&mut answer)).await.unwrap().unwrap();
            assert_eq!(answer, "got 11 bytes: hello relay", "{copy:?}");
            let s = r.ctl.stats();
            r.stop().await.unwrap();
            assert_eq!(s.bytes_up, 11);
        }
    }

    #[tokio::test]
    async fn relay_half_close_target_to_client() {
        // The target says its piece and shuts its side; then it still reads what the client sends.
        let (tx, rx) = mpsc::channel::<String>();
        let tx = Arc::new(Mutex::new(tx));
        let to = target(move |mut s| {
            let tx = Arc::clone(&tx);
            async move {
                s.write_all(b"banner").await.unwrap();
                s.shutdown().await.unwrap();
                let mut got = String::new();
                s.read_to_string(&mut got).await.unwrap();
                tx.lock().unwrap().send(got).unwrap();
            }
        })
        .await;
        let r = start(Subject::Current, vec![tcp("127.0.0.1:0", to)], opts(CopyMode::Splice)).await;
        let mut c = tokio::net::TcpStream::connect(r.addrs[0]).await.unwrap();
        let mut banner = String::new();
        tokio::time::timeout(Duration::from_secs(5), c.read_to_string(&mut banner)).await.unwrap().unwrap();
        assert_eq!(banner, "banner");
        // Our receiving side is closed; the sending side still works through the relay.
        c.write_all(b"still talking").await.unwrap();
        c.shutdown().await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let got = loop {
            if let Ok(g) = rx.try_recv() {
                break g;
            }
            assert!(Instant::now() < deadline, "the target never saw the client's data after its own FIN");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert_eq!(got, "still talking");
        r.stop().await.unwrap();
    }

    #[tokio::test]
    async fn relay_client_reset_resets_target() {
        let (tx, rx) = mpsc::channel::<io::Result<usize>>();
        let tx = Arc::new(Mutex::new(tx));
        let to = target(move |mut s| {
            let tx = Arc::clone(&tx);
            async move {
                let mut b = [0u8; 64];
                let mut r = s.read(&mut b).await; // "x"
                if matches!(r, Ok(n) if n > 0) {
                    r = s.read(&mut b).await; // then the reset
                }
                tx.lock().unwrap().send(r).unwrap();
            }
        })
        .await;
        let r = start(Subject::Current, vec![tcp("127.0.0.1:0", to)], opts(CopyMode::Splice)).await;
        let c = tokio::net::TcpStream::connect(r.addrs[0]).await.unwrap();
        c.try_write(b"x").ok();
        tokio::time::sleep(Duration::from_millis(100)).await;
        reset(c);
        let deadline = Instant::now() + Duration::from_secs(3);
        let got = loop {
            if let Ok(g) = rx.try_recv() {
                break g;
            }
            assert!(Instant::now() < deadline, "the target saw nothing of the client's reset");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let e = got.expect_err("the target must see a reset, not EOF");
        assert_eq!(e.raw_os_error(), Some(libc::ECONNRESET), "{e}");
        let s = r.ctl.stats();
        assert_eq!(s.resets, 1, "{s:?}");
        r.stop().await.unwrap();
    }

    #[tokio::test]
    async fn relay_target_reset_resets_client() {
        let to = target(|s| async move {
            let mut b = [0u8; 16];
            let _ = s.readable().await;
            let _ = s.try_read(&mut b);
            reset(s);
        })
        .await;
        let r = start(Subject::Current, vec![tcp("127.0.0.1:0", to)], opts(CopyMode::Splice)).await;
        let mut c = tokio::net::TcpStream::connect(r.addrs[0]).await.unwrap();
        c.write_all(b"ping").await.unwrap();
        let e = read_err_within(&mut c, Duration::from_secs(3)).await;
        assert_eq!(e.raw_os_error(), Some(libc::ECONNRESET), "{e}");
        r.stop().await.unwrap();
    }

    #[tokio::test]
    async fn relay_target_reset_after_its_half_close_resets_client() {
        // The target closes its sending side, then resets: no pump reads it any more, the error
        // readiness must still carry the reset to the client.
        let to = target(|mut s| async move {
            s.write_all(b"bye").await.unwrap();
            s.shutdown().await.unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
            reset(s);
        })
        .await;
        let r = start(Subject::Current, vec![tcp("127.0.0.1:0", to)], opts(CopyMode::Splice)).await;
        let mut c = tokio::net::TcpStream::connect(r.addrs[0]).await.unwrap();
        let mut b = [0u8; 16];
        let n = c.read(&mut b).await.unwrap();
        assert_eq!(&b[..n], b"bye");
        assert_eq!(c.read(&mut b).await.unwrap(), 0, "EOF after the target's half-close");
        // Now the target resets. The client sends nothing, so only the relay's error watch on the
        // target can pass the reset on: the client's socket must get an error (a RST after the FIN).
        tokio::time::timeout(Duration::from_secs(3), c.ready(Interest::ERROR))
            .await
            .expect("the client never saw the target's reset")
            .unwrap();
        let e = c.take_error().unwrap().expect("a socket error");
        assert!(is_reset(&e), "{e}");
        r.stop().await.unwrap();
    }

    #[tokio::test]
    async fn relay_target_down_resets_client_at_once() {
        let r = start(Subject::Current, vec![tcp("127.0.0.1:0", dead_addr())], opts(CopyMode::Splice)).await;
        let t0 = Instant::now();
        let mut c = tokio::net::TcpStream::connect(r.addrs[0]).await.unwrap();
        let e = read_err_within(&mut c, Duration::from_secs(2)).await;
        assert_eq!(e.raw_os_error(), Some(libc::ECONNRESET), "{e}");
        assert!(t0.elapsed() < Duration::from_millis(500), "reset took {:?}", t0.elapsed());
        let s = r.ctl.stats();
        assert_eq!((s.accepted, s.target_failures, s.errors), (1, 1, 1), "{s:?}");
        r.stop().await.unwrap();
    }

    /// Sends `total` pseudo-random bytes through an echo target and checks every byte that comes back.
    async fn bulk(copy: CopyMode, total: usize) {
        let to = target(echo).await;
        let r = start(Subject::Current, vec![tcp("127.0.0.1:0", to)], opts(copy)).await;
        let c = tokio::net::TcpStream::connect(r.addrs[0]).await.unwrap();
        let (mut rd, mut wr) = c.into_split();
        let writer = tokio::spawn(async move {
            let mut seed = 0x9E3779B97F4A7C15u64;
            let mut h = 0xcbf29ce484222325u64;
            let mut buf = vec![0u8; 256 * 1024];
            let mut left = total;
            while left > 0 {
                let n = left.min(buf.len());
                fill(&mut seed, &mut buf[..n]);
                fnv(&mut h, &buf[..n]);
                wr.write_all(&buf[..n]).await.unwrap();
                left -= n;
            }
            wr.shutdown().await.unwrap();
            h
        });
        let mut h = 0xcbf29ce484222325u64;
        let mut got = 0usize;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = tokio::time::timeout(Duration::from_secs(20), rd.read(&mut buf)).await.expect("data keeps flowing").unwrap();
            if n == 0 {
                break;
            }
            fnv(&mut h, &buf[..n]);
            got += n;
        }
        let sent = writer.await.unwrap();
        assert_eq!(got, total, "{copy:?}: bytes back");
        assert_eq!(h, sent, "{copy:?}: checksum of the bytes back");
        let s = r.ctl.stats();
        assert_eq!((s.bytes_up, s.bytes_down), (total as u64, total as u64), "{s:?}");
        r.stop().await.unwrap();
    }

    #[tokio::test]
    async fn relay_large_transfer_checksum_splice() {
        bulk(CopyMode::Splice, 64 << 20).await;
    }

    #[tokio::test]
    async fn relay_large_transfer_checksum_readwrite() {
        bulk(CopyMode::ReadWrite, 32 << 20).await;
    }

    #[tokio::test]
    async fn relay_several_pairs_and_udp() {
        let a = target(|mut s| async move {
            let _ = s.write_all(b"A").await;
        })
        .await;
        let b = target(|mut s| async move {
            let _ = s.write_all(b"B").await;
        })
        .await;
        let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let uaddr = u.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            for _ in 0..2 {
                let Ok((n, from)) = u.recv_from(&mut buf) else { return };
                let mut reply = b"echo:".to_vec();
                reply.extend_from_slice(&buf[..n]);
                u.send_to(&reply, from).unwrap();
            }
        });
        let pairs = vec![
            tcp("127.0.0.1:0", a),
            tcp("127.0.0.1:0", b),
            Pair { proto: Proto::Udp, listen: "127.0.0.1:0".parse().unwrap(), to: uaddr },
        ];
        let r = start(Subject::Current, pairs, opts(CopyMode::Splice)).await;
        for (i, want) in [(0, "A"), (1, "B")] {
            let mut c = tokio::net::TcpStream::connect(r.addrs[i]).await.unwrap();
            let mut s = String::new();
            c.read_to_string(&mut s).await.unwrap();
            assert_eq!(s, want);
        }
        let c = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        c.connect(r.addrs[2]).await.unwrap();
        for msg in ["one", "two"] {
            c.send(msg.as_bytes()).await.unwrap();
            let mut buf = [0u8; 64];
            let n = tokio::time::timeout(Duration::from_secs(3), c.recv(&mut buf)).await.expect("udp reply").unwrap();
            assert_eq!(&buf[..n], format!("echo:{msg}").as_bytes());
        }
        let s = r.ctl.stats();
        assert_eq!((s.udp_sessions, s.udp_datagrams), (1, 2), "{s:?}");
        r.stop().await.unwrap();
    }

    #[tokio::test]
    async fn relay_stop_closes_connections_and_listeners() {
        let to = target(echo).await;
        let r = start(Subject::Current, vec![tcp("127.0.0.1:0", to)], opts(CopyMode::Splice)).await;
        let addr = r.addrs[0];
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        c.write_all(b"x").await.unwrap();
        let mut b = [0u8; 1];
        c.read_exact(&mut b).await.unwrap();
        assert_eq!(r.ctl.stats().active, 1);
        let ctl = r.ctl.clone();
        r.stop().await.unwrap();
        assert_eq!(ctl.stats().active, 0);
        // The connection was closed and nothing listens any more.
        let n = tokio::time::timeout(Duration::from_secs(2), c.read(&mut b)).await.unwrap();
        assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
        assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "the listener is still open");
    }

    #[tokio::test]
    async fn relay_missing_subjects_are_errors() {
        let sink: EventSink = Arc::new(|_e: &Event| {});
        let e = run(Subject::Pid(u32::MAX - 1), vec![tcp("127.0.0.1:1", dead_addr())], Options::default(), Control::new(), sink.clone())
            .await
            .unwrap_err();
        assert!(matches!(e, RelayError::Collect(CollectError::Subject(_))), "{e}");
        let e = run(Subject::Current, vec![], Options::default(), Control::new(), sink.clone()).await.unwrap_err();
        assert!(matches!(e, RelayError::Invalid(_)), "{e}");
        // Relaying a port to itself in the same namespace is refused.
        let a: SocketAddr = "127.0.0.1:7".parse().unwrap();
        let e = run(Subject::Current, vec![Pair { proto: Proto::Tcp, listen: a, to: a }], Options::default(), Control::new(), sink)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("relay to itself"), "{e}");
    }

    #[tokio::test]
    async fn relay_address_in_use_is_one_clear_error() {
        let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = busy.local_addr().unwrap();
        let sink: EventSink = Arc::new(|_e: &Event| {});
        let e = run(Subject::Current, vec![Pair { proto: Proto::Tcp, listen: addr, to: dead_addr() }], Options::default(), Control::new(), sink)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("already in use"), "{e}");
    }

    // ---- namespaces (need CAP_SYS_ADMIN: root, as the relay itself)

    /// A thread living in a fresh network namespace with lo up, until dropped.
    struct ScratchNs {
        path: PathBuf,
        done: Option<mpsc::Sender<()>>,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    impl ScratchNs {
        fn new() -> Option<ScratchNs> {
            let (tx, rx) = mpsc::channel::<Result<PathBuf, String>>();
            let (done_tx, done_rx) = mpsc::channel::<()>();
            let thread = std::thread::spawn(move || {
                if let Err(e) = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET) {
                    let _ = tx.send(Err(format!("unshare: {e}")));
                    return;
                }
                if let Err(e) = lo_up() {
                    let _ = tx.send(Err(format!("lo up: {e}")));
                    return;
                }
                let path = PathBuf::from(format!("/proc/{}/task/{}/ns/net", std::process::id(), nix::unistd::gettid()));
                let _ = tx.send(Ok(path));
                let _ = done_rx.recv();
            });
            match rx.recv().unwrap() {
                Ok(path) => Some(ScratchNs { path, done: Some(done_tx), thread: Some(thread) }),
                Err(e) if e.contains("EPERM") => {
                    eprintln!("skipping: creating a network namespace needs CAP_SYS_ADMIN ({e})");
                    None
                }
                Err(e) => panic!("{e}"),
            }
        }

    }

    impl Drop for ScratchNs {
        fn drop(&mut self) {
            drop(self.done.take());
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    fn lo_up() -> io::Result<()> {
        // SAFETY: plain socket + SIOCGIFFLAGS/SIOCSIFFLAGS ioctls on a zeroed ifreq naming "lo".
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            let mut ifr: libc::ifreq = std::mem::zeroed();
            for (i, b) in b"lo".iter().enumerate() {
                ifr.ifr_name[i] = *b as libc::c_char;
            }
            let mut r = libc::ioctl(fd, libc::SIOCGIFFLAGS as _, &mut ifr);
            if r == 0 {
                ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
                r = libc::ioctl(fd, libc::SIOCSIFFLAGS as _, &ifr);
            }
            let e = io::Error::last_os_error();
            libc::close(fd);
            if r != 0 { Err(e) } else { Ok(()) }
        }
    }

    /// Connects from inside `ns`, sends `msg`, half-closes, returns the whole answer.
    fn talk_from(ns: &std::path::Path, addr: SocketAddr, msg: &'static [u8]) -> io::Result<String> {
        use std::io::{Read, Write};
        run_in(ns, move || -> io::Result<String> {
            let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.write_all(msg)?;
            s.shutdown(std::net::Shutdown::Write)?;
            let mut out = String::new();
            s.read_to_string(&mut out)?;
            Ok(out)
        })
    }

    /// Runs `f` on a thread inside the namespace at `path`.
    fn run_in<T: Send + 'static>(path: &std::path::Path, f: impl FnOnce() -> T + Send + 'static) -> T {
        let ns = Netns::open(path).unwrap();
        ns.run("hr-test-ns", move || Ok(f())).unwrap()
    }

    #[tokio::test]
    async fn relay_listener_lives_in_the_subject_namespace() {
        let Some(ns) = ScratchNs::new() else { return };
        // The target listens on 127.0.0.1 of *this* namespace only.
        let to = target(echo).await;
        // From the scratch namespace, 127.0.0.1:<target port> is its own loopback: nothing there.
        let direct = talk_from(&ns.path, to, b"direct");
        assert!(direct.is_err(), "the scratch namespace reached the target directly: {direct:?}");
        let r = start(Subject::Netns(ns.path.clone()), vec![tcp("127.0.0.1:15432", to)], opts(CopyMode::Splice)).await;
        let addr = r.addrs[0];
        let path = ns.path.clone();
        let got = tokio::task::spawn_blocking(move || talk_from(&path, addr, b"through the relay")).await.unwrap();
        assert_eq!(got.unwrap(), "through the relay");
        // And not in ours: port 15432 is free here.
        assert!(std::net::TcpStream::connect(addr).is_err(), "the listener leaked into hostreach's namespace");
        r.stop().await.unwrap();
    }

    #[tokio::test]
    async fn relay_reenters_when_the_namespace_changes() {
        let (Some(a), Some(b)) = (ScratchNs::new(), ScratchNs::new()) else { return };
        let dir = std::env::temp_dir().join(format!("hr-relay-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let link = dir.join("ns");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&a.path, &link).unwrap();
        let to = target(echo).await;
        let mut o = opts(CopyMode::Splice);
        o.watch_interval = Duration::from_millis(50);
        let r = start(Subject::Netns(link.clone()), vec![tcp("127.0.0.1:15433", to)], o).await;
        let addr = r.addrs[0];
        let pa = a.path.clone();
        let got = tokio::task::spawn_blocking(move || talk_from(&pa, addr, b"in A")).await.unwrap();
        assert_eq!(got.unwrap(), "in A");
        // "The container restarted": the file now names namespace B.
        let tmp = dir.join("ns.new");
        std::os::unix::fs::symlink(&b.path, &tmp).unwrap();
        std::fs::rename(&tmp, &link).unwrap();
        r.wait_event("lost", |e| matches!(e, Event::Lost { .. })).await;
        let ev = r.wait_event("listening again", |e| matches!(e, Event::Listening { again: true, .. })).await;
        let Event::Listening { netns_inode, .. } = ev else { unreachable!() };
        assert_eq!(netns_inode, std::fs::metadata(&b.path).unwrap().ino());
        let pb = b.path.clone();
        let got = tokio::task::spawn_blocking(move || talk_from(&pb, addr, b"in B")).await.unwrap();
        assert_eq!(got.unwrap(), "in B");
        let pa = a.path.clone();
        let old = tokio::task::spawn_blocking(move || talk_from(&pa, addr, b"in A again")).await.unwrap();
        assert!(old.is_err(), "the old namespace still has a listener: {old:?}");
        r.stop().await.unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Runs this test binary again with only `child_process` selected (a process of its own, so that
    /// counting /proc/self/fd is not disturbed by the tests running in parallel here).
    fn run_child(mode: &str) -> String {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "relay::tests::child_process", "--nocapture", "--test-threads=1", "-q"])
            .env(CHILD_ENV, mode)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success() && stdout.contains("CHILD OK"),
            "child {mode} failed: {}\n--- stdout\n{stdout}\n--- stderr\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    fn count_fds() -> usize {
        std::fs::read_dir("/proc/self/fd").unwrap().count()
    }

    fn count_threads() -> usize {
        std::fs::read_dir("/proc/self/task").unwrap().count()
    }

    #[test]
    fn relay_thousand_connections_leave_no_fd() {
        let out = run_child("thousand");
        eprintln!("{}", out.lines().filter(|l| l.starts_with("fds")).collect::<Vec<_>>().join("\n"));
    }

    /// The child's side; a no-op in the normal run.
    #[test]
    fn child_process() {
        let Ok(mode) = std::env::var(CHILD_ENV) else { return };
        assert_eq!(mode, "thousand");
        raise_fd_limit();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            const N: usize = 1000;
            let to = target(echo).await;
            let (fds0, threads0) = (count_fds(), count_threads());
            let r = start(Subject::Current, vec![tcp("127.0.0.1:0", to)], opts(CopyMode::Splice)).await;
            let addr = r.addrs[0];
            let mut clients = Vec::with_capacity(N);
            let mut connecting = JoinSet::new();
            for _ in 0..N {
                connecting.spawn(async move {
                    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
                    let msg = [7u8; 1024];
                    c.write_all(&msg).await.unwrap();
                    let mut back = [0u8; 1024];
                    c.read_exact(&mut back).await.unwrap();
                    assert_eq!(back, msg);
                    c
                });
            }
            while let Some(c) = connecting.join_next().await {
                clients.push(c.unwrap());
            }
            let s = r.ctl.stats();
            assert_eq!((s.accepted, s.active), (N as u64, N as u64), "{s:?}");
            let peak = count_fds();
            // Each relayed connection: client, relay's two sockets and two pipes, target's socket.
            assert!(peak >= fds0 + 7 * N, "only {peak} fds open at the peak (from {fds0})");
            // Half the clients close normally, half reset.
            for (i, c) in clients.into_iter().enumerate() {
                if i % 2 == 0 { drop(c) } else { reset(c) }
            }
            let deadline = Instant::now() + Duration::from_secs(20);
            while r.ctl.stats().active > 0 {
                assert!(Instant::now() < deadline, "connections left open: {:?}", r.ctl.stats());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            r.stop().await.unwrap();
            // The target's tasks close their ends as they see EOF or the reset.
            let deadline = Instant::now() + Duration::from_secs(10);
            while count_fds() != fds0 {
                if Instant::now() > deadline {
                    let list: Vec<String> = std::fs::read_dir("/proc/self/fd")
                        .unwrap()
                        .flatten()
                        .map(|e| format!("{} -> {:?}", e.file_name().to_string_lossy(), std::fs::read_link(e.path()).ok()))
                        .collect();
                    panic!("{} fds open after the relay stopped, {fds0} before:\n{}", count_fds(), list.join("\n"));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert_eq!(count_threads(), threads0, "threads left behind");
            println!("fds before {fds0}, peak {peak}, after {}", count_fds());
        });
        println!("CHILD OK");
    }
}
