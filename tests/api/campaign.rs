//! campaign tests.
