//! The upstream notification parser (`POST /upstream/events` bodies, bus
//! payloads) on arbitrary bytes: no panic, refusals name an item and a
//! reason, accepted notifications survive a round trip.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    checks::check_parse(data);
});
