//! The directory of agents and queues the engine routes to.
//!
//! Owns loading it (a TOML file, `CHATGATE_DIRECTORY`, or the built-in demo
//! directory), validating it (unique ids, queues naming known agents), the
//! URIs and paths of users and queues under the server's base URL, and
//! resolving a `targetUri` / `targetPath` to a user or a queue. It does not
//! know who is busy: routing by load is `engine::routing`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One agent: the userId of `/users/{id}` and the nickname participants show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Agent {
    pub id: String,
    pub nickname: String,
}

/// One queue and the agents it routes to, in routing (tie-break) order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Queue {
    pub id: String,
    pub name: String,
    pub agents: Vec<String>,
}

/// The file format (SPEC section 5).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DirectoryFile {
    #[serde(default)]
    agents: Vec<Agent>,
    #[serde(default)]
    queues: Vec<Queue>,
}

/// A directory file chatgate cannot load (it refuses to start).
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("CHATGATE_DIRECTORY {}: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("CHATGATE_DIRECTORY {}: {source}", path.display())]
    Invalid {
        path: PathBuf,
        #[source]
        source: InvalidDirectory,
    },
}

/// What is wrong with a directory's text.
#[derive(Debug, thiserror::Error)]
pub enum InvalidDirectory {
    #[error("{0}")]
    Syntax(#[from] toml::de::Error),
    #[error("the directory has no agents")]
    NoAgents,
    #[error("agent {0} has an empty nickname")]
    EmptyNickname(String),
    #[error("agent {0} is listed twice")]
    DuplicateAgent(String),
    #[error("queue {0} is listed twice")]
    DuplicateQueue(String),
    #[error("queue {0} has no agents")]
    EmptyQueue(String),
    #[error("queue {queue} names unknown agent {agent}")]
    UnknownAgent { queue: String, agent: String },
    #[error("{what} id {id:?} must be 1 to 128 letters, digits, '-' or '_'")]
    BadId { what: &'static str, id: String },
}

/// A `targetUri` or `targetPath` that names no one (a bad request).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UnknownTarget {
    #[error("{0} names no known user")]
    User(String),
    #[error("{0} names no known queue")]
    Queue(String),
    #[error("{0} is neither a user (/users/{{id}}) nor a queue (/queues/{{id}})")]
    Neither(String),
}

/// What a `targetUri` or `targetPath` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    User(&'a Agent),
    Queue(&'a Queue),
}

/// Agents and queues, in directory order, with the base URL of their URIs.
#[derive(Debug, Clone)]
pub struct Directory {
    agents: Vec<Agent>,
    queues: Vec<Queue>,
    base: String,
}

/// The seed's agents first, then two more for a second queue.
const DEMO: &str = r#"
[[agents]]
id = "5e101708f14442c7ab79814bb4f799b2"
nickname = "TestName"

[[agents]]
id = "e2c90c960d3d40c79684818983ceb314"
nickname = "Agent2"

[[agents]]
id = "3f9c1b7e2a6d4c58b0e14d2a9c7f6e31"
nickname = "Agent3"

[[agents]]
id = "8a2e6c4f1d3b4e9a9c5f7b2d1e6a4c80"
nickname = "Agent4"

[[queues]]
id = "41cc5016-2d18-4a91-93ec-b43748948608"
name = "SocialMediaAgentGroup"
agents = ["5e101708f14442c7ab79814bb4f799b2", "e2c90c960d3d40c79684818983ceb314"]

[[queues]]
id = "9b3d2f6e-4a1c-4e8b-b7d5-2c6f1a8e3d90"
name = "EscalationAgentGroup"
agents = ["3f9c1b7e2a6d4c58b0e14d2a9c7f6e31", "8a2e6c4f1d3b4e9a9c5f7b2d1e6a4c80"]
"#;

impl Directory {
    /// The built-in demo directory.
    pub fn demo(base: &str) -> Self {
        // The demo text is a constant validated by a unit test.
        Self::parse(DEMO, base).unwrap_or_else(|_| Self {
            agents: Vec::new(),
            queues: Vec::new(),
            base: base.to_owned(),
        })
    }

