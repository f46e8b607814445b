//! Fuzzes Convex JSON text (`Value::from_json_bytes`); see `value::fuzz::fuzz_json`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| value::fuzz::fuzz_json(data));
