//! chatgate's tools: the load generator (`chatgate-load`) and the bare
//! reference server it is compared with (`chatgate-bare`). A crate of
//! their own, so that neither they nor their dependencies (an HTTP client,
//! latency histograms, `/proc` and rlimit access) are in the product's
//! binary or image. They use chatgate's library only for its tokens (and
//! the bare server for its socket buffer sizes).
//!
//! The load generator drives a running gateway (or `chatgate-bare`) over
//! real sockets, like its users. Owns the two scenarios and their reports:
//! [`idle`] (hold N authenticated connections, measure the server's memory
//! per connection) and [`fanout`] (parties of S sessions, M
//! notifications/s, measure delivery, latency, loss, server CPU per
//! frame). Everything it does is bounded in count and time; it only talks
//! to the address it is given. It connects each party once and never
//! resumes (a dropped connection is counted as disconnected), so it sends
//! no `since`.
//!
//! - [`client`]: WebSocket clients, source addresses, the open-file limit.
//! - [`idle`], [`fanout`]: the scenarios.
//! - [`procstat`]: the server's memory and CPU time from `/proc`.
//! - [`report`]: the table and JSON line of each run.

pub mod client;
pub mod fanout;
pub mod idle;
pub mod procstat;
pub mod report;

use std::net::SocketAddr;

use clap::{Args, Subcommand, ValueEnum};

/// The load generator's subcommands (`chatgate-load idle|fanout`).
#[derive(Debug, Clone, Subcommand)]
pub enum LoadCommand {
    /// Holds N idle authenticated connections; reports server memory per connection.
    Idle(idle::IdleArgs),
    /// Publishes notifications to the parties of S sessions; reports delivery,
    /// latency, loss and server CPU per frame.
    Fanout(fanout::FanoutArgs),
}

/// What kind of server is under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Target {
    /// chatgate: JWT on /ws, notifications through its upstream.
    Chatgate,
    /// The bare reference (`chatgate-bare`): rooms, no auth, frames verbatim.
    Bare,
}

impl Target {
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Chatgate => "chatgate",
            Target::Bare => "bare",
        }
    }
}

/// Where the server is and how to reach it.
#[derive(Debug, Clone, Args)]
pub struct TargetArgs {
    /// Address of the server under test.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,

    /// The server's HS256 secret (its CHATGATE_JWT_SECRET): tokens are minted from it.
    #[arg(long, env = "CHATGATE_JWT_SECRET", hide_env_values = true)]
    pub secret: Option<String>,

    /// PID of the server process, to read its memory and CPU from /proc.
    #[arg(long)]
    pub server_pid: Option<u32>,

    /// The kind of server at --addr.
    #[arg(long, value_enum, default_value = "chatgate")]
    pub target: Target,

    /// Also print one JSON line per run.
    #[arg(long)]
    pub json: bool,
}

impl TargetArgs {
    /// The token minter, required for chatgate (not for the bare server).
    pub fn minter(&self) -> Result<Option<chatgate::auth::Authenticator>, String> {
        match (self.target, &self.secret) {
            (Target::Bare, _) => Ok(None),
            (Target::Chatgate, Some(secret)) => {
                chatgate::auth::Authenticator::new(secret.as_bytes(), None)
                    .map(Some)
                    .map_err(|e| e.to_string())
            }
            (Target::Chatgate, None) => Err(
                "a secret is needed to mint tokens: --secret or CHATGATE_JWT_SECRET (the server's)"
                    .into(),
            ),
        }
    }
}

/// Runs one subcommand to completion, printing its report.
pub async fn run(command: LoadCommand) -> Result<(), String> {
    match command {
        LoadCommand::Idle(args) => idle::main(args).await,
        LoadCommand::Fanout(args) => fanout::main(args).await,
    }
}
