//! Media: uploads checked by their bytes, stored by content id, served to
//! phones at smart URLs (spec section 5.6).

pub mod fetch;
pub mod serve;
