//! Errors of the parsers. Each names where the input is wrong.

/// A bad iptables-save or nft JSON input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// iptables-save text, with the 1-based line number.
    #[error("line {line}: {msg}")]
    Line { line: usize, msg: String },
    /// nft JSON, with the 1-based position of the object in the `nftables` array (and the JSON line when known).
    #[error("{msg}")]
    Json { msg: String },
}

impl ParseError {
    pub fn line(line: usize, msg: impl Into<String>) -> ParseError {
        ParseError::Line { line, msg: msg.into() }
    }
    pub fn json(msg: impl Into<String>) -> ParseError {
        ParseError::Json { msg: msg.into() }
    }
    /// The line number, for iptables-save errors.
    pub fn line_number(&self) -> Option<usize> {
        match self {
            ParseError::Line { line, .. } => Some(*line),
            ParseError::Json { .. } => None,
        }
    }
}
