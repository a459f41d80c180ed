//! Fuzz target `envelope`: see [`moms::fuzzing::envelope`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| moms::fuzzing::envelope(data));
