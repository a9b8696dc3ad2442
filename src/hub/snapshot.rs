//! Snapshots: what a connection without a resumable `since` gets first.
//!
//! Owns assembling them from per-session cached bytes. Under the hub's
//! lock, a snapshot only takes handles (the session's latest state frame
//! data, its log, its path) and the sequence it covers (the last one
//! committed when the connection was registered); the frames are built
//! afterwards, in the connection's own task, a frame at a time: a
//! supervisor connecting to a gateway with thousands of sessions holds the
//! lock for as long as copying those handles takes, never for building
//! their frames.
//!
//! An agent's (and supervisor's) snapshot is, per session it is in (in
//! session id order), a ParticipantsUpdated with the session's latest
//! state and its message log in NewMessages frames, oldest first, each
//! within [`SNAPSHOT_CHUNK`] (and so within the frame bound). Their ids
//! are `"G:1"`, `"G:2"`, ... and the last one `"G"`, where G is the
//! sequence the snapshot covers. A customer's snapshot is built by `view`.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::log::Log;
use crate::frame::{frame_len, snapshot_id, AgentFrame, MAX_ID_BYTES};
use crate::view::{self, CustomerFrame};

/// Largest snapshot frame the hub builds (within the frame bound): large
/// enough to take a long log in a few frames, small enough that a
/// reconnect storm does not hold a frame bound's worth of bytes per
/// connection at once.
pub const SNAPSHOT_CHUNK: usize = 64 << 10;

/// One session's part of a snapshot, as handles.
pub struct SessionSnap {
    pub id: Arc<str>,
    /// The latest state as a ParticipantsUpdated's data.
    pub state: Option<Utf8Bytes>,
    pub log: Arc<Log>,
    pub path_json: Arc<str>,
    pub uri: Option<Arc<str>>,
}

/// An agent's or supervisor's snapshot, built a frame at a time.
pub struct AgentSnapshot {
    /// The sequence it covers.
    cut: u64,
    sessions: VecDeque<SessionSnap>,
    /// Data of the current session not yet sent.
    pending: VecDeque<String>,
    /// The next frame's data, kept back to learn whether it is the last.
    ahead: Option<String>,
    sent: usize,
    chunk: usize,
}

impl AgentSnapshot {
    pub fn new(cut: u64, mut sessions: Vec<SessionSnap>, max_frame: usize) -> Self {
        sessions.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        Self {
            cut,
            sessions: sessions.into(),
            pending: VecDeque::new(),
            ahead: None,
            sent: 0,
            chunk: SNAPSHOT_CHUNK.min(max_frame),
        }
    }

    fn next_data(&mut self) -> Option<String> {
        loop {
            if let Some(data) = self.pending.pop_front() {
                return Some(data);
            }
            let session = self.sessions.pop_front()?;
            self.pending = session_data(&session, self.cut, self.chunk).into();
        }
    }
}

impl Iterator for AgentSnapshot {
    type Item = AgentFrame;

    fn next(&mut self) -> Option<AgentFrame> {
        let data = match self.ahead.take() {
            Some(d) => d,
            None => self.next_data()?,
        };
        self.ahead = self.next_data();
        self.sent += 1;
        let count = if self.ahead.is_some() {
            usize::MAX
        } else {
            self.sent
        };
        Some(AgentFrame::new(
            &snapshot_id(self.cut, self.sent, count),
            &data,
        ))
    }
}

/// The data of a session's snapshot frames: its state, then its log up to
/// `cut` in NewMessages of at most `chunk` bytes a frame.
fn session_data(s: &SessionSnap, cut: u64, chunk: usize) -> Vec<String> {
    let mut out: Vec<String> = s.state.iter().map(|st| st.as_str().to_owned()).collect();
    let entries = s.log.up_to(cut);
    let uri = s.uri.as_deref();
    let fixed = frame_len(MAX_ID_BYTES, messages_data_len(&s.path_json, uri));
    let mut group: Vec<&str> = Vec::new();
    let mut size = fixed;
    for e in &entries {
        let add = e.agent.len() + 1;
        if !group.is_empty() && size + add > chunk {
            out.push(messages_data(&s.path_json, uri, &group));
            group.clear();
            size = fixed;
        }
        group.push(e.agent.as_str());
        size += add;
    }
    if !group.is_empty() {
        out.push(messages_data(&s.path_json, uri, &group));
    }
    out
}

const HEAD: &str =
    r#"{"notificationType":"NewMessages","messageType":"MessageLogUpdated","facebooksessionPath":"#;
