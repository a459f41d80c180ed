//! media tests.
