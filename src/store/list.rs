//! list rows.
