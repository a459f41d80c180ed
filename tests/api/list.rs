//! list tests.