const URI: &str = r#","facebooksessionUri":"#;
const LIST: &str = r#","messages":["#;
const TAIL: &str = "]}";

fn messages_data_len(path_json: &str, uri: Option<&str>) -> usize {
    HEAD.len() + path_json.len() + uri.map_or(0, |u| URI.len() + u.len()) + LIST.len() + TAIL.len()
}

fn messages_data(path_json: &str, uri: Option<&str>, messages: &[&str]) -> String {
    let size =
        messages_data_len(path_json, uri) + messages.iter().map(|m| m.len() + 1).sum::<usize>();
    let mut out = String::with_capacity(size);
    out.push_str(HEAD);
    out.push_str(path_json);
    if let Some(uri) = uri {
        out.push_str(URI);
        out.push_str(uri);
    }
    out.push_str(LIST);
    for (i, m) in messages.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(m);
    }
    out.push_str(TAIL);
    out
}

/// A customer's snapshot, as handles.
pub struct CustomerSnap {
    /// The customer's current id: every snapshot frame carries it.
    pub id: u64,
    pub cut: u64,
    pub state: Option<Utf8Bytes>,
    pub log: Arc<Log>,
    pub path_json: Arc<str>,
}

impl CustomerSnap {
    /// Its frames (a customer's snapshot is one session: built at once).
    pub fn frames(&self, max_frame: usize) -> Vec<CustomerFrame> {
        if self.id == 0 {
            return Vec::new();
        }
        let entries = self.log.up_to(self.cut);
        let lines = entries.iter().filter_map(|e| e.customer.as_ref());
        view::snapshot(
            self.id,
            &self.path_json,
            self.state.as_ref(),
            lines,
            SNAPSHOT_CHUNK.min(max_frame),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Frame;
    use crate::session::LogEntry;
    use serde_json::Value;

    fn snap(id: &str, lines: usize, text: usize) -> SessionSnap {
        let log = Log::default();
        let entries = (1..=lines as u64)
            .map(|i| LogEntry {
                seq: i,
                agent: Utf8Bytes::from(format!(
                    r#"{{"index":{i},"type":"Text","visibility":"All","text":"{}"}}"#,
                    "z".repeat(text)
                )),
                customer: None,
            })
            .collect();
        log.append(entries, usize::MAX);
        SessionSnap {
            id: Arc::from(id),
            state: Some(Utf8Bytes::from(format!(
                r#"{{"facebooksession":{{"id":"{id}"}}}}"#
            ))),
            log: Arc::new(log),
            path_json: view::session_path_json(id).into(),
            uri: Some(Arc::from(r#""http://u""#)),
        }
    }

    #[test]
    fn a_long_log_comes_in_frames_within_the_chunk_and_ids_end_plain() {
        let frames: Vec<AgentFrame> =
            AgentSnapshot::new(500, vec![snap("b", 200, 1000), snap("a", 3, 10)], 512 << 10)
                .collect();
        let parsed: Vec<Value> = frames
            .iter()
            .map(|f| serde_json::from_str(f.bytes().as_str()).unwrap())
            .collect();
        assert!(frames.iter().all(|f| f.len() <= SNAPSHOT_CHUNK));
        let ids: Vec<&str> = parsed.iter().map(|v| v["id"].as_str().unwrap()).collect();
        assert_eq!(ids.last(), Some(&"500"));
        assert!(ids[..ids.len() - 1].iter().all(|id| id.starts_with("500:")));
        assert_eq!(
            parsed[0]["data"]["facebooksession"]["id"], "a",
            "sessions in id order"
        );
        let b_lines: Vec<u64> = parsed
            .iter()
            .filter(|v| v["data"]["facebooksessionPath"] == "/facebooksessions/b")
            .flat_map(|v| v["data"]["messages"].as_array().unwrap().clone())
            .map(|m| m["index"].as_u64().unwrap())
            .collect();
        assert_eq!(
            b_lines,
            (1..=200).collect::<Vec<_>>(),
            "every line once, in order"
        );
        assert!(frames.len() > 4);
    }

    #[test]
    fn the_log_is_cut_at_the_sequence_covered() {
        let frames: Vec<AgentFrame> =
            AgentSnapshot::new(2, vec![snap("a", 5, 1)], 512 << 10).collect();
        let last: Value = serde_json::from_str(frames.last().unwrap().bytes().as_str()).unwrap();
        assert_eq!(last["data"]["messages"].as_array().unwrap().len(), 2);
        assert_eq!(AgentSnapshot::new(9, Vec::new(), 1024).count(), 0);
    }
}
