//! The agent desktop and the customer widget in real headless Chromium.
//!
//! Each test starts a real chatgate in dev mode (no secret, loopback, so
//! the pages can mint demo tokens) and runs `tests/browser/e2e.mjs`
//! (playwright-core driving Debian's Chromium) against it, asserting its
//! exit status. A missing node, Chromium or playwright-core fails the test:
//! `scripts/test` installs them.
//!
//! `CHATGATE_SCREENSHOTS=docs` (a folder, relative to the project) makes the
//! consult scenario write the README's screenshots there.

mod support;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use chatgate::config::Config;
use support::start;

/// Bounds one scenario run, browser start included.
const RUN_LIMIT: Duration = Duration::from_secs(240);

async fn run_scenario(scenario: &str) {
    run_scenario_with(scenario, |_| {}).await;
}

/// Runs `scenario` against a chatgate whose settings `tune` adjusts.
async fn run_scenario_with(scenario: &str, tune: impl FnOnce(&mut Config)) {
    let server = start(|c| {
        c.jwt_secret = None;
        tune(c);
    })
    .await;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(root.join("tests/browser/e2e.mjs"))
        .arg(server.url(""))
        .arg(scenario)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(dir) = std::env::var_os("CHATGATE_SCREENSHOTS") {
        cmd.env("CHATGATE_SCREENSHOTS", root.join(dir));
    }
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run node (install Node.js): {e}"));
    let output = tokio::time::timeout(RUN_LIMIT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("the {scenario} scenario ran longer than {RUN_LIMIT:?}"))
        .expect("waiting for node");
    server.stop().await;
    println!("{}", String::from_utf8_lossy(&output.stdout));
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        output.status.success(),
        "the {scenario} scenario failed ({}): see its output above",
        output.status
    );
}

/// The seed's consult fed through the ingest: desktops mark the consultant
/// and agent-only lines; the widget never shows them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_consult_through_ingest_in_the_browser() {
    run_scenario("seed").await;
}

/// Customer, agent and consultant in three browser contexts: consult,
/// agent-only talk and typing, transfer; screenshots mid-consult.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consult_and_transfer_in_the_browser() {
    run_scenario("consult").await;
}

/// A chat started from the widget: cut sockets resume with `since`, a
/// reload starts from the snapshot; no line lost or doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_loses_and_doubles_nothing_in_the_browser() {
    run_scenario("reconnect").await;
}

/// Auto-accept off: the desktop offers Accept and Reject for an
/// invitation; a rejected chat is offered to the next agent, who accepts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invitation_is_rejected_then_accepted_in_the_browser() {
    run_scenario_with("invitation", |c| c.auto_accept = false).await;
}

/// No WebSocket in the customer's browser: the widget falls back to Bayeux
/// long-polling; the chat works, and a cut loses and doubles nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_widget_falls_back_to_long_polling_without_websocket() {
    run_scenario("longpoll").await;
}
