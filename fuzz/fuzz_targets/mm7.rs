//! Fuzz target `mm7`: see [`moms::fuzzing::mm7`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| moms::fuzzing::mm7(data));
