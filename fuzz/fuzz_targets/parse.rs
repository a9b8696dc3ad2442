//! The upstream notification parser (`POST /upstream/events` bodies, bus
//! payloads) on arbitrary bytes: no panic; refusals name the first bad
//! item and its reason; accepted events keep their bytes as sent and parse
//! from them again to the same event; a key twice is refused as
//! ambiguous; only `All` is visible; the frame bound is exact.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    checks::check_parse(data);
});
