//! Fuzz target `smpp_pdu`: see [`moms::fuzzing::smpp_pdu`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| moms::fuzzing::smpp_pdu(data));
