//! The kernel's own drop reasons, from the `skb:kfree_skb` tracepoint, without eBPF.
//!
//! A [`DropTracer`] creates a private tracefs instance (`<tracefs>/instances/hostreach-<pid>-<n>`), so the
//! global tracing instance and anybody else's tracing are left alone; enables `skb:kfree_skb` in it only,
//! filtered in the kernel to real reasons (not `NOT_SPECIFIED`, whose number is read from the running
//! kernel's `format` file) and to IPv4/IPv6 packets; and reads the instance's `trace_pipe`, which can be
//! polled together with a probe socket. The instance is removed by [`DropTracer::stop`], by `Drop`, and,
//! on Ctrl-C, by the undo action registered with [`crate::cleanup`].
//!
//! hostreach never mounts tracefs: when it is not mounted, drop reasons are `Unavailable` with the mount
//! command in the message.

use crate::cleanup;
use crate::error::{CollectError, Result};
use hostreach_model::DropEvent;
use hostreach_model::parse::{drop_reason_names, kfree_skb_line};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Prefix of the instances hostreach creates: `hostreach-<pid>-<n>`.
pub const INSTANCE_PREFIX: &str = "hostreach-";
/// Per-CPU ring buffer of the private instance, in KiB. A probe produces a handful of events.
const BUFFER_SIZE_KB: u32 = 64;
/// At most this much is read from trace_pipe in one `read_available` call, so a flood of drops elsewhere
/// cannot keep the caller reading forever.
const MAX_READ_PER_CALL: usize = 4 << 20;

const MOUNT_HINT: &str = "tracefs is not mounted (hostreach does not mount it itself): \
     mount -t tracefs nodev /sys/kernel/tracing";

static NEXT_INSTANCE: AtomicU64 = AtomicU64::new(0);

/// Where tracefs is: /sys/kernel/tracing, else /sys/kernel/debug/tracing; None if neither is mounted.
///
/// A directory counts as tracefs when it has an `instances` directory. When it cannot be looked into for
/// lack of permission (tracefs's root is mode 0700) it is mounted, and the permission error comes later
/// from [`DropTracer::start`] with its hint.
pub fn tracefs_root() -> Option<PathBuf> {
    ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"].into_iter().map(PathBuf::from).find(|p| {
        match std::fs::metadata(p.join("instances")) {
            Ok(m) => m.is_dir(),
            Err(e) => e.kind() == ErrorKind::PermissionDenied,
        }
    })
}

/// What both the owner and the cleanup (possibly on the signal thread) need.
#[derive(Debug)]
struct Instance {
    dir: PathBuf,
    /// The open trace_pipe. Only the owner closes it (in `stop`/`Drop`); the cleanup on another thread
    /// instead replaces it by /dev/null with dup3, so the fd number stays valid for the owner
    /// (no reuse by an unrelated open) while the trace_pipe file itself is released and rmdir can succeed.
    pipe: Mutex<Option<File>>,
}

impl Instance {
    fn event_file(&self, name: &str) -> PathBuf {
        self.dir.join("events/skb/kfree_skb").join(name)
    }

    /// Stops recording. Errors are ignored: the instance may already be gone.
    fn disable(&self) {
        let _ = write_file(&self.event_file("enable"), "0");
    }

    /// The undo action: runs on whatever thread, possibly while the owner is in poll() or read().
    fn release_from_any_thread(&self) {
        self.disable();
        {
            let guard = self.pipe.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(pipe) = guard.as_ref()
                && let Ok(null) = File::open("/dev/null")
            {
                // SAFETY: both fds are open (the pipe's stays owned by its File, which now refers to
                // /dev/null); dup3 replaces the target atomically.
                unsafe { libc::dup3(null.as_raw_fd(), pipe.as_raw_fd(), libc::O_CLOEXEC) };
            }
        }
        if let Err(e) = remove_instance_dir(&self.dir, true) {
            tracing::warn!("could not remove tracefs instance {}: {e}", self.dir.display());
        }
    }

