//! Notification streams in the upstream's dialects, built from the input
//! as choices: visibility values (`All`, `Agents`, `INT`, `VIP`, `ALL`,
//! `""`, null, none, a number) on participants, messages and senders, and
//! keys written twice at any depth. Every parser and projection check
//! holds; an item with a key twice is refused as ambiguous, naming it,
//! and never reaches a customer.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    checks::check_dialects(data);
});