    /// The directory of `path`, or the demo one without a path.
    pub fn load(path: Option<&Path>, base: &str) -> Result<Self, DirectoryError> {
        let Some(path) = path else {
            return Ok(Self::demo(base));
        };
        let text = std::fs::read_to_string(path).map_err(|source| DirectoryError::Unreadable {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, base).map_err(|source| DirectoryError::Invalid {
            path: path.to_owned(),
            source,
        })
    }

    /// Parses and validates a directory file.
    pub fn parse(text: &str, base: &str) -> Result<Self, InvalidDirectory> {
        let file: DirectoryFile = toml::from_str(text)?;
        let dir = Self {
            agents: file.agents,
            queues: file.queues,
            base: base.trim_end_matches('/').to_owned(),
        };
        dir.validate()?;
        Ok(dir)
    }

    fn validate(&self) -> Result<(), InvalidDirectory> {
        if self.agents.is_empty() {
            return Err(InvalidDirectory::NoAgents);
        }
        let mut ids = HashSet::new();
        for a in &self.agents {
            check_id("agent", &a.id)?;
            if a.nickname.trim().is_empty() {
                return Err(InvalidDirectory::EmptyNickname(a.id.clone()));
            }
            if !ids.insert(a.id.as_str()) {
                return Err(InvalidDirectory::DuplicateAgent(a.id.clone()));
            }
        }
        let mut queue_ids = HashSet::new();
        for q in &self.queues {
            check_id("queue", &q.id)?;
            if !queue_ids.insert(q.id.as_str()) {
                return Err(InvalidDirectory::DuplicateQueue(q.id.clone()));
            }
            if q.agents.is_empty() {
                return Err(InvalidDirectory::EmptyQueue(q.name.clone()));
            }
            if let Some(unknown) = q.agents.iter().find(|a| !ids.contains(a.as_str())) {
                return Err(InvalidDirectory::UnknownAgent {
                    queue: q.name.clone(),
                    agent: unknown.clone(),
                });
            }
        }
        Ok(())
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn agents(&self) -> &[Agent] {
        &self.agents
    }

    pub fn queues(&self) -> &[Queue] {
        &self.queues
    }

    pub fn agent(&self, id: &str) -> Option<&Agent> {
        self.agents.iter().find(|a| a.id == id)
    }

    /// A queue by id or by name (the widget may send either).
    pub fn queue(&self, id_or_name: &str) -> Option<&Queue> {
        self.queues
            .iter()
            .find(|q| q.id == id_or_name)
            .or_else(|| self.queues.iter().find(|q| q.name == id_or_name))
    }

    /// The position of an agent in directory order (routing tie-break).
    pub fn rank(&self, id: &str) -> usize {
        self.agents
            .iter()
            .position(|a| a.id == id)
            .unwrap_or(usize::MAX)
    }

    pub fn user_uri(&self, id: &str) -> String {
        format!("{}/api/v2/users/{id}", self.base)
    }

    pub fn queue_uri(&self, id: &str) -> String {
        format!("{}/api/v2/queues/{id}", self.base)
    }

    pub fn session_uri(&self, id: &str) -> String {
        format!("{}/api/v2/facebooksessions/{id}", self.base)
    }

    /// Resolves a `targetPath` (`/users/{id}`, `/queues/{id}`) or a
    /// `targetUri` (any URI whose path ends so, e.g.
    /// `<base>/api/v2/users/{id}`). The host of a URI is not compared: a
    /// client may reach the server by another name than its base URL.
    pub fn resolve(&self, target: &str) -> Result<Target<'_>, UnknownTarget> {
        let path = strip_scheme_and_host(target.trim());
        let mut segments = path.trim_end_matches('/').rsplit('/');
        let (id, kind) = (segments.next(), segments.next());
        match (kind, id) {
            (Some("users"), Some(id)) if !id.is_empty() => self
                .agent(id)
                .map(Target::User)
                .ok_or_else(|| UnknownTarget::User(target.to_owned())),
            (Some("queues"), Some(id)) if !id.is_empty() => self
                .queues
                .iter()
                .find(|q| q.id == id)
                .map(Target::Queue)
                .ok_or_else(|| UnknownTarget::Queue(target.to_owned())),
            _ => Err(UnknownTarget::Neither(target.to_owned())),
        }
    }
}

fn check_id(what: &'static str, id: &str) -> Result<(), InvalidDirectory> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(InvalidDirectory::BadId {
            what,
            id: id.to_owned(),
        })
    }
}

