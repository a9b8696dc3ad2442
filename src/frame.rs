//! The frames a connection receives, as shared bytes.
//!
//! Owns the notification envelope
//! `{"type":"notification","id":..,"channel":..,"data":..}`, the frame
//! types of the two audiences and the frame bound. An [`AgentFrame`] and a
//! customer frame ([`CustomerFrame`](crate::view::CustomerFrame), built
//! only by `view`) are distinct types, so a connection's queue takes one
//! audience's frames and no other: queuing an agent frame to a customer
//! does not compile. Both are `Utf8Bytes` inside (reference-counted): a
//! frame is built once per audience and shared by every connection.

use std::fmt::Write as _;

use tokio_tungstenite::tungstenite::Utf8Bytes;

/// CometD channel of every notification frame (SPEC 3).
pub const CHANNEL: &str = "/v2/me/facebooksession";

const ENVELOPE_HEAD: &str = r#"{"type":"notification","id":""#;
const ENVELOPE_MIDDLE: &str = r#"","channel":"/v2/me/facebooksession","data":"#;
const ENVELOPE_TAIL: &str = "}";

/// Bytes the envelope adds around its id and data.
pub const ENVELOPE_BYTES: usize = ENVELOPE_HEAD.len() + ENVELOPE_MIDDLE.len() + ENVELOPE_TAIL.len();

/// The longest id the server writes: a snapshot frame's `"<seq>:<k>"`.
pub const MAX_ID_BYTES: usize = 41;

/// What a frame of either audience offers a connection.
pub trait Frame: Clone + Send + Sync + 'static {
    fn bytes(&self) -> &Utf8Bytes;

    fn len(&self) -> usize {
        self.bytes().len()
    }

    fn is_empty(&self) -> bool {
        self.bytes().is_empty()
    }
}

/// A frame for agents and supervisors: the notification as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentFrame(Utf8Bytes);

impl AgentFrame {
    /// The envelope of `data` (JSON text, the notification exactly as
    /// received or a snapshot assembled from such parts) under `id`.
    pub fn new(id: &str, data: &str) -> Self {
        Self(envelope(id, data.len(), |out| out.push_str(data)))
    }
}

impl Frame for AgentFrame {
    fn bytes(&self) -> &Utf8Bytes {
        &self.0
    }
}

/// `{"type":"notification","id":"<id>","channel":..,"data":` + data + `}`.
pub(crate) fn envelope(id: &str, size_hint: usize, data: impl FnOnce(&mut String)) -> Utf8Bytes {
    let mut out = String::with_capacity(ENVELOPE_BYTES + id.len() + size_hint);
    out.push_str(ENVELOPE_HEAD);
    out.push_str(id);
    out.push_str(ENVELOPE_MIDDLE);
    data(&mut out);
    out.push_str(ENVELOPE_TAIL);
    Utf8Bytes::from(out)
}

/// The id of frame `k` (from 1) of `count` frames of a snapshot covering
/// sequence `seq`: `"<seq>:<k>"`, and the last one plain `"<seq>"`, so
/// that only a complete snapshot's last frame is a resume point.
pub fn snapshot_id(seq: u64, k: usize, count: usize) -> String {
    let mut id = seq.to_string();
    if k < count {
        let _ = write!(id, ":{k}");
    }
    id
}

/// A frame's length given its id and data lengths.
pub const fn frame_len(id: usize, data: usize) -> usize {
    ENVELOPE_BYTES + id + data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_envelope_is_json_with_the_data_verbatim() {
        let f = AgentFrame::new("17", r#"{"a": [1, 2.50]}"#);
        assert_eq!(
            f.bytes().as_str(),
            r#"{"type":"notification","id":"17","channel":"/v2/me/facebooksession","data":{"a": [1, 2.50]}}"#
        );
        assert_eq!(f.len(), frame_len(2, 16));
        let v: serde_json::Value = serde_json::from_str(f.bytes().as_str()).unwrap();
        assert_eq!(v["channel"], CHANNEL);
    }

    #[test]
    fn snapshot_ids_end_plain() {
        assert_eq!(snapshot_id(9, 1, 3), "9:1");
        assert_eq!(snapshot_id(9, 3, 3), "9");
        assert!(snapshot_id(u64::MAX, usize::MAX - 1, usize::MAX).len() <= MAX_ID_BYTES);
    }
}