    /// The owner's teardown: close the pipe, remove the directory.
    fn close_and_remove(&self) -> std::io::Result<()> {
        self.disable();
        let pipe = self.pipe.lock().unwrap_or_else(|e| e.into_inner()).take();
        drop(pipe);
        remove_instance_dir(&self.dir, false)
    }
}

/// Drop reasons recorded during a probe, in a private tracefs instance.
#[derive(Debug)]
pub struct DropTracer {
    inst: Arc<Instance>,
    /// The pipe's fd number, valid as long as `self` lives (see [`Instance::pipe`]).
    raw_fd: RawFd,
    reasons: BTreeMap<u32, String>,
    /// Bytes read from trace_pipe that did not end in a newline yet.
    partial: Vec<u8>,
    /// None once torn down.
    token: Option<cleanup::Token>,
}

impl DropTracer {
    /// Creates a private tracefs instance `hostreach-<pid>-<n>` under `<tracefs>/instances`, shrinks its
    /// buffer, filters `skb:kfree_skb` to reasons other than NOT_SPECIFIED and to IPv4/IPv6 packets, enables
    /// the event in that instance only, registers its removal with [`crate::cleanup`] and opens its
    /// trace_pipe non-blocking.
    ///
    /// The instance keeps the kernel's default trace clock (`local`): switching clocks resets the
    /// buffers and costs 20-30 ms, and attribution uses the probe thread's id, not timestamps.
    pub fn start() -> Result<DropTracer> {
        let root = tracefs_root().ok_or_else(|| CollectError::Unavailable(MOUNT_HINT.into()))?;
        Self::start_in(&root)
    }

