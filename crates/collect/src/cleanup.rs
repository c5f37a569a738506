//! What hostreach creates is removed again: on the normal path, on error, at exit and on Ctrl-C.
//!
//! A process-global registry holds one undo action per thing hostreach created (a tracefs instance, later a
//! capture socket or a temporary nft trace rule). The creator registers the undo right after creating the
//! thing, and on the normal path either runs it ([`run`]) or, when it tore the thing down itself, drops it
//! ([`forget`]). [`run_all`] runs whatever is still pending; the signal thread started by
//! [`install_signal_handlers`] calls it on SIGINT, SIGTERM and SIGHUP before exiting with `128 + signo`.
//!
//! Undo actions may run on the signal thread while the main thread is in the middle of using the thing, so
//! they must be written for that (see `tracefs`, which swaps its open fd for /dev/null instead of closing it).
//! Each action is taken out of the registry under the lock before it runs, so it runs exactly once.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

type Undo = Box<dyn FnOnce() + Send>;

/// A registered undo action. Hand it back to [`run`] or [`forget`].
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a cleanup token should be handed back to cleanup::run or cleanup::forget"]
pub struct Token(u64);

struct Registry {
    pending: BTreeMap<u64, (String, Undo)>,
    /// Set by the signal path: the process is about to exit; late registrations run their undo at once.
    shutting_down: bool,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry { pending: BTreeMap::new(), shutting_down: false });
static NEXT: AtomicU64 = AtomicU64::new(1);
/// Undo actions running right now (taken out of the registry, not finished). The signal path waits for
/// them before exiting, so an undo the main thread started is not cut off half-way.
static ACTIVE: AtomicUsize = AtomicUsize::new(0);

fn registry() -> MutexGuard<'static, Registry> {
    // An undo never runs under the lock, so a poisoned lock only means a panic elsewhere: carry on.
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

