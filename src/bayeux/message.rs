//! Bayeux messages as this endpoint reads and writes them.
//!
//! Owns the parsing of a request batch (a JSON array of messages, or one
//! message), the fields the endpoint looks at, and the shapes of its
//! replies: `successful`, the `code:args:message` form of `error`, and
//! `advice`. A delivered notification is not built here: it is the hub's
//! frame, cut (see [`notification`]).

use bytes::Bytes;
use serde_json::{json, Map, Value};
use tokio_tungstenite::tungstenite::Utf8Bytes;

pub const HANDSHAKE: &str = "/meta/handshake";
pub const CONNECT: &str = "/meta/connect";
pub const SUBSCRIBE: &str = "/meta/subscribe";
pub const UNSUBSCRIBE: &str = "/meta/unsubscribe";
pub const DISCONNECT: &str = "/meta/disconnect";

/// Largest request (an HTTP body, a WebSocket message). Clients send
/// small control messages only; the token is the largest part.
pub const MAX_REQUEST: usize = 64 << 10;
/// Messages per request batch.
pub const MAX_BATCH: usize = 16;

/// One message of a client's batch, with the fields the endpoint reads.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub channel: String,
    pub id: Option<Value>,
    pub client_id: Option<String>,
    pub subscription: Option<Value>,
    pub ext: Map<String, Value>,
    pub advice: Map<String, Value>,
}

impl Request {
    /// Reads a message; `Err` is the reply for one that is no message.
    fn from_value(v: Value) -> Result<Self, Value> {
        let Value::Object(mut m) = v else {
            return Err(failure("", None, 400, "", "a message is a JSON object"));
        };
        // Ids are echoed as sent: only strings and numbers are ids.
        let id = m.remove("id").filter(|i| i.is_string() || i.is_number());
        let Some(Value::String(channel)) = m.remove("channel") else {
            return Err(failure(
                "",
                id.as_ref(),
                400,
                "",
                "a message needs a channel",
            ));
        };
        let object = |v: Option<Value>| match v {
            Some(Value::Object(o)) => o,
            _ => Map::new(),
        };
        Ok(Self {
            client_id: m
                .remove("clientId")
                .and_then(|c| c.as_str().map(str::to_owned)),
            subscription: m.remove("subscription"),
            ext: object(m.remove("ext")),
            advice: object(m.remove("advice")),
            channel,
            id,
        })
    }

    /// A string field of `ext`.
    pub fn ext_str(&self, key: &str) -> Option<&str> {
        self.ext.get(key).and_then(Value::as_str)
    }

    /// The timeout the client asks for in its `advice`, in milliseconds.
    pub fn advised_timeout(&self) -> Option<u64> {
        self.advice.get("timeout").and_then(Value::as_u64)
    }

    /// The batch a connect acknowledges (`ext.ack`, the ack extension's).
    pub fn ack(&self) -> Option<i64> {
        self.ext.get("ack").and_then(Value::as_i64)
    }
}

/// Why a request is refused as a whole.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BatchError {
    #[error("the request is not JSON")]
    NotJson,
    #[error("a request holds at most {MAX_BATCH} messages")]
    TooMany,
    #[error("a request is a message or a non-empty array of messages")]
    Empty,
}

impl BatchError {
    /// The Bayeux reply that says so.
    pub fn reply(&self) -> Value {
        failure("", None, 400, "", &self.to_string())
    }
}

/// Parses a request: each message, or the reply that refuses it.
pub fn parse_batch(body: &[u8]) -> Result<Vec<Result<Request, Value>>, BatchError> {
    let value: Value = serde_json::from_slice(body).map_err(|_| BatchError::NotJson)?;
    let messages = match value {
        Value::Array(a) => a,
        v @ Value::Object(_) => vec![v],
        _ => return Err(BatchError::Empty),
    };
    if messages.is_empty() {
        return Err(BatchError::Empty);
    }
    if messages.len() > MAX_BATCH {
        return Err(BatchError::TooMany);
    }
    Ok(messages.into_iter().map(Request::from_value).collect())
}

/// The start of a successful reply to `req`.
pub fn success(req: &Request) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("channel".into(), Value::String(req.channel.clone()));
    if let Some(id) = &req.id {
        m.insert("id".into(), id.clone());
    }
    m.insert("successful".into(), Value::Bool(true));
    m
}

