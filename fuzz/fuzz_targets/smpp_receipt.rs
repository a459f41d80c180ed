//! Fuzz target `smpp_receipt`: see [`moms::fuzzing::smpp_receipt`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| moms::fuzzing::smpp_receipt(data));