struct ActiveGuard;
impl Drop for ActiveGuard {
    fn drop(&mut self) {
        ACTIVE.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Runs one undo action; `ACTIVE` was already incremented under the registry lock.
fn execute(desc: &str, undo: Undo) {
    let _guard = ActiveGuard;
    tracing::debug!(what = desc, "cleanup: undoing");
    if catch_unwind(AssertUnwindSafe(undo)).is_err() {
        tracing::warn!(what = desc, "cleanup: the undo action panicked");
    }
}

/// Registers the undo action for something just created. `desc` names it for logs
/// (`tracefs instance /sys/kernel/tracing/instances/hostreach-123-0`).
///
/// If the process is already exiting because of a signal, the action runs at once and the returned token
/// is inert.
pub fn register(desc: &str, undo: Box<dyn FnOnce() + Send>) -> Token {
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut reg = registry();
    if reg.shutting_down {
        ACTIVE.fetch_add(1, Ordering::SeqCst);
        drop(reg);
        execute(desc, undo);
        return Token(0);
    }
    reg.pending.insert(id, (desc.to_string(), undo));
    Token(id)
}

/// Runs one undo action now and forgets it (the normal path). Does nothing if it already ran
/// (for instance on the signal thread).
pub fn run(token: Token) {
    let mut reg = registry();
    let Some((desc, undo)) = reg.pending.remove(&token.0) else { return };
    ACTIVE.fetch_add(1, Ordering::SeqCst);
    drop(reg);
    execute(&desc, undo);
}

/// Drops an undo action without running it (the creator tore the thing down itself).
pub fn forget(token: Token) {
    let removed = registry().pending.remove(&token.0);
    drop(removed);
}

/// Runs every pending undo action, newest first. Used at exit and by the signal thread.
/// Actions registered while it runs are run too.
pub fn run_all() {
    loop {
        let batch: Vec<(String, Undo)> = {
            let mut reg = registry();
            let taken = std::mem::take(&mut reg.pending);
            ACTIVE.fetch_add(taken.len(), Ordering::SeqCst);
            taken.into_values().rev().collect()
        };
        if batch.is_empty() {
            return;
        }
        for (desc, undo) in batch {
            execute(&desc, undo);
        }
    }
}

/// Descriptions of the undo actions still pending, oldest first (for logs and tests).
pub fn pending() -> Vec<String> {
    registry().pending.values().map(|(d, _)| d.clone()).collect()
}

/// The signal path: stop accepting registrations, undo everything, wait briefly for undo actions other
/// threads are running, and exit.
fn cleanup_and_exit(signo: i32) -> ! {
    registry().shutting_down = true;
    run_all();
    let deadline = Instant::now() + Duration::from_secs(3);
    while ACTIVE.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::process::exit(128 + signo)
}

/// Installs handlers for SIGINT, SIGTERM and SIGHUP, watched by a background thread (a signal-hook
/// iterator, so nothing but a pipe write happens in signal context). On a signal the thread runs
/// [`run_all`] and exits with `128 + signo` (130 for SIGINT). A second signal while the cleanup runs exits
/// at once with the same code. Idempotent; the CLI calls it once at startup.
pub fn install_signal_handlers() -> std::io::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    static INSTALLED: Mutex<bool> = Mutex::new(false);
    let mut installed = INSTALLED.lock().unwrap_or_else(|e| e.into_inner());
    if *installed {
        return Ok(());
    }
    const SIGNALS: [i32; 3] = [SIGINT, SIGTERM, SIGHUP];
    // Armed once the first signal is being handled: a second one then terminates immediately.
    let armed = Arc::new(AtomicBool::new(false));
    for sig in SIGNALS {
        signal_hook::flag::register_conditional_shutdown(sig, 128 + sig, Arc::clone(&armed))?;
    }
    let mut signals = signal_hook::iterator::Signals::new(SIGNALS)?;
    std::thread::Builder::new().name("hostreach-signals".into()).spawn(move || {
        if let Some(sig) = signals.forever().next() {
            armed.store(true, Ordering::SeqCst);
            tracing::debug!(signal = sig, "cleanup: signal received, undoing what hostreach created");
            cleanup_and_exit(sig);
        }
    })?;
    *installed = true;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    // These tests only touch their own tokens: run_all is process-global and other tests in this binary
    // have undo actions pending, so it is exercised in a child process (see tracefs's tests).

    #[test]
    fn cleanup_run_runs_once() {
        let n = Arc::new(AtomicU32::new(0));
        let c = Arc::clone(&n);
        let t = register("test: run once", Box::new(move || {
            c.fetch_add(1, Ordering::SeqCst);
        }));
        let id = t.0;
        assert!(pending().iter().any(|d| d == "test: run once"));
        run(t);
        run(Token(id)); // already taken: nothing happens
        assert_eq!(n.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn cleanup_forget_does_not_run() {
        let n = Arc::new(AtomicU32::new(0));
        let c = Arc::clone(&n);
        let t = register("test: forget", Box::new(move || {
            c.fetch_add(1, Ordering::SeqCst);
        }));
        let id = t.0;
        forget(t);
        run(Token(id));
        assert_eq!(n.load(Ordering::SeqCst), 0);
        assert!(!pending().iter().any(|d| d == "test: forget"));
    }

    #[test]
    fn cleanup_panicking_undo_is_contained() {
        let t = register("test: panics", Box::new(|| panic!("undo failed (expected in this test)")));
        run(t);
        // The registry is still usable afterwards.
        let ran = Arc::new(AtomicBool::new(false));
        let r = Arc::clone(&ran);
        run(register("test: after panic", Box::new(move || r.store(true, Ordering::SeqCst))));
        assert!(ran.load(Ordering::SeqCst));
    }

    #[test]
    fn cleanup_runs_concurrently_exactly_once() {
        let n = Arc::new(AtomicU32::new(0));
        let c = Arc::clone(&n);
        let t = register("test: race", Box::new(move || {
            c.fetch_add(1, Ordering::SeqCst);
        }));
        let id = t.0;
        let threads: Vec<_> = (0..8).map(|_| std::thread::spawn(move || run(Token(id)))).collect();
        run(t);
        for th in threads {
            th.join().unwrap();
        }
        assert_eq!(n.load(Ordering::SeqCst), 1);
    }
}