/// A refusal: `error` is Bayeux's `code:args:message`.
pub fn failure(channel: &str, id: Option<&Value>, code: u16, args: &str, message: &str) -> Value {
    let mut m = Map::new();
    m.insert("channel".into(), Value::String(channel.to_owned()));
    if let Some(id) = id {
        m.insert("id".into(), id.clone());
    }
    m.insert("successful".into(), Value::Bool(false));
    m.insert(
        "error".into(),
        Value::String(format!("{code}:{args}:{message}")),
    );
    Value::Object(m)
}

/// A refusal of `req`, with the advice given (if any).
pub fn refuse(req: &Request, code: u16, message: &str, advice: Option<Value>) -> Value {
    let mut reply = failure(&req.channel, req.id.as_ref(), code, "", message);
    if let (Some(advice), Value::Object(m)) = (advice, &mut reply) {
        m.insert("advice".into(), advice);
    }
    reply
}

/// Advice to handshake again (an unknown or ended clientId).
pub fn handshake_again() -> Value {
    json!({"reconnect": "handshake", "interval": 0})
}

/// Advice not to come back (refused for good).
pub fn no_reconnect() -> Value {
    json!({"reconnect": "none"})
}

/// The start of the hub's notification frame:
/// `{"type":"notification","id":..,"channel":..,"data":..}`.
const FRAME_HEAD: &str = r#"{"type":"notification","#;

/// The Bayeux message of a hub frame, less its opening brace:
/// `"id":..,"channel":"/v2/me/facebooksession","data":..}`. A slice of the
/// frame's bytes, shared with every other connection of its audience: the
/// notification is serialized once, as on `/ws`. `None` for bytes that are
/// not a notification frame (never the case; skipped, not sent).
pub fn notification(frame: &Utf8Bytes) -> Option<Bytes> {
    if !frame.as_str().starts_with(FRAME_HEAD) {
        return None;
    }
    Some(Bytes::from(frame.clone()).slice(FRAME_HEAD.len()..))
}

/// A response: the notifications, then the replies, as one JSON array.
pub fn response(notifications: &[Bytes], replies: &[Value]) -> String {
    let size: usize = notifications.iter().map(|n| n.len() + 2).sum();
    let mut out = String::with_capacity(size + 256 * replies.len() + 2);
    out.push('[');
    for n in notifications {
        if out.len() > 1 {
            out.push(',');
        }
        out.push('{');
        // Frames are UTF-8 (they are `Utf8Bytes`), cut after an ASCII prefix.
        out.push_str(std::str::from_utf8(n).unwrap_or("}"));
    }
    for r in replies {
        if out.len() > 1 {
            out.push(',');
        }
        out.push_str(&r.to_string());
    }
    out.push(']');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{AgentFrame, Frame};

    #[test]
    fn a_hub_frame_becomes_a_bayeux_message_without_reserializing() {
        let frame = AgentFrame::new("17", r#"{"a": [1, 2.50]}"#);
        let n = notification(frame.bytes()).unwrap();
        let body = response(&[n], &[json!({"channel": CONNECT, "successful": true})]);
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v[0]["channel"], "/v2/me/facebooksession");
        assert_eq!(v[0]["id"], "17");
        assert!(v[0].get("type").is_none());
        assert!(body.contains(r#""data":{"a": [1, 2.50]}"#), "{body}");
        assert_eq!(v[1]["channel"], CONNECT);
    }

    #[test]
    fn batches_and_bad_messages() {
        assert_eq!(parse_batch(b"nope").unwrap_err(), BatchError::NotJson);
        assert_eq!(parse_batch(b"[]").unwrap_err(), BatchError::Empty);
        let many = format!("[{}]", vec!["{}"; MAX_BATCH + 1].join(","));
        assert_eq!(
            parse_batch(many.as_bytes()).unwrap_err(),
            BatchError::TooMany
        );
        let got = parse_batch(
            br#"[{"channel":"/meta/connect","id":"3","ext":{"ack":2}}, 5, {"id":"9"}]"#,
        )
        .unwrap();
        let first = got[0].as_ref().unwrap();
        assert_eq!((first.channel.as_str(), first.ack()), (CONNECT, Some(2)));
        assert_eq!(
            got[1].as_ref().unwrap_err()["error"],
            "400::a message is a JSON object"
        );
        let no_channel = got[2].as_ref().unwrap_err();
        assert_eq!(
            (&no_channel["id"], no_channel["successful"].as_bool()),
            (&json!("9"), Some(false))
        );
    }
}
