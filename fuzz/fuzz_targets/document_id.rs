//! Fuzzes document id strings (`DocumentId::decode`); see `value::fuzz::fuzz_id`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| value::fuzz::fuzz_id(data));
