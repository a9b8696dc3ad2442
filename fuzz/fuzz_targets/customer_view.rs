//! The customer projection on arbitrary notification streams (one per
//! line): no panic; only allow-listed fields, visible participants and
//! messages; indices and ids without gaps; nothing agent-only.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    checks::check_projection(data);
});
