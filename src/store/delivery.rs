//! delivery rows.
