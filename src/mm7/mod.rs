//! The `mm7` connector (spec section 7): MMS to an MMSC over MM7 (3GPP TS
//! 23.140: SOAP 1.1 over HTTP POST, `multipart/related`, HTTP Basic auth).

pub mod envelope;
pub mod mime;
