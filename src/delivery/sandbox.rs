//! The built-in sandbox carrier.
