//! Fuzz target `params`: see [`moms::fuzzing::params`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| moms::fuzzing::params(data));
