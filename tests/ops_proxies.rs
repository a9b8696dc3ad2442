//! Behind a reverse proxy (`CHATGATE_TRUSTED_PROXIES`), against a real
//! chatgate over real sockets. Every connection comes from 127.0.0.1, so
//! each test either trusts that address (it plays the proxy) or does not
//! (it plays a client forging the headers). Which address a connection
//! was counted under is read from the per-address limiter itself.

mod support;

use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use chatgate::auth::Role;
use serde_json::json;
use support::*;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const LOOPBACK: &str = "127.0.0.1";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Open connections counted under `addr`.
fn open_from(server: &TestServer, addr: &str) -> usize {
    server.state.address_limiter.open_from(ip(addr))
}

/// Opens `/ws` as an agent with extra request headers (each appended, so
/// a name given twice is sent twice); `Err` is the refusal's HTTP status.
async fn connect_with(
    server: &TestServer,
    headers: &[(&'static str, &str)],
) -> Result<Client, u16> {
    let mut req = format!("ws://{}/ws", server.addr)
        .into_client_request()
        .unwrap();
    let bearer = format!("Bearer {}", token(Role::Agent, "a1", None));
    req.headers_mut()
        .insert("authorization", bearer.parse().unwrap());
    for (name, value) in headers {
        req.headers_mut().append(*name, value.parse().unwrap());
    }
    Client::connect_request(req).await
}

/// Starts a customer session with extra headers; the HTTP status.
async fn new_session(server: &TestServer, headers: &[(&'static str, &str)]) -> u16 {
    let mut req = reqwest::Client::new()
        .post(server.url("/api/v2/customer/sessions"))
        .json(&json!({"nickname": "Ann", "message": "hello"}));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let resp = tokio::time::timeout(WAIT, req.send())
        .await
        .expect("an answer in time")
        .unwrap();
    resp.status().as_u16()
}

fn xff(value: &str) -> [(&'static str, &str); 1] {
    [("x-forwarded-for", value)]
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_quota() {
    let server = start(|c| {
        c.trusted_proxies = vec![LOOPBACK.into()];
        c.max_connections_per_address = 1;
    })
    .await;
    let _first = connect_with(&server, &xff("203.0.113.1")).await.unwrap();
    let _second = connect_with(&server, &xff("203.0.113.2")).await.unwrap();
    let refused = connect_with(&server, &xff("203.0.113.1")).await;
    assert_eq!(refused.err(), Some(429), "the first client's second one");
    assert_eq!(server.state.metrics.refusals.get("per_address"), 1);
    assert_eq!(open_from(&server, "203.0.113.1"), 1);
    assert_eq!(open_from(&server, "203.0.113.2"), 1);
    assert_eq!(open_from(&server, LOOPBACK), 0, "the proxy holds no slot");
    // The proxy's own requests (no header) have the proxy's quota.
    let _own = connect_with(&server, &[]).await.unwrap();
    assert_eq!(open_from(&server, LOOPBACK), 1);
    server.stop().await;
}

#[tokio::test]
async fn from_an_untrusted_peer_forwarding_headers_lift_no_limit() {
    let server = start(|c| {
        c.trusted_proxies = vec!["10.0.0.0/8".into()];
        c.max_connections_per_address = 1;
        c.customer_session_rate = 1;
    })
    .await;
    let _first = connect_with(&server, &xff("203.0.113.1")).await.unwrap();
    assert_eq!(open_from(&server, LOOPBACK), 1, "the peer counts");
    assert_eq!(open_from(&server, "203.0.113.1"), 0);
    for spoofed in [
        ("x-forwarded-for", "203.0.113.2"),
        ("forwarded", "for=203.0.113.3"),
    ] {
        let refused = connect_with(&server, &[spoofed]).await;
        assert_eq!(refused.err(), Some(429), "{spoofed:?}");
    }
    assert_eq!(server.state.metrics.refusals.get("per_address"), 2);

    assert_eq!(new_session(&server, &xff("203.0.113.1")).await, 201);
    assert_eq!(
        new_session(&server, &xff("203.0.113.2")).await,
        429,
        "another forged client is the same peer"
    );
    server.stop().await;
}

#[tokio::test]
async fn the_rightmost_untrusted_address_is_the_client() {
    let server = start(|c| c.trusted_proxies = vec![LOOPBACK.into(), "10.9.9.9".into()]).await;

    // A client that forged a left-most entry, then another trusted proxy.
    let _chain = connect_with(&server, &xff("6.6.6.6, 203.0.113.7, 10.9.9.9"))
        .await
        .unwrap();
    assert_eq!(open_from(&server, "203.0.113.7"), 1);
    for passed_over in ["6.6.6.6", "10.9.9.9", LOOPBACK] {
        assert_eq!(open_from(&server, passed_over), 0, "{passed_over}");
    }

    // Every instance of the header counts, in order.
    let _split = connect_with(
        &server,
        &[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "203.0.113.8, 10.9.9.9"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(open_from(&server, "203.0.113.8"), 1);
    assert_eq!(open_from(&server, "6.6.6.6"), 0);

    // Unreadable where it must be read: the proxy's own address counts.
    let _unreadable = connect_with(&server, &xff("203.0.113.9, unknown"))
        .await
        .unwrap();
    assert_eq!(open_from(&server, "203.0.113.9"), 0);
    assert_eq!(open_from(&server, LOOPBACK), 1);
    server.stop().await;
}

#[tokio::test]
async fn a_forwarded_header_names_a_quoted_ipv6_client() {
    let server = start(|c| c.trusted_proxies = vec![LOOPBACK.into()]).await;
    let _v6 = connect_with(&server, &[("forwarded", "for=\"[2001:db8::1]:4711\"")])
        .await
        .unwrap();
    assert_eq!(open_from(&server, "2001:db8::1"), 1);
    assert_eq!(open_from(&server, LOOPBACK), 0);
    server.stop().await;
}

#[tokio::test]
async fn the_customer_session_rate_counts_per_forwarded_client() {
    let server = start(|c| {
        c.trusted_proxies = vec![LOOPBACK.into()];
        c.customer_session_rate = 1;
    })
    .await;
    assert_eq!(new_session(&server, &xff("203.0.113.1")).await, 201);
    assert_eq!(new_session(&server, &xff("203.0.113.1")).await, 429);
    assert_eq!(
        new_session(&server, &xff("6.6.6.6, 203.0.113.1")).await,
        429,
        "a forged left-most entry does not make a new client"
    );
    assert_eq!(new_session(&server, &xff("203.0.113.2")).await, 201);
    assert_eq!(new_session(&server, &[]).await, 201, "the proxy's own");
    assert_eq!(
        server.state.metrics.refusals.get("customer_session_rate"),
        2
    );
    server.stop().await;
}

#[tokio::test]
async fn a_bad_trusted_proxies_value_refuses_to_start() {
    let mut config = chatgate::config::Config::for_tests();
    config.jwt_secret = Some(SECRET.into());
    config.trusted_proxies = vec!["127.0.0.1".into(), "10.0.0.0/33".into()];
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = chatgate::server::Server::build(config, listener)
        .await
        .err()
        .expect("a bad entry must not start")
        .to_string();
    assert!(err.contains("CHATGATE_TRUSTED_PROXIES"), "{err}");
    assert!(err.contains("10.0.0.0/33"), "{err}");

    // The binary, configured as in production, exits saying why.
    let mut child = Command::new(env!("CARGO_BIN_EXE_chatgate"))
        .env("CHATGATE_LISTEN", "127.0.0.1:0")
        .env("CHATGATE_JWT_SECRET", SECRET)
        .env("CHATGATE_TRUSTED_PROXIES", "10.0.0.1,nginx")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the chatgate binary");
    let deadline = std::time::Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chatgate started with a bad CHATGATE_TRUSTED_PROXIES");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(!status.success());
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("CHATGATE_TRUSTED_PROXIES"), "{stderr}");
    assert!(stderr.contains("\"nginx\""), "{stderr}");
}
