//! Types and rules that need no I/O. Parse, don't validate: a handler only
//! ever holds values that are already valid.

pub mod bucket;
pub mod carrier;
pub mod gsm7;
pub mod keyword;
pub mod message_body;
pub mod name;
pub mod opt;
pub mod phone;
pub mod timezone;