    fn start_in(root: &Path) -> Result<DropTracer> {
        // The reason numbers of this kernel, from the event's format (global, read-only).
        let format_path = root.join("events/skb/kfree_skb/format");
        let format = match std::fs::read_to_string(&format_path) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(CollectError::Unavailable(format!(
                    "the kernel has no skb:kfree_skb tracepoint ({} does not exist)",
                    format_path.display()
                )));
            }
            Err(e) => return Err(CollectError::io(format!("reading tracefs {}", format_path.display()), e)),
        };
        let reasons = drop_reason_names(&format);
        if reasons.is_empty() {
            return Err(CollectError::Unavailable(
                "this kernel's skb:kfree_skb tracepoint records no drop reason (needs Linux 5.17 or later)".into(),
            ));
        }
        let not_specified = reasons.iter().find(|(_, name)| name.as_str() == "NOT_SPECIFIED").map(|(n, _)| *n);
        let filter = match not_specified {
            Some(n) => format!("reason != {n} && (protocol == 2048 || protocol == 34525)"),
            None => "protocol == 2048 || protocol == 34525".to_string(),
        };

        let instances = root.join("instances");
        let pid = std::process::id();
        let dir = loop {
            let n = NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed);
            let dir = instances.join(format!("{INSTANCE_PREFIX}{pid}-{n}"));
            match std::fs::create_dir(&dir) {
                Ok(()) => break dir,
                // A leftover of an earlier process with our pid: take the next number.
                Err(e) if e.kind() == ErrorKind::AlreadyExists && n < 1_000_000 => continue,
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    return Err(CollectError::Unavailable(format!(
                        "{} has no instances directory; this kernel's tracefs cannot hold private instances",
                        root.display()
                    )));
                }
                Err(e) => {
                    return Err(CollectError::io(format!("creating a tracefs instance in {}", instances.display()), e));
                }
            }
        };

        let inst = Arc::new(Instance { dir: dir.clone(), pipe: Mutex::new(None) });
        let for_cleanup = Arc::clone(&inst);
        let token = cleanup::register(
            &format!("tracefs instance {}", dir.display()),
            Box::new(move || for_cleanup.release_from_any_thread()),
        );
        // From here on, an error tears the instance down through `Drop`.
        let mut tracer = DropTracer {
            inst,
            raw_fd: -1,
            reasons,
            partial: Vec::new(),
            token: Some(token),
        };
        tracer.configure(&filter)?;
        Ok(tracer)
    }

    fn configure(&mut self, filter: &str) -> Result<()> {
        let dir = self.inst.dir.clone();
        let set = |name: &str, value: &str| -> Result<()> {
            let path = dir.join(name);
            write_file(&path, value).map_err(|e| CollectError::io(format!("writing tracefs {}", path.display()), e))
        };
        set("buffer_size_kb", &BUFFER_SIZE_KB.to_string())?;
        let filter_path = self.inst.event_file("filter");
        if let Err(e) = write_file(&filter_path, filter) {
            let detail = std::fs::read_to_string(dir.join("error_log")).unwrap_or_default();
            return Err(match e.raw_os_error() {
                Some(libc::EINVAL) => CollectError::Unavailable(format!(
                    "the kernel refused the kfree_skb filter `{filter}`{}",
                    detail.lines().last().map(|l| format!(": {}", l.trim())).unwrap_or_default()
                )),
                _ => CollectError::io(format!("writing tracefs {}", filter_path.display()), e),
            });
        }
        // Open the pipe before enabling, so nothing recorded is missed by a slow open.
        let pipe_path = dir.join("trace_pipe");
        let pipe = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&pipe_path)
            .map_err(|e| CollectError::io(format!("opening tracefs {}", pipe_path.display()), e))?;
        self.raw_fd = pipe.as_raw_fd();
        *self.inst.pipe.lock().unwrap_or_else(|e| e.into_inner()) = Some(pipe);
        let enable = self.inst.event_file("enable");
        write_file(&enable, "1").map_err(|e| CollectError::io(format!("enabling tracefs {}", enable.display()), e))?;
        Ok(())
    }

    /// The instance's directory.
    pub fn dir(&self) -> &Path {
        &self.inst.dir
    }

    /// The running kernel's drop reasons, by number, from the event's format file.
    pub fn reason_names(&self) -> &BTreeMap<u32, String> {
        &self.reasons
    }

    /// Raw fd of trace_pipe, to poll() together with a probe socket (POLLIN when events are there).
    ///
    /// If a signal's cleanup removes the instance meanwhile, the fd turns into /dev/null (always readable,
    /// reads nothing); the process is exiting then.
    pub fn fd(&self) -> BorrowedFd<'_> {
        // SAFETY: `raw_fd` stays open while `self` lives: it is closed only by `stop`/`Drop`, and the
        // cleanup on another thread replaces it with dup3 instead of closing it.
        unsafe { BorrowedFd::borrow_raw(self.raw_fd) }
    }

    /// Reads whatever is available now (non-blocking) and parses the `kfree_skb` lines. Reading consumes:
    /// each event is returned once. `attributed` is left false; the caller knows its probe's thread id.
    pub fn read_available(&mut self) -> Vec<DropEvent> {
        let mut events = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0usize;
        loop {
            let n = {
                let mut guard = self.inst.pipe.lock().unwrap_or_else(|e| e.into_inner());
                let Some(pipe) = guard.as_mut() else { break };
                match pipe.read(&mut buf) {
                    Ok(n) => n,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => {
                        tracing::debug!("reading {}/trace_pipe: {e}", self.inst.dir.display());
                        break;
                    }
                }
            };
            if n == 0 {
                break;
            }
            self.partial.extend_from_slice(&buf[..n]);
            self.take_lines(&mut events);
            total += n;
            if total >= MAX_READ_PER_CALL {
                break;
            }
        }
        events
    }

    fn take_lines(&mut self, events: &mut Vec<DropEvent>) {
        let Some(last_nl) = self.partial.iter().rposition(|&b| b == b'\n') else { return };
        let rest = self.partial.split_off(last_nl + 1);
        let complete = std::mem::replace(&mut self.partial, rest);
        for line in String::from_utf8_lossy(&complete).lines() {
            if let Some(ev) = kfree_skb_line(line) {
                events.push(ev);
            }
        }
    }

    /// Disables the event, reads what is left, removes the instance and unregisters its cleanup.
    pub fn stop(mut self) -> Vec<DropEvent> {
        self.inst.disable();
        let mut events = self.read_available();
        // trace_pipe hands out whole lines; a trailing fragment would be a line cut by a signal's cleanup.
        if !self.partial.is_empty() {
            self.partial.push(b'\n');
            self.take_lines(&mut events);
        }
        self.teardown();
        events
    }

    fn teardown(&mut self) {
        let Some(token) = self.token.take() else { return };
        match self.inst.close_and_remove() {
            Ok(()) => cleanup::forget(token),
            Err(e) => {
                tracing::warn!("could not remove tracefs instance {}: {e}", self.inst.dir.display());
                // Dropping the token leaves the undo registered: the exit path tries again.
                drop(token);
            }
        }
        self.raw_fd = -1;
    }
}

