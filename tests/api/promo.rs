//! promo tests.
