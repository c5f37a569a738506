//! lab test helpers
