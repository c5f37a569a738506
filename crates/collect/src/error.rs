//! Errors of the collectors. Each names what was being done, and, where the errno tells, what to do.

use std::io;

#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// Not allowed: the message names the capability or the privilege that is missing.
    #[error("{what}: permission denied; {hint}")]
    Permission { what: String, hint: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("{what}: netlink: {detail}")]
    Netlink { what: String, detail: String },
    /// The Docker daemon could not be reached or answered with an error.
    #[error("{0}")]
    Docker(String),
    /// The subject (container, PID, namespace) is not there or not running.
    #[error("{0}")]
    Subject(String),
    /// A facility is missing (tracefs, a kernel feature).
    #[error("{0}")]
    Unavailable(String),
}

impl CollectError {
    /// Wraps an io::Error, turning EPERM/EACCES into `Permission` with a hint.
    pub fn io(what: impl Into<String>, source: io::Error) -> CollectError {
        let what = what.into();
        match source.raw_os_error() {
            Some(libc::EPERM) | Some(libc::EACCES) => CollectError::Permission {
                hint: hint_for(&what),
                what,
            },
            _ => CollectError::Io { what, source },
        }
    }

    pub fn is_permission(&self) -> bool {
        matches!(self, CollectError::Permission { .. })
    }
}

impl From<nix::Error> for CollectError {
    fn from(e: nix::Error) -> Self {
        CollectError::io("system call", io::Error::from_raw_os_error(e as i32))
    }
}

/// What to do about a permission error, by what was being done.
pub fn hint_for(what: &str) -> String {
    if what.contains("namespace") || what.contains("setns") {
        "entering another network namespace needs CAP_SYS_ADMIN: run hostreach as root (sudo)".into()
    } else if what.contains("tracefs") || what.contains("tracing") {
        "drop reasons need write access to tracefs (root, or CAP_SYS_ADMIN)".into()
    } else if what.contains("/proc") {
        "reading other users' processes needs CAP_SYS_PTRACE or root".into()
    } else if what.contains("raw") || what.contains("packet") {
        "raw and packet sockets need CAP_NET_RAW".into()
    } else {
        "run hostreach as root (sudo)".into()
    }
}

pub type Result<T, E = CollectError> = std::result::Result<T, E>;
