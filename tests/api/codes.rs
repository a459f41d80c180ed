//! codes tests.