impl Drop for DropTracer {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// Leftover instances named `hostreach-<pid>-<n>` whose process no longer exists (in this PID namespace).
/// Read-only; remove them with [`remove_stale_instance`].
pub fn stale_instances() -> Vec<PathBuf> {
    let Some(root) = tracefs_root() else { return Vec::new() };
    let Ok(entries) = std::fs::read_dir(root.join("instances")) else { return Vec::new() };
    let mut out: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let Some(pid) = name.to_str().and_then(instance_pid) else { return false };
            !pid_alive(pid)
        })
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

/// Removes a leftover instance found by [`stale_instances`]: disables its event and removes it. Refuses
/// anything not named `hostreach-<pid>-<n>` under an `instances` directory.
pub fn remove_stale_instance(dir: &Path) -> std::io::Result<()> {
    let named_ours = dir.file_name().and_then(|n| n.to_str()).and_then(instance_pid).is_some();
    let in_instances = dir.parent().and_then(|p| p.file_name()).is_some_and(|n| n == "instances");
    if !named_ours || !in_instances {
        return Err(std::io::Error::new(
            ErrorKind::InvalidInput,
            format!("{} is not a hostreach tracefs instance", dir.display()),
        ));
    }
    let _ = write_file(&dir.join("events/skb/kfree_skb/enable"), "0");
    remove_instance_dir(dir, false)
}

/// The pid in `hostreach-<pid>-<n>`.
fn instance_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(INSTANCE_PREFIX)?;
    let (pid, n) = rest.split_once('-')?;
    n.parse::<u64>().ok()?;
    pid.parse().ok()
}

fn pid_alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Writes a value to a tracefs control file in one write(2), as `echo` does.
fn write_file(path: &Path, value: &str) -> std::io::Result<()> {
    let mut f = OpenOptions::new().write(true).truncate(true).open(path)?;
    f.write_all(format!("{value}\n").as_bytes())
}

