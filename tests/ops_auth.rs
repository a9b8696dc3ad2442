//! Authentication options against a real chatgate: RS256 and ES256 tokens
//! verified with a configured PEM public key (key pairs generated here),
//! `aud` / `iss` checks, the clock leeway, a token expiring under a live
//! stream (error frame, then close 4001), and the Origin allow-list.

mod support;

use std::time::Duration;

use chatgate::auth::{now_secs, Claims, Role};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use support::*;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Signs arbitrary claims.
fn sign(alg: Algorithm, key: &EncodingKey, claims: &Value) -> String {
    encode(&Header::new(alg), claims, key).unwrap()
}

fn claims(role: &str, sub: &str, exp: u64) -> Value {
    json!({"sub": sub, "role": role, "exp": exp})
}

fn hs256(claims: &Value) -> String {
    sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(SECRET.as_bytes()),
        claims,
    )
}

async fn status_of(server: &TestServer, token: &str) -> Result<(), u16> {
    Client::connect(server.addr, token, None).await.map(drop)
}

/// An RSA key pair: (private key PEM, public key PEM).
fn rsa_pair() -> (String, String) {
    use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
    let mut rng = rsa::rand_core::OsRng;
    let private = rsa::RsaPrivateKey::new(&mut rng, 2048).unwrap();
    let private_pem = private.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
    let public_pem = private
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    (private_pem, public_pem)
}

/// A P-256 key pair: (private key PEM, public key PEM).
fn p256_pair() -> (String, String) {
    use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
    let secret = p256::SecretKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
    let private_pem = secret.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
    let public_pem = secret
        .public_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    (private_pem, public_pem)
}

#[tokio::test]
async fn rs256_tokens_verify_with_the_configured_public_key() {
    let (private, public) = rsa_pair();
    let (other_private, _) = rsa_pair();
    let server = start(|c| c.jwt_public_key = Some(public)).await;
    let exp = now_secs() + 600;
    let key = EncodingKey::from_rsa_pem(private.as_bytes()).unwrap();
    let good = sign(Algorithm::RS256, &key, &claims("agent", "a1", exp));
    let client = Client::connect(server.addr, &good, None).await.unwrap();
    assert_eq!(client.welcome["sub"], "a1");
    assert_eq!(client.welcome["role"], "agent");

    let forged_key = EncodingKey::from_rsa_pem(other_private.as_bytes()).unwrap();
    let forged = sign(Algorithm::RS256, &forged_key, &claims("agent", "a1", exp));
    assert_eq!(status_of(&server, &forged).await, Err(401), "another key");
    let es = {
        let (p, _) = p256_pair();
        sign(
            Algorithm::ES256,
            &EncodingKey::from_ec_pem(p.as_bytes()).unwrap(),
            &claims("agent", "a1", exp),
        )
    };
    assert_eq!(
        status_of(&server, &es).await,
        Err(401),
        "an algorithm not configured"
    );
    let expired = sign(
        Algorithm::RS256,
        &key,
        &claims("agent", "a1", now_secs() - 5),
    );
    assert_eq!(status_of(&server, &expired).await, Err(401), "expired");
    assert_eq!(
        status_of(&server, &hs256(&claims("agent", "a1", exp))).await,
        Ok(()),
        "HS256 with the secret still works beside the public key"
    );
    server.stop().await;
}

#[tokio::test]
async fn es256_tokens_verify_with_the_configured_public_key() {
    let (private, public) = p256_pair();
    let (other_private, _) = p256_pair();
    let server = start(|c| c.jwt_public_key = Some(public)).await;
    let exp = now_secs() + 600;
    let key = EncodingKey::from_ec_pem(private.as_bytes()).unwrap();
    let customer = json!({"sub": "c1", "role": "customer", "sid": "s1", "exp": exp});
    let client = Client::connect(server.addr, &sign(Algorithm::ES256, &key, &customer), None)
        .await
        .unwrap();
    assert_eq!(client.welcome["role"], "customer");

    let forged_key = EncodingKey::from_ec_pem(other_private.as_bytes()).unwrap();
    let forged = sign(Algorithm::ES256, &forged_key, &customer);
    assert_eq!(status_of(&server, &forged).await, Err(401));
    server.stop().await;
}

#[tokio::test]
async fn a_public_key_that_is_not_one_refuses_to_start() {
    let mut config = chatgate::config::Config::for_tests();
    config.jwt_secret = Some(SECRET.into());
    config.jwt_public_key =
        Some("-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n".into());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = chatgate::server::Server::build(config, listener)
        .await
        .err()
        .expect("a bad key must not start");
    assert!(err.to_string().contains("CHATGATE_JWT_PUBLIC_KEY"), "{err}");
}

