//! Exit codes of the contract, and the one line on stderr that goes with a failure.

use hostreach_collect::CollectError;
use std::fmt;

pub const OK: i32 = 0;
pub const DIAGNOSED: i32 = 1;
pub const USAGE: i32 = 2;
pub const CANNOT: i32 = 3;

/// A run that ends without a report: bad input (2) or could not diagnose (3).
#[derive(Debug)]
pub struct Failure {
    pub code: i32,
    pub message: String,
}

impl Failure {
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure { code: USAGE, message: message.into() }
    }
    pub fn cannot(message: impl Into<String>) -> Failure {
        Failure { code: CANNOT, message: message.into() }
    }
    pub fn from_collect(e: CollectError) -> Failure {
        Failure::cannot(e.to_string())
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// Prints `hostreach: MESSAGE` as one line (newlines folded).
pub fn print_line(message: &str) {
    let one: String = message.split('\n').map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ");
    eprintln!("hostreach: {one}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        assert_eq!(Failure::usage("x").code, 2);
        assert_eq!(Failure::cannot("x").code, 3);
        assert_eq!(OK + DIAGNOSED, 1);
    }
}