/// rmdir with brief retries: it fails with EBUSY while a file of the instance is open (by us, until the
/// fd is closed; or held by a poll() in progress on the owner's thread). With `wake_pollers`, a line written
/// to the instance's trace_marker wakes such a poll so it lets go of the file.
fn remove_instance_dir(dir: &Path, wake_pollers: bool) -> std::io::Result<()> {
    let mut delay = Duration::from_millis(2);
    let mut waited = Duration::ZERO;
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && waited < Duration::from_millis(1500) => {
                if wake_pollers {
                    let _ = write_file(&dir.join("trace_marker"), "hostreach: cleanup");
                }
                std::thread::sleep(delay);
                waited += delay;
                delay = (delay * 2).min(Duration::from_millis(100));
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;
    use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
    use std::process::{Command, Stdio};
    use std::time::Instant;

    const CHILD_ENV: &str = "HOSTREACH_TRACEFS_TEST_CHILD";

    /// Starts a tracer, or returns None (and says why) where tracefs cannot be used, such as unprivileged.
    fn tracer() -> Option<DropTracer> {
        match DropTracer::start() {
            Ok(t) => Some(t),
            Err(e @ (CollectError::Permission { .. } | CollectError::Unavailable(_))) => {
                eprintln!("skipping: {e}");
                None
            }
            Err(e) => panic!("{e}"),
        }
    }

    fn instances_of(pid: u32) -> Vec<String> {
        let Some(root) = tracefs_root() else { return Vec::new() };
        std::fs::read_dir(root.join("instances"))
            .map(|d| {
                d.flatten()
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|n| n.starts_with(&format!("{INSTANCE_PREFIX}{pid}-")))
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn tracefs_start_creates_and_stop_removes() {
        let Some(t) = tracer() else { return };
        let dir = t.dir().to_path_buf();
        assert!(dir.is_dir());
        assert!(dir.file_name().unwrap().to_str().unwrap().starts_with(&format!("hostreach-{}-", std::process::id())));
        assert_eq!(std::fs::read_to_string(dir.join("events/skb/kfree_skb/enable")).unwrap().trim(), "1");
        // The filter file answers only the first read(2) (it returns 0 at any offset > 0), and
        // read_to_string starts with a small probe read: read it in one go.
        let mut buf = vec![0u8; 8192];
        let n = File::open(dir.join("events/skb/kfree_skb/filter")).unwrap().read(&mut buf).unwrap();
        let filter = String::from_utf8_lossy(&buf[..n]).into_owned();
        let ns = t.reason_names().iter().find(|(_, v)| v.as_str() == "NOT_SPECIFIED").unwrap().0;
        assert!(filter.contains(&format!("reason != {ns}")), "{filter}");
        assert!(filter.contains("protocol == 34525"), "{filter}");
        // The kernel rounds the size up to whole sub-buffers (64 reads back as 67 on 6.18).
        let kb: u32 = std::fs::read_to_string(dir.join("buffer_size_kb")).unwrap().trim().parse().unwrap();
        assert!((64..256).contains(&kb), "buffer_size_kb {kb}");
        let desc = format!("tracefs instance {}", dir.display());
        assert!(cleanup::pending().contains(&desc));
        t.stop();
        assert!(!dir.exists(), "{} left behind", dir.display());
        assert!(!cleanup::pending().contains(&desc));
    }

    #[test]
    fn tracefs_drop_without_stop_removes() {
        let Some(t) = tracer() else { return };
        let dir = t.dir().to_path_buf();
        assert!(dir.is_dir());
        drop(t);
        assert!(!dir.exists(), "{} left behind", dir.display());
    }

    #[test]
    fn tracefs_global_instance_untouched() {
        let Some(root) = tracefs_root() else { return };
        let Ok(before) = std::fs::read_to_string(root.join("events/skb/kfree_skb/enable")) else { return };
        let Some(t) = tracer() else { return };
        let during = std::fs::read_to_string(root.join("events/skb/kfree_skb/enable")).unwrap();
        t.stop();
        // Another test's tracer never touches the global file either, so it is stable.
        assert_eq!(before, during);
    }

    #[test]
    fn tracefs_records_a_real_drop_attributed_to_this_thread() {
        let Some(mut t) = tracer() else { return };
        let tid = crate::netns::gettid();
        let mut found = None;
        // A closed port on loopback: the kernel drops the SYN in tcp_v4_rcv with NO_SOCKET, in this thread's
        // context (loopback's softirq runs when the sender re-enables bottom halves). Retry a little in
        // case the softirq was deferred to ksoftirqd under load.
        for _ in 0..5 {
            let port = {
                let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
                l.local_addr().unwrap().port()
            };
            match TcpStream::connect_timeout(&SocketAddr::from((Ipv4Addr::LOCALHOST, port)), Duration::from_secs(2)) {
                // A test running in parallel took the freed port meanwhile: try another.
                Ok(_) => continue,
                Err(err) => assert_eq!(err.kind(), ErrorKind::ConnectionRefused),
            }
            let deadline = Instant::now() + Duration::from_millis(500);
            while found.is_none() && Instant::now() < deadline {
                found = t.read_available().into_iter().find(|e| e.reason == "NO_SOCKET" && e.pid == tid);
                if found.is_none() {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            if found.is_some() {
                break;
            }
        }
        let rest = t.stop();
        let ev = found.unwrap_or_else(|| panic!("no NO_SOCKET drop for tid {tid}; left at stop: {rest:?}"));
        assert!(ev.location.starts_with("tcp_v4_rcv") || ev.location.starts_with("tcp_"), "{ev:?}");
        assert_eq!(ev.protocol, 2048);
        assert!(!ev.reason.is_empty() && ev.reason != "NOT_SPECIFIED");
        assert!(ev.timestamp > 0.0);
    }

    #[test]
    fn tracefs_fd_polls_readable_on_a_drop() {
        let Some(mut t) = tracer() else { return };
        let _ = t.read_available();
        let port = {
            let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
            l.local_addr().unwrap().port()
        };
        let _ = TcpStream::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
        let mut pfd = libc::pollfd { fd: t.fd().as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, 2000) };
        assert_eq!(n, 1, "trace_pipe did not become readable");
        assert!(pfd.revents & libc::POLLIN != 0);
        t.stop();
    }

    #[test]
    fn tracefs_stale_instances_and_removal() {
        let Some(t) = tracer() else { return };
        assert!(!stale_instances().contains(&t.dir().to_path_buf()), "a live instance was called stale");
        // A process that is gone: an exited child's pid.
        let mut child = Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let fake = t.dir().parent().unwrap().join(format!("{INSTANCE_PREFIX}{dead}-0"));
        if std::fs::create_dir(&fake).is_ok() {
            if !pid_alive(dead) {
                assert!(stale_instances().contains(&fake));
            }
            remove_stale_instance(&fake).unwrap();
            assert!(!fake.exists());
        }
        assert!(remove_stale_instance(Path::new("/sys/kernel/tracing/instances/other-1-0")).is_err());
        assert!(remove_stale_instance(Path::new("/sys/kernel/tracing")).is_err());
        t.stop();
    }

    #[test]
    fn tracefs_missing_event_is_unavailable() {
        let dir = std::env::temp_dir().join(format!("hostreach-tracefs-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("instances")).unwrap();
        let e = DropTracer::start_in(&dir).unwrap_err();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(matches!(&e, CollectError::Unavailable(m) if m.contains("skb:kfree_skb")), "{e}");
        assert!(MOUNT_HINT.contains("mount -t tracefs nodev /sys/kernel/tracing"));
    }

    #[test]
    fn tracefs_instance_names() {
        assert_eq!(instance_pid("hostreach-123-0"), Some(123));
        assert_eq!(instance_pid("hostreach-123"), None);
        assert_eq!(instance_pid("hostreach-x-1"), None);
        assert_eq!(instance_pid("other-1-2"), None);
    }

    #[test]
    fn tracefs_lines_split_across_reads() {
        let Some(mut t) = tracer() else { return };
        let mut events = Vec::new();
        t.partial.extend_from_slice(b"  a-1 [000] ..s1. 1.0: kfree_skb: skbaddr=0 protocol=2048 location=x+0x1/0x2 reason: NO_SOCKET\n  b-2 [001] ..s1. 2.0: kfree_");
        t.take_lines(&mut events);
        assert_eq!(events.len(), 1);
        t.partial.extend_from_slice(b"skb: skbaddr=0 protocol=2048 location=y+0x1/0x2 reason: NETFILTER_DROP\n");
        t.take_lines(&mut events);
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].pid, 2);
        t.stop();
    }

    /// Runs this binary again with only `child_process` selected, in mode `mode`.
    fn spawn_child(mode: &str) -> std::process::Child {
        Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "tracefs::tests::child_process", "--nocapture", "--test-threads=1", "-q"])
            .env(CHILD_ENV, mode)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap()
    }

    /// The child's side of the process tests; a no-op in the normal run.
    #[test]
    fn child_process() {
        let Ok(mode) = std::env::var(CHILD_ENV) else { return };
        let mut t = DropTracer::start().expect("child: start");
        let dir = t.dir().to_path_buf();
        match mode.as_str() {
            "sigint" => {
                cleanup::install_signal_handlers().unwrap();
                cleanup::install_signal_handlers().unwrap(); // idempotent
                println!("READY {}", dir.display());
                std::io::stdout().flush().unwrap();
                // Like a probe: poll trace_pipe (long timeouts) when the signal comes.
                let deadline = Instant::now() + Duration::from_secs(30);
                while Instant::now() < deadline {
                    let mut pfd = libc::pollfd { fd: t.fd().as_raw_fd(), events: libc::POLLIN, revents: 0 };
                    // SAFETY: one valid pollfd.
                    unsafe { libc::poll(&mut pfd, 1, 10_000) };
                    let _ = t.read_available();
                }
                panic!("child: no signal came");
            }
            "run_all" => {
                cleanup::run_all();
                assert!(!dir.exists(), "run_all left {}", dir.display());
                assert!(t.read_available().is_empty());
                drop(t); // harmless after run_all
                println!("DONE {}", dir.display());
            }
            other => panic!("unknown child mode {other}"),
        }
    }

    fn read_marker(child: &mut std::process::Child, marker: &str) -> String {
        let out = child.stdout.take().unwrap();
        let mut lines = std::io::BufReader::new(out).lines();
        for line in lines.by_ref() {
            let line = line.unwrap();
            if let Some(rest) = line.strip_prefix(marker) {
                // Keep draining, so the child's later output does not hit a closed pipe.
                std::thread::spawn(move || lines.for_each(drop));
                return rest.trim().to_string();
            }
        }
        panic!("child never printed {marker}");
    }

    fn wait_timeout(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                return st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("child {} did not exit within {limit:?}", child.id());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn tracefs_cleanup_on_sigint() {
        if tracer().is_none() {
            return;
        }
        let mut child = spawn_child("sigint");
        let pid = child.id();
        let dir = PathBuf::from(read_marker(&mut child, "READY "));
        assert!(dir.is_dir());
        std::thread::sleep(Duration::from_millis(100)); // let it enter poll()
        let sent = Instant::now();
        // SAFETY: signalling our own child.
        assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGINT) }, 0);
        let st = wait_timeout(&mut child, Duration::from_secs(10));
        assert_eq!(st.code(), Some(130), "{st:?}");
        assert!(!dir.exists(), "{} left behind", dir.display());
        assert!(instances_of(pid).is_empty(), "{:?}", instances_of(pid));
        // The poll() in progress was woken, not waited out.
        assert!(sent.elapsed() < Duration::from_secs(5), "{:?}", sent.elapsed());
    }

    #[test]
    fn tracefs_cleanup_run_all_removes_instance() {
        if tracer().is_none() {
            return;
        }
        // run_all is process-global, so it runs in a child where no other test has anything pending.
        let mut child = spawn_child("run_all");
        let pid = child.id();
        let dir = PathBuf::from(read_marker(&mut child, "DONE "));
        let st = wait_timeout(&mut child, Duration::from_secs(10));
        assert!(st.success(), "{st:?}");
        assert!(!dir.exists());
        assert!(instances_of(pid).is_empty());
    }
}
