//! `POST /upstream/events`: notifications from any other chat server.
//!
//! Owns parsing a batch (one notification, a JSON array of them, or NDJSON)
//! and its all-or-nothing rule: every item is validated (`event`: shape,
//! unique keys, frame bound) before anything is published, and one bad
//! item rejects the batch, naming the item and the reason: HTTP 400, or
//! 413 for an item over the frame bound. Accepted items go to the bus as
//! they were received, without being serialized again. An
//! `Idempotency-Key` header (up to 128 printable characters) makes a
//! retried batch be stored once on the NATS bus.

use std::cell::Cell;
use std::fmt;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::{DeserializeSeed, SeqAccess, Visitor};
use serde_json::json;
use serde_json::value::RawValue;

use crate::auth::{roles, Authenticated};
use crate::error::AppError;
use crate::event::{Event, EventError};
use crate::metrics::refusal;
use crate::state::SharedState;

/// Why a batch was refused, naming the item (1-based).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BatchError {
    #[error("empty batch")]
    Empty,
    #[error("item {item}: {reason}")]
    Item { item: usize, reason: EventError },
}

impl BatchError {
    /// Whether the batch is refused for an item's size (HTTP 413).
    pub fn is_too_large(&self) -> bool {
        matches!(self, BatchError::Item { reason, .. } if reason.is_too_large())
    }
}

/// Parses a request body into validated events, each within `max_frame`.
pub fn parse_batch(body: &Bytes, ndjson: bool, max_frame: usize) -> Result<Vec<Event>, BatchError> {
    let items = if ndjson {
        lines(body)
    } else {
        match first_byte(body) {
            Some(b'[') => array_items(body)?,
            _ => vec![trimmed(body, 0..body.len())],
        }
    };
    if items.is_empty() {
        return Err(BatchError::Empty);
    }
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            Event::parse(item, max_frame).map_err(|reason| BatchError::Item {
                item: i + 1,
                reason,
            })
        })
        .collect()
}

fn first_byte(body: &[u8]) -> Option<u8> {
    body.iter().find(|b| !b.is_ascii_whitespace()).copied()
}

/// `range` of `body` without the whitespace around it.
fn trimmed(body: &Bytes, range: std::ops::Range<usize>) -> Bytes {
    let part = &body[range.clone()];
    let start = part
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(part.len());
    let end = part
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    body.slice(range.start + start..range.start + end)
}

/// The non-blank lines of an NDJSON body.
fn lines(body: &Bytes) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, b) in body
        .iter()
        .enumerate()
        .chain(std::iter::once((body.len(), &b'\n')))
    {
        if *b == b'\n' {
            let line = trimmed(body, start..i);
            if !line.is_empty() {
                out.push(line);
            }
            start = i + 1;
        }
    }
    out
}

/// The items of a JSON array body, each as its own bytes (shared with
/// the body). Invalid JSON names the item it breaks in.
fn array_items(body: &Bytes) -> Result<Vec<Bytes>, BatchError> {
    let text = std::str::from_utf8(body).map_err(|_| BatchError::Item {
        item: 1,
        reason: EventError::Json("not valid UTF-8".into()),
    })?;
    let seen = Cell::new(0);
    let mut de = serde_json::Deserializer::from_str(text);
    let raws = Items { seen: &seen }
        .deserialize(&mut de)
        .and_then(|items| de.end().map(|()| items))
        .map_err(|e| BatchError::Item {
            item: seen.get() + 1,
            reason: EventError::Json(e.to_string()),
        })?;
    let base = text.as_ptr() as usize;
    Ok(raws
        .iter()
        .map(|raw| {
            let start = raw.get().as_ptr() as usize - base;
            body.slice(start..start + raw.get().len())
        })
        .collect())
}

/// The elements of an array as raw values, counting those read so that an
/// error names the element it occurred in.
struct Items<'c> {
    seen: &'c Cell<usize>,
}

impl<'de> DeserializeSeed<'de> for Items<'_> {
    type Value = Vec<&'de RawValue>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Items<'_> {
    type Value = Vec<&'de RawValue>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of notifications")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(raw) = seq.next_element::<&'de RawValue>()? {
            out.push(raw);
            self.seen.set(out.len());
        }
        Ok(out)
    }
}

