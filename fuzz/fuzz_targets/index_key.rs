//! Fuzzes the order-preserving key encoding (`key::decode_parts`); see `value::fuzz::fuzz_key`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| value::fuzz::fuzz_key(data));