#[tokio::test]
async fn audience_and_issuer_are_checked_when_configured() {
    let server = start(|c| {
        c.jwt_audience = Some("chatgate".into());
        c.jwt_issuer = Some("https://idp.example.com".into());
    })
    .await;
    let exp = now_secs() + 600;
    let with = |aud: Option<Value>, iss: Option<&str>| {
        let mut c = claims("agent", "a1", exp);
        if let Some(aud) = aud {
            c["aud"] = aud;
        }
        if let Some(iss) = iss {
            c["iss"] = json!(iss);
        }
        hs256(&c)
    };
    let idp = Some("https://idp.example.com");
    assert_eq!(
        status_of(&server, &with(Some(json!("chatgate")), idp)).await,
        Ok(())
    );
    assert_eq!(
        status_of(&server, &with(Some(json!(["billing", "chatgate"])), idp)).await,
        Ok(()),
        "one of several audiences"
    );
    assert_eq!(
        status_of(&server, &with(None, idp)).await,
        Err(401),
        "no aud"
    );
    assert_eq!(
        status_of(&server, &with(Some(json!("billing")), idp)).await,
        Err(401),
        "another audience"
    );
    assert_eq!(
        status_of(&server, &with(Some(json!("chatgate")), None)).await,
        Err(401),
        "no iss"
    );
    assert_eq!(
        status_of(
            &server,
            &with(Some(json!("chatgate")), Some("https://evil.example"))
        )
        .await,
        Err(401),
        "another issuer"
    );
    // Tokens chatgate mints itself (customer tokens, dev tokens) pass its
    // own checks.
    let minted = server.state.auth.mint(Role::Customer, "c1", Some("s1"), 60);
    assert_eq!(status_of(&server, &minted).await, Ok(()));
    assert_eq!(
        server.state.metrics.auth_rejects.get("invalid"),
        4,
        "each refusal is counted"
    );
    server.stop().await;
}

#[tokio::test]
async fn the_leeway_accepts_a_token_just_past_its_exp() {
    let just_expired = hs256(&claims("agent", "a1", now_secs() - 5));
    let strict = start(|_| {}).await;
    assert_eq!(status_of(&strict, &just_expired).await, Err(401));
    assert_eq!(strict.state.metrics.auth_rejects.get("expired"), 1);
    strict.stop().await;

    let lenient = start(|c| c.jwt_leeway_secs = 60).await;
    assert_eq!(status_of(&lenient, &just_expired).await, Ok(()));
    let long_expired = hs256(&claims("agent", "a1", now_secs() - 120));
    assert_eq!(status_of(&lenient, &long_expired).await, Err(401));
    lenient.stop().await;
}

#[tokio::test]
async fn a_token_expiring_under_a_live_stream_closes_it_with_4001() {
    let server = start(|_| {}).await;
    let exp = now_secs() + 2;
    let customer = Claims {
        sub: "c1".into(),
        role: Role::Customer,
        sid: Some("s1".into()),
        exp,
    };
    let token = hs256(&serde_json::to_value(&customer).unwrap());
    let mut client = Client::connect(server.addr, &token, None).await.unwrap();
    let mut agent = Client::connect(server.addr, &hs256(&claims("agent", "a1", exp)), None)
        .await
        .unwrap();

    let (closed, error) = client.until_close().await;
    assert_eq!(closed, Closed::Code(4001));
    let error = error.expect("an error frame before the close");
    assert_eq!(error["code"], 4001);
    assert!(
        error["message"].as_str().unwrap().contains("expired"),
        "{error}"
    );
    let expired_at = std::time::UNIX_EPOCH + Duration::from_secs(exp);
    assert!(
        std::time::SystemTime::now() >= expired_at,
        "closed before the token expired"
    );
    let (closed, _) = agent.until_close().await;
    assert_eq!(closed, Closed::Code(4001), "agents too");
    let metrics = &server.state.metrics;
    let deadline = tokio::time::Instant::now() + WAIT;
    while metrics.connections_closed.get("4001") < 2 {
        assert!(tokio::time::Instant::now() < deadline, "closes not counted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.stop().await;
}

fn with_origin(
    server: &TestServer,
    origin: &str,
) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    let mut req = format!("ws://{}/ws", server.addr)
        .into_client_request()
        .unwrap();
    let t = token(Role::Agent, "a1", None);
    req.headers_mut()
        .insert("authorization", format!("Bearer {t}").parse().unwrap());
    req.headers_mut().insert("origin", origin.parse().unwrap());
    req
}

#[tokio::test]
async fn a_websocket_from_a_foreign_origin_is_refused_with_403() {
    let server = start(|c| {
        c.allowed_origins = vec![
            "https://desk.example.com".into(),
            "https://shop.example.com/".into(),
        ]
    })
    .await;
    for origin in [
        "https://evil.example.com",
        "https://desk.example.com.evil.example",
        "null",
    ] {
        let refused = Client::connect_request(with_origin(&server, origin)).await;
        assert_eq!(refused.err(), Some(403), "{origin}");
    }
    assert_eq!(server.state.metrics.auth_rejects.get("origin"), 3);
    assert_eq!(server.state.hub.connection_count(), 0);
    for origin in ["https://desk.example.com", "https://shop.example.com"] {
        Client::connect_request(with_origin(&server, origin))
            .await
            .unwrap_or_else(|s| panic!("{origin} refused with {s}"));
    }
    server.stop().await;
}

#[tokio::test]
async fn without_an_allow_list_any_origin_may_connect() {
    let server = start(|_| {}).await;
    Client::connect_request(with_origin(&server, "https://anywhere.example"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    server.stop().await;
}
