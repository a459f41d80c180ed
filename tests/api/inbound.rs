//! inbound tests.
