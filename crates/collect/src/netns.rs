//! Network namespaces. `setns` changes only the calling thread, so work inside another namespace runs
//! on a dedicated thread that enters it, does the work, and ends; never on a tokio worker.

use crate::error::{CollectError, Result};
use nix::sched::{CloneFlags, setns};
use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// An open handle on a network namespace. Holding the file keeps the namespace alive.
#[derive(Debug)]
pub struct Netns {
    file: File,
    path: PathBuf,
    inode: u64,
}

impl Netns {
    /// The network namespace of a process: `/proc/PID/ns/net`.
    pub fn of_pid(pid: u32) -> Result<Netns> {
        Self::open(Path::new(&format!("/proc/{pid}/ns/net")))
    }

    /// A namespace file (`/run/netns/NAME`, `/proc/PID/ns/net`, a bind mount).
    pub fn open(path: &Path) -> Result<Netns> {
        let file = File::open(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                CollectError::Subject(format!("network namespace {} does not exist", path.display()))
            }
            _ => CollectError::io(format!("opening network namespace {}", path.display()), e),
        })?;
        let inode = file
            .metadata()
            .map_err(|e| CollectError::io(format!("stat {}", path.display()), e))?
            .ino();
        Ok(Netns { file, path: path.to_path_buf(), inode })
    }

    /// The namespace this process runs in (its main thread's).
    pub fn current() -> Result<Netns> {
        Self::open(Path::new("/proc/self/ns/net"))
    }

    pub fn inode(&self) -> u64 {
        self.inode
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on a new thread that has entered this namespace, and returns its result.
    /// The thread ends afterwards, so no other code ever runs in the foreign namespace by accident.
    pub fn run<T, F>(&self, name: &str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T> + Send + 'static,
    {
        let fd = self
            .file
            .try_clone()
            .map_err(|e| CollectError::io(format!("duplicating namespace fd {}", self.path.display()), e))?;
        let path = self.path.clone();
        let handle = std::thread::Builder::new()
            .name(name.chars().take(15).collect())
            .spawn(move || -> Result<T> {
                setns(fd.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|e| {
                    CollectError::io(
                        format!("setns into network namespace {}", path.display()),
                        std::io::Error::from_raw_os_error(e as i32),
                    )
                })?;
                f()
            })
            .map_err(|e| CollectError::io("spawning namespace thread", e))?;
        handle
            .join()
            .map_err(|_| CollectError::Unavailable(format!("the thread in namespace {} panicked", self.path.display())))?
    }

    /// Is this the same namespace as `other`?
    pub fn same_as(&self, other: &Netns) -> bool {
        self.inode == other.inode
    }
}

/// The calling thread's kernel id (for attributing tracepoint events to the probe).
pub fn gettid() -> u32 {
    nix::unistd::gettid().as_raw() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_namespace_runs_closure() {
        let ns = Netns::current().unwrap();
        let inode = ns.inode();
        let seen = ns
            .run("hr-test", move || {
                let me = std::fs::metadata("/proc/thread-self/ns/net").unwrap().ino();
                Ok(me)
            });
        // setns into our own namespace needs CAP_SYS_ADMIN; without it the error must say so.
        match seen {
            Ok(me) => assert_eq!(me, inode),
            Err(e) => assert!(e.is_permission(), "{e}"),
        }
    }

    #[test]
    fn missing_namespace_is_a_subject_error() {
        let e = Netns::open(Path::new("/run/netns/hostreach-does-not-exist")).unwrap_err();
        assert!(matches!(e, CollectError::Subject(_)), "{e}");
    }
}