/// Notifications from an upstream chat server (SPEC 4).
#[utoipa::path(
    post,
    path = "/upstream/events",
    tag = "gateway",
    summary = "Ingest notifications",
    description = "One notification, a JSON array of them, or NDJSON (`application/x-ndjson`). All or \
nothing: one bad item refuses the batch, naming the item and the reason. The body is at most \
CHATGATE_INGEST_MAX_BYTES (default 16 MiB), each item at most CHATGATE_MAX_FRAME_BYTES (default 512 KiB).",
    request_body(
        description = "A notification (SPEC 1), an array of them, or NDJSON",
        content(
            (serde_json::Value = "application/json"),
            (String = "application/x-ndjson"),
        ),
    ),
    params(("Idempotency-Key" = Option<String>, Header, nullable = false, min_length = 1, max_length = 128, pattern = "^[!-~]{1,128}$",
        description = "1 to 128 printable ASCII characters: a batch sent again with the same key is published once")),
    responses(
        (status = 202, description = "Published", body = crate::openapi::IngestAccepted),
        (status = 400, description = "Refused, nothing published: not JSON, a key twice, an item not a notification, an empty batch, a bad Idempotency-Key", body = crate::openapi::GatewayError),
        (status = 401, description = "Missing, bad or expired token", body = crate::openapi::GatewayError),
        (status = 403, description = "A token of another role than service", body = crate::openapi::GatewayError),
        (status = 413, description = "The body, or one item, over its bound", body = crate::openapi::GatewayError),
        (status = 503, description = "The bus did not take the batch; nothing published", body = crate::openapi::GatewayError),
    ),
    security(("service" = [])),
)]
pub async fn post_events(
    State(state): State<SharedState>,
    _: Authenticated<roles::Service>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AppError> {
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            state.metrics.refusals.inc(refusal::INGEST_TOO_LARGE);
            AppError::PayloadTooLarge(format!(
                "the body exceeds {} bytes (CHATGATE_INGEST_MAX_BYTES)",
                state.config.ingest_max_bytes
            ))
        } else {
            AppError::BadRequest(rejection.body_text())
        }
    })?;
    let ndjson = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-ndjson"));
    let batch = parse_batch(&body, ndjson, state.config.max_frame_bytes).map_err(|e| {
        state.metrics.ingest_rejects.inc();
        // The reason may quote the body (serde errors do): only the item's
        // number is logged.
        let item = match &e {
            BatchError::Item { item, .. } => *item,
            BatchError::Empty => 0,
        };
        tracing::debug!(item, too_large = e.is_too_large(), "ingest batch rejected");
        if e.is_too_large() {
            state.metrics.refusals.inc(refusal::INGEST_ITEM_TOO_LARGE);
            AppError::PayloadTooLarge(e.to_string())
        } else {
            AppError::BadRequest(e.to_string())
        }
    })?;
    let key = idempotency_key(&headers)?;
    let accepted = batch.len();
    state.publish_keyed(batch, "ingest", key).await?;
    tracing::debug!(accepted, "ingest batch published");
    Ok((StatusCode::ACCEPTED, Json(json!({ "accepted": accepted }))).into_response())
}

/// The `Idempotency-Key` header, if any.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<&str>, AppError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(k) if !k.is_empty() && k.len() <= 128 && k.bytes().all(|b| b.is_ascii_graphic()) => {
            Ok(Some(k))
        }
        _ => Err(AppError::BadRequest(
            "Idempotency-Key: 1 to 128 printable ASCII characters".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = r#"{"notificationType":"NewMessages","messageType":"MessageLogUpdated","facebooksessionPath":"/facebooksessions/s1","messages":[]}"#;
    const BOUND: usize = 512 << 10;

    fn parse(body: &str, ndjson: bool) -> Result<Vec<Event>, BatchError> {
        parse_batch(&Bytes::copy_from_slice(body.as_bytes()), ndjson, BOUND)
    }

    #[test]
    fn one_array_and_ndjson_keep_each_item_as_received() {
        assert_eq!(parse(OK, false).unwrap()[0].raw(), OK);
        let two = parse(&format!("[ {OK} ,\n{OK}]"), false).unwrap();
        assert_eq!(two.len(), 2);
        assert_eq!(two[1].raw(), OK, "each item is its own bytes, trimmed");
        assert_eq!(parse(&format!("{OK}\n\n{OK}\n"), true).unwrap().len(), 2);
        assert_eq!(parse(&format!("  {OK}\r\n"), true).unwrap()[0].raw(), OK);
    }

    #[test]
    fn one_bad_item_names_itself() {
        let err = parse(&format!("{OK}\n{{\"x\":1}}\n"), true).unwrap_err();
        assert!(matches!(err, BatchError::Item { item: 2, .. }), "{err}");
        let err = parse(&format!("[{OK},3]"), false).unwrap_err();
        assert!(err.to_string().starts_with("item 2:"), "{err}");
        assert_eq!(parse("[]", false), Err(BatchError::Empty));
        let err = parse(&format!("[{OK},[1]]"), false).unwrap_err();
        assert!(err.to_string().starts_with("item 2:"), "{err}");
        let err = parse(&format!("[{OK},{OK},{{\"broken\""), false).unwrap_err();
        assert!(err.to_string().starts_with("item 3:"), "{err}");
        let no_session = OK.replace("facebooksessionPath", "elsewhere");
        let err = parse(&format!("{OK}\n{no_session}"), true).unwrap_err();
        assert!(matches!(err, BatchError::Item { item: 2, .. }), "{err}");
        let twice = OK.replace(r#""messages":[]"#, r#""messages":[],"messages":[]"#);
        let err = parse(&format!("[{OK},{twice}]"), false).unwrap_err();
        assert!(
            matches!(&err, BatchError::Item { item: 2, reason: EventError::DuplicateKey(k) } if k == "messages"),
            "{err}"
        );
    }

    #[test]
    fn an_item_over_the_frame_bound_is_a_413_naming_it() {
        let big = OK.replace(
            r#""messages":[]"#,
            &format!(r#""messages":[],"pad":"{}""#, "p".repeat(2000)),
        );
        let err = parse_batch(&Bytes::from(format!("[{OK},{big}]")), false, 1024).unwrap_err();
        assert!(err.is_too_large());
        assert!(err.to_string().starts_with("item 2:"), "{err}");
    }
}
