//! opt.