/// `http://host:port/api/v2/users/x` -> `/api/v2/users/x`; a path is kept.
fn strip_scheme_and_host(s: &str) -> &str {
    match s.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("", |i| &rest[i..]),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "http://127.0.0.1:8080";

    #[test]
    fn demo_directory_is_valid_and_keeps_the_seed_first() {
        let d = Directory::parse(DEMO, BASE).unwrap();
        assert_eq!(d.agents()[0].nickname, "TestName");
        assert_eq!(d.agents()[1].id, "e2c90c960d3d40c79684818983ceb314");
        let q = d.queue("SocialMediaAgentGroup").unwrap();
        assert_eq!(q.id, "41cc5016-2d18-4a91-93ec-b43748948608");
        assert_eq!(Directory::demo(BASE).agents().len(), 4);
    }

    #[test]
    fn resolves_paths_and_uris_of_users_and_queues() {
        let d = Directory::demo(BASE);
        assert!(matches!(
            d.resolve("/users/e2c90c960d3d40c79684818983ceb314"),
            Ok(Target::User(a)) if a.nickname == "Agent2"
        ));
        assert!(matches!(
            d.resolve("http://localhost:9999/api/v2/users/5e101708f14442c7ab79814bb4f799b2"),
            Ok(Target::User(a)) if a.nickname == "TestName"
        ));
        assert!(matches!(
            d.resolve(&d.queue_uri("41cc5016-2d18-4a91-93ec-b43748948608")),
            Ok(Target::Queue(q)) if q.name == "SocialMediaAgentGroup"
        ));
        assert!(d.resolve("/users/nobody").is_err());
        assert!(d
            .resolve("http://localhost:8080/api/v2/contacts/429a55994ef64991a77acb77c1cf9041")
            .is_err());
        assert!(d.resolve("").is_err());
        assert_eq!(
            d.user_uri("x"),
            "http://127.0.0.1:8080/api/v2/users/x".to_string()
        );
    }

    #[test]
    fn bad_files_are_refused_with_a_reason() {
        let dup = "[[agents]]\nid=\"a\"\nnickname=\"A\"\n[[agents]]\nid=\"a\"\nnickname=\"B\"\n";
        assert!(Directory::parse(dup, BASE)
            .unwrap_err()
            .to_string()
            .contains("twice"));
        let unknown = "[[agents]]\nid=\"a\"\nnickname=\"A\"\n[[queues]]\nid=\"q\"\nname=\"Q\"\nagents=[\"b\"]\n";
        assert!(Directory::parse(unknown, BASE)
            .unwrap_err()
            .to_string()
            .contains("unknown agent b"));
        assert!(Directory::parse("", BASE)
            .unwrap_err()
            .to_string()
            .contains("no agents"));
        assert!(Directory::parse("[[agents]]\nid=\"a/b\"\nnickname=\"A\"\n", BASE).is_err());
        assert!(Directory::parse("[[agents]]\nid=\"a\"\nnick=\"A\"\n", BASE).is_err());
    }
}
