//! What the container relies on: `chatgate health` (its HEALTHCHECK)
//! against a real server, on the address `CHATGATE_LISTEN` gives.

mod support;

use std::process::Output;

use support::*;

async fn health(args: &[&str], listen_env: Option<&str>) -> Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_chatgate"));
    cmd.arg("health").args(args).env_remove("CHATGATE_LISTEN");
    if let Some(listen) = listen_env {
        cmd.env("CHATGATE_LISTEN", listen);
    }
    tokio::time::timeout(WAIT, cmd.output())
        .await
        .expect("chatgate health hung")
        .unwrap()
}

#[tokio::test]
async fn health_exits_0_for_a_serving_chatgate_and_1_otherwise() {
    let server = start(|_| {}).await;
    let addr = server.addr.to_string();
    let wildcard = format!("0.0.0.0:{}", server.addr.port());

    let out = health(&[], Some(&addr)).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = health(&["--ready"], Some(&wildcard)).await;
    assert!(
        out.status.success(),
        "a wildcard listen address is asked on loopback"
    );
    let out = health(&["--listen", &addr], None).await;
    assert!(out.status.success());

    server.stop().await;
    let out = health(&[], Some(&addr)).await;
    assert_eq!(out.status.code(), Some(1), "nothing listens any more");
    assert!(String::from_utf8_lossy(&out.stderr).contains("/healthz"));
}

#[tokio::test]
async fn health_exits_1_when_the_answer_does_not_come_in_time() {
    // Accepts connections (the kernel's backlog) and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let out = health(&["--listen", &addr, "--timeout-secs", "1"], None).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no answer within 1 s"), "{stderr}");
    drop(silent);
}
