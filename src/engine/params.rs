//! Parameters of the operations, as in the Genesys Web Services API: the
//! request body as a JSON object, then each parameter read from it and
//! checked (type, emptiness, length), with an error that names the
//! parameter. Unknown parameters are ignored.

use serde_json::{Map, Value};

use super::error::OpError;

/// Longest text of a message, in characters.
pub const MAX_TEXT_CHARS: usize = 8192;
/// Longest URL of SendUrl.
pub const MAX_URL_CHARS: usize = 2048;
/// userData keys a session may hold.
pub const MAX_USER_DATA_KEYS: usize = 256;
/// Longest userData key.
pub const MAX_KEY_CHARS: usize = 256;
/// Longest agent nickname (Accept's `nickname`), as a customer's.
pub const MAX_NICKNAME_CHARS: usize = 64;
/// The userData key of SetDisposition when no `dispositionKey` is given.
pub const DEFAULT_DISPOSITION_KEY: &str = "Disposition";

/// How RemoveParticipantFromConference names the agent to remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParticipantRef {
    Id(String),
    /// A `targetUri` / `targetPath` of a user.
    User(String),
}

/// The request body as a JSON object.
pub fn json_object(body: &[u8]) -> Result<Map<String, Value>, OpError> {
    // A key given twice is ambiguous (`"text":"a","text":"b"`: which one
    // did the caller mean?): refused, as the ingest refuses it.
    let text = std::str::from_utf8(body)
        .map_err(|_| OpError::bad("the body is not valid JSON: not UTF-8"))?;
    if let Err(e @ crate::event::EventError::DuplicateKey(_)) =
        crate::event::check_unique_keys(text)
    {
        return Err(OpError::bad(format!("the body is {e}")));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(OpError::bad("the body must be a JSON object")),
        Err(e) => Err(OpError::bad(format!("the body is not valid JSON: {e}"))),
    }
}

pub fn target(body: &Map<String, Value>) -> Result<String, OpError> {
    for key in ["targetUri", "targetPath"] {
        match body.get(key) {
            Some(Value::String(s)) if !s.trim().is_empty() => return Ok(s.trim().to_owned()),
            None | Some(Value::Null) => {}
            Some(_) => return Err(OpError::bad(format!("{key} must be a non-empty string"))),
        }
    }
    Err(OpError::missing("targetUri or targetPath is mandatory"))
}

/// A mandatory, non-blank string parameter of at most `max` characters.
pub fn text(body: &Map<String, Value>, key: &str, max: usize) -> Result<String, OpError> {
    match body.get(key) {
        Some(Value::String(s)) if s.trim().is_empty() => {
            Err(OpError::bad(format!("{key} must not be empty")))
        }
        Some(Value::String(s)) if s.chars().count() > max => Err(OpError::bad(format!(
            "{key} is longer than {max} characters"
        ))),
        Some(Value::String(s)) => Ok(s.clone()),
        None | Some(Value::Null) => Err(OpError::missing(format!("missing {key}"))),
        Some(_) => Err(OpError::bad(format!("{key} must be a string"))),
    }
}

/// An optional string parameter: absent or null is `None`; given, it is
/// checked as [`text`] (and trimmed).
pub fn optional_text(
    body: &Map<String, Value>,
    key: &str,
    max: usize,
) -> Result<Option<String>, OpError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(_) => text(body, key, max).map(|t| Some(t.trim().to_owned())),
    }
}

pub fn url(body: &Map<String, Value>) -> Result<String, OpError> {
    let url = text(body, "url", MAX_URL_CHARS)?;
    let well_formed = (url.starts_with("http://") || url.starts_with("https://"))
        && url.len() > "https://".len()
        && !url.chars().any(char::is_whitespace);
    if well_formed {
        Ok(url)
    } else {
        Err(OpError::bad("url must be an http:// or https:// URL"))
    }
}

pub fn user_data(body: &Map<String, Value>) -> Result<Map<String, Value>, OpError> {
    match body.get("userData") {
        Some(Value::Object(m)) if m.is_empty() => Err(OpError::bad("userData is empty")),
        Some(Value::Object(m)) => {
            if let Some(k) = m
                .keys()
                .find(|k| k.is_empty() || k.chars().count() > MAX_KEY_CHARS)
            {
                return Err(OpError::bad(format!(
                    "userData key {k:?} must be 1 to {MAX_KEY_CHARS} characters"
                )));
            }
            if let Some((k, _)) = m.iter().find(|(_, v)| v.is_object() || v.is_array()) {
                return Err(OpError::bad(format!(
                    "userData value of {k:?} must be a string, number, boolean or null"
                )));
            }
            Ok(m.clone())
        }
        Some(_) => Err(OpError::bad("userData must be an object")),
        None => Err(OpError::missing("missing userData")),
    }
}

pub fn keys(body: &Map<String, Value>) -> Result<Vec<String>, OpError> {
    let Some(value) = body.get("keys") else {
        return Err(OpError::missing("missing keys"));
    };
    let keys: Option<Vec<String>> = value.as_array().and_then(|a| {
        a.iter()
            .map(|k| k.as_str().filter(|s| !s.is_empty()).map(str::to_owned))
            .collect()
    });
    match keys {
        Some(k) if !k.is_empty() => Ok(k),
        _ => Err(OpError::bad("keys must be a non-empty array of strings")),
    }
}

pub fn participant_ref(body: &Map<String, Value>) -> Result<ParticipantRef, OpError> {
    match body.get("participantId") {
        Some(Value::String(s)) if !s.is_empty() => return Ok(ParticipantRef::Id(s.clone())),
        None | Some(Value::Null) => {}
        Some(_) => return Err(OpError::bad("participantId must be a non-empty string")),
    }
    target(body)
        .map(ParticipantRef::User)
        .map_err(|_| OpError::missing("participantId (or targetUri / targetPath) is mandatory"))
}
