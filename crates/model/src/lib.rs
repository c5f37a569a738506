//! hostreach's model: the facts a diagnosis uses, the target, probe results, findings and verdict
//! codes, and the parsers for the small text formats they come from. No I/O happens here, so every
//! piece can be tested on recorded data and a saved bundle can be analysed on another machine.

pub mod facts;
pub mod parse;
pub mod pressure;
pub mod report;
pub mod routes;
pub mod target;
pub mod wire;

pub use facts::*;
pub use pressure::{PressureCounters, PressureFacts};
pub use report::*;
pub use wire::*;
pub use target::{Proto, Target, TargetError, TargetHost};
