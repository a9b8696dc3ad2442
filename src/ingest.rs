//! `POST /upstream/events`: notifications from any other chat server.
//!
//! Owns parsing a batch (one notification, a JSON array of them, or NDJSON)
//! and its all-or-nothing rule: every item is validated before anything is
//! published, and one bad item rejects the batch with HTTP 400 naming the
//! item and the reason. Accepted batches go to the bus like the engine's.
//! An `Idempotency-Key` header (up to 128 printable characters) makes a
//! retried batch be stored once on the NATS bus.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::auth::{roles, Authenticated};
use crate::error::AppError;
use crate::metrics::refusal;
use crate::model::Notification;
use crate::state::SharedState;

/// Why a batch was refused, naming the item (1-based).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BatchError {
    #[error("empty batch")]
    Empty,
    #[error("item {item}: {reason}")]
    Item { item: usize, reason: String },
}

/// Parses a request body into validated notifications.
pub fn parse_batch(body: &[u8], ndjson: bool) -> Result<Vec<Notification>, BatchError> {
    if let Some(batch) = parse_valid_batch(body, ndjson) {
        return Ok(batch);
    }
    let items: Vec<Result<Value, String>> = if ndjson {
        body.split(|b| *b == b'\n')
            .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
            .map(|line| serde_json::from_slice(line).map_err(|e| format!("not valid JSON: {e}")))
            .collect()
    } else {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Array(items)) => items.into_iter().map(Ok).collect(),
            Ok(one) => vec![Ok(one)],
            Err(e) => {
                return Err(BatchError::Item {
                    item: 1,
                    reason: format!("not valid JSON: {e}"),
                })
            }
        }
    };
    if items.is_empty() {
        return Err(BatchError::Empty);
    }
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            item.and_then(|v| Notification::from_value(v).map_err(|e| e.to_string()))
                .map_err(|reason| BatchError::Item {
                    item: i + 1,
                    reason,
                })
        })
        .collect()
}

/// The batch when every item parses straight into a valid notification
/// (the common case, in one pass); `None` sends the body through the
/// item-by-item path above, which names the first bad item.
fn parse_valid_batch(body: &[u8], ndjson: bool) -> Option<Vec<Notification>> {
    let batch: Vec<Notification> = if ndjson {
        body.split(|b| *b == b'\n')
            .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
            .map(Notification::from_slice_fast)
            .collect::<Option<_>>()?
    } else {
        match body.iter().find(|b| !b.is_ascii_whitespace())? {
            b'[' => {
                let items: Vec<Notification> = serde_json::from_slice(body).ok()?;
                items
                    .iter()
                    .all(|n| n.validate().is_ok())
                    .then_some(items)?
            }
            _ => vec![Notification::from_slice_fast(body)?],
        }
    };
    (!batch.is_empty()).then_some(batch)
}

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
    let batch = parse_batch(&body, ndjson).map_err(|e| {
        state.metrics.ingest_rejects.inc();
        // The reason may quote the body (serde errors do): only the item's
        // number is logged.
        let item = match &e {
            BatchError::Item { item, .. } => *item,
            BatchError::Empty => 0,
        };
        tracing::debug!(item, "ingest batch rejected");
        AppError::BadRequest(e.to_string())
    })?;
    let key = idempotency_key(&headers).map_err(AppError::BadRequest)?;
    let accepted = batch.len();
    state.publish_keyed(batch, "ingest", key).await?;
    tracing::debug!(accepted, "ingest batch published");
    Ok((StatusCode::ACCEPTED, Json(json!({ "accepted": accepted }))).into_response())
}

/// The `Idempotency-Key` header, if any.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<&str>, String> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(k) if !k.is_empty() && k.len() <= 128 && k.bytes().all(|b| b.is_ascii_graphic()) => {
            Ok(Some(k))
        }
        _ => Err("Idempotency-Key: 1 to 128 printable ASCII characters".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = r#"{"notificationType":"NewMessages","messageType":"MessageLogUpdated","facebooksessionPath":"/facebooksessions/s1","messages":[]}"#;

    #[test]
    fn one_array_and_ndjson() {
        assert_eq!(parse_batch(OK.as_bytes(), false).unwrap().len(), 1);
        assert_eq!(
            parse_batch(format!("[{OK},{OK}]").as_bytes(), false)
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            parse_batch(format!("{OK}\n\n{OK}\n").as_bytes(), true)
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn one_bad_item_names_itself() {
        let err = parse_batch(format!("{OK}\n{{\"x\":1}}\n").as_bytes(), true).unwrap_err();
        assert!(matches!(err, BatchError::Item { item: 2, .. }), "{err}");
        let err = parse_batch(format!("[{OK},3]").as_bytes(), false).unwrap_err();
        assert!(err.to_string().starts_with("item 2:"), "{err}");
        assert_eq!(parse_batch(b"[]", false), Err(BatchError::Empty));
        let err = parse_batch(format!("[{OK},[1]]").as_bytes(), false).unwrap_err();
        assert!(err.to_string().starts_with("item 2:"), "{err}");
        let no_session = OK.replace("facebooksessionPath", "elsewhere");
        let err = parse_batch(format!("{OK}\n{no_session}").as_bytes(), true).unwrap_err();
        assert!(matches!(err, BatchError::Item { item: 2, .. }), "{err}");
    }
}
