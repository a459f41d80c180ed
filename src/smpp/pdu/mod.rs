//! Protocol data as SMPP carries it, without I/O.

pub mod encoding;
