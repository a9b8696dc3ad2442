//! `chatgate-load idle`: holds N authenticated connections, agents and
//! customers of many sessions, and reports the server's resident memory
//! per connection once every one of them is welcomed.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clap::Args;
use futures::{stream, StreamExt};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::client::{self, Ws};
use crate::procstat::{self, ProcSample};
use crate::report::{self, kib, mib, opt};
use crate::{Target, TargetArgs};
use chatgate::auth::{Authenticator, Role};

#[derive(Debug, Clone, Args)]
pub struct IdleArgs {
    #[command(flatten)]
    pub target: TargetArgs,

    /// Connections to open: half agents, half customers, one session per pair.
    #[arg(long)]
    pub conns: usize,

    /// Handshakes in flight at once.
    #[arg(long, default_value_t = 200)]
    pub concurrency: usize,

    /// Seconds to hold every connection idle before reading the server's memory.
    #[arg(long, default_value_t = 5)]
    pub hold: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct IdleReport {
    pub scenario: &'static str,
    pub target: &'static str,
    pub conns: usize,
    pub welcomed: usize,
    pub failed: usize,
    pub first_error: Option<String>,
    pub connect_secs: f64,
    pub server_rss_before: Option<u64>,
    pub server_rss_held: Option<u64>,
    /// (held - before) / welcomed.
    pub server_bytes_per_conn: Option<f64>,
    pub loadgen_rss: u64,
}

/// The path and token of the `i`-th idle connection: even ones are agents
/// `idle-a{k}`, odd ones the customer of session `idle-s{k}`.
fn party(
    i: usize,
    run: u32,
    target: Target,
    minter: Option<&Authenticator>,
) -> (String, Option<String>) {
    let k = i / 2;
    let session = format!("idle{run}-s{k}");
    match target {
        Target::Bare => (format!("/ws?room={session}"), None),
        Target::Chatgate => {
            let token = minter.map(|m| {
                if i.is_multiple_of(2) {
                    m.mint(Role::Agent, &format!("idle{run}-a{k}"), None, 3600)
                } else {
                    m.mint(
                        Role::Customer,
                        &format!("idle{run}-c{k}"),
                        Some(&session),
                        3600,
                    )
                }
            });
            ("/ws".into(), token)
        }
    }
}

/// Runs the scenario; the connections are closed before it returns.
pub async fn run(args: &IdleArgs) -> Result<IdleReport, String> {
    client::check_fd_budget(args.conns)?;
    let minter = args.target.minter()?;
    let run_id = rand::random::<u32>() % 1_000_000;
    let server = args.target.addr;
    let before = procstat::sample_pid(args.target.server_pid)?;
    let started = Instant::now();
    let results: Vec<Result<Ws, String>> = stream::iter(0..args.conns)
        .map(|i| {
            let (path, token) = party(i, run_id, args.target.target, minter.as_ref());
            async move {
                client::connect(
                    server,
                    client::source_ip(server, i),
                    &path,
                    token.as_deref(),
                )
                .await
            }
        })
        .buffer_unordered(args.concurrency.max(1))
        .collect()
        .await;
    let connect_secs = started.elapsed().as_secs_f64();
    let mut first_error = None;
    let mut sockets = Vec::with_capacity(results.len());
    for r in results {
        match r {
            Ok(ws) => sockets.push(ws),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    let welcomed = sockets.len();
    let stop = CancellationToken::new();
    let readers = hold(sockets, stop.clone());
    tokio::time::sleep(Duration::from_secs(args.hold)).await;
    let held = procstat::sample_pid(args.target.server_pid)?;
    let loadgen = procstat::sample("self")?;
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(30), readers).await;
    Ok(IdleReport {
        scenario: "idle",
        target: args.target.target.as_str(),
        conns: args.conns,
        welcomed,
        failed: args.conns - welcomed,
        first_error,
        connect_secs,
        server_rss_before: before.map(|s| s.rss_bytes),
        server_rss_held: held.map(|s| s.rss_bytes),
        server_bytes_per_conn: per_conn(before, held, welcomed),
        loadgen_rss: loadgen.rss_bytes,
    })
}

fn per_conn(before: Option<ProcSample>, held: Option<ProcSample>, conns: usize) -> Option<f64> {
    let (b, h) = (before?, held?);
    (conns > 0).then(|| (h.rss_bytes as f64 - b.rss_bytes as f64) / conns as f64)
}

/// Keeps every socket read (answering pings, discarding heartbeats) until
/// `stop`; the returned future ends when all readers have.
fn hold(sockets: Vec<Ws>, stop: CancellationToken) -> impl std::future::Future<Output = ()> {
    let tasks: Vec<_> = sockets
        .into_iter()
        .map(|mut ws| {
            let stop = stop.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        () = stop.cancelled() => break,
                        msg = ws.next() => if !matches!(msg, Some(Ok(_))) { break },
                    }
                }
                let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
            })
        })
        .collect();
    async move {
        for t in tasks {
            let _ = t.await;
        }
    }
}

pub async fn main(args: IdleArgs) -> Result<(), String> {
    let r = run(&args).await?;
    let addr: SocketAddr = args.target.addr;
    report::print_table(
        &format!("idle: {} connections to {} at {addr}", r.conns, r.target),
        &[
            ("welcomed", r.welcomed.to_string()),
            ("failed", r.failed.to_string()),
            ("first error", opt(r.first_error.clone())),
            ("connect time", format!("{:.2} s", r.connect_secs)),
            ("server RSS before", opt(r.server_rss_before.map(mib))),
            ("server RSS held", opt(r.server_rss_held.map(mib))),
            (
                "server memory / conn",
                opt(r.server_bytes_per_conn.map(kib)),
            ),
            ("load generator RSS", mib(r.loadgen_rss)),
        ],
    );
    if args.target.json {
        report::print_json(&r);
    }
    if r.failed > 0 {
        return Err(format!("{} connections failed", r.failed));
    }
    Ok(())
}
