//! webhook rows.
