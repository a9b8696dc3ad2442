//! A minimal Bayeux client over real HTTP and a real WebSocket, for the
//! endpoint's own tests (the official CometD client runs in
//! `tests/cometd.rs`). Every receive has a timeout.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use super::{Ws, WAIT};

pub const PATH: &str = "/api/v2/notifications";
pub const CHANNEL: &str = "/v2/me/facebooksession";

/// Posts one batch; the HTTP status and the reply array.
pub async fn bayeux_post(base: &str, batch: Value, bearer: Option<&str>) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{base}{PATH}"))
        .header("content-type", "application/json")
        .body(batch.to_string())
        .timeout(Duration::from_secs(60));
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    assert_eq!(
        resp.headers()["content-type"],
        "application/json",
        "replies are JSON"
    );
    (status, resp.json().await.unwrap())
}

/// The reply on `channel` in a response array.
pub fn reply<'a>(replies: &'a Value, channel: &str) -> &'a Value {
    replies
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["channel"] == channel)
        .unwrap_or_else(|| panic!("no {channel} reply in {replies}"))
}

/// The notifications in a response array.
pub fn notifications(replies: &Value) -> Vec<Value> {
    replies
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["channel"] == CHANNEL)
        .cloned()
        .collect()
}

/// A long-polling client with its clientId.
pub struct LongPoll {
    pub base: String,
    pub client_id: String,
    pub handshake: Value,
    /// The ack extension's last batch, when enabled.
    pub ack: Option<i64>,
}

impl LongPoll {
    /// Handshakes with `ext` (the token in it, or none) and subscribes.
    pub async fn start(base: &str, ext: Value) -> LongPoll {
        let ack = ext.get("ack") == Some(&Value::Bool(true));
        let (status, replies) = bayeux_post(
            base,
            json!([{"channel": "/meta/handshake", "version": "1.0", "id": "1",
                    "supportedConnectionTypes": ["long-polling"], "ext": ext}]),
            None,
        )
        .await;
        assert_eq!(status, 200);
        let hs = reply(&replies, "/meta/handshake").clone();
        assert_eq!(hs["successful"], true, "{hs}");
        assert_eq!(hs["id"], "1");
        let client_id = hs["clientId"].as_str().unwrap().to_owned();
        let c = LongPoll {
            base: base.to_owned(),
            client_id,
            handshake: hs,
            ack: ack.then_some(-1),
        };
        let (_, replies) = bayeux_post(
            base,
            json!([{"channel": "/meta/subscribe", "clientId": c.client_id,
                    "subscription": CHANNEL, "id": "2"}]),
            None,
        )
        .await;
        assert_eq!(reply(&replies, "/meta/subscribe")["successful"], true);
        c
    }

    /// One /meta/connect; the whole response.
    pub async fn connect_raw(&self, timeout_ms: Option<u64>, ack: Option<i64>) -> Value {
        let mut msg = json!({"channel": "/meta/connect", "clientId": self.client_id,
                             "connectionType": "long-polling", "id": "c"});
        if let Some(t) = timeout_ms {
            msg["advice"] = json!({"timeout": t});
        }
        if let Some(a) = ack {
            msg["ext"] = json!({"ack": a});
        }
        let (status, replies) =
            tokio::time::timeout(WAIT * 6, bayeux_post(&self.base, json!([msg]), None))
                .await
                .expect("a connect is answered within its timeout");
        assert_eq!(status, 200);
        replies
    }

    /// One /meta/connect that must succeed; its notifications (and the
    /// acknowledged batch moves on).
    pub async fn connect(&mut self, timeout_ms: Option<u64>) -> Vec<Value> {
        let replies = self.connect_raw(timeout_ms, self.ack).await;
        let c = reply(&replies, "/meta/connect");
        assert_eq!(c["successful"], true, "{replies}");
        if self.ack.is_some() {
            self.ack = c["ext"]["ack"].as_i64();
        }
        notifications(&replies)
    }

    /// Connects until `n` notifications came (bounded in time).
    pub async fn collect(&mut self, n: usize) -> Vec<Value> {
        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + WAIT;
        while got.len() < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "only {got:?} of {n}"
            );
            got.extend(self.connect(Some(2000)).await);
        }
        assert_eq!(got.len(), n, "{got:?}");
        got
    }
}

/// A Bayeux WebSocket.
pub async fn ws_open(addr: std::net::SocketAddr) -> Ws {
    let (ws, _) = tokio::time::timeout(
        WAIT,
        tokio_tungstenite::connect_async(format!("ws://{addr}{PATH}")),
    )
    .await
    .unwrap()
    .unwrap();
    ws
}

pub async fn ws_send(ws: &mut Ws, batch: Value) {
    ws.send(Message::text(batch.to_string())).await.unwrap();
}

/// The next response array on the socket.
pub async fn ws_recv(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(WAIT * 3, ws.next())
            .await
            .expect("a response in time")
            .expect("the socket is open")
            .unwrap();
        if let Message::Text(t) = msg {
            return serde_json::from_str(&t).unwrap();
        }
    }
}
