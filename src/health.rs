//! `chatgate health`: asks a chatgate on this host for `/healthz` (or
//! `/readyz`) and exits 0 only on HTTP 200.
//!
//! The container's `HEALTHCHECK` runs it, so the image needs no curl or
//! shell. It reads the same `CHATGATE_LISTEN` as the server, so a changed
//! port needs no change to the health check.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use clap::Args;

#[derive(Debug, Clone, Args)]
pub struct HealthArgs {
    /// The server's listen address (a wildcard address is asked on
    /// loopback).
    #[arg(long, env = "CHATGATE_LISTEN", default_value = crate::config::defaults::LISTEN)]
    pub listen: SocketAddr,

    /// Ask /readyz (the bus is usable) instead of /healthz (the process
    /// serves).
    #[arg(long)]
    pub ready: bool,

    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 3)]
    pub timeout_secs: u64,
}

/// The URL to ask.
pub fn url(args: &HealthArgs) -> String {
    let ip = match args.listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let path = if args.ready { "/readyz" } else { "/healthz" };
    format!("http://{}{path}", SocketAddr::new(ip, args.listen.port()))
}

/// Why the health check failed.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error("cannot build an HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    #[error("{url}: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url}: HTTP {status}")]
    Status { url: String, status: u16 },
}

/// `Ok` when the server answers 200; `Err` says what went wrong.
pub async fn check(args: &HealthArgs) -> Result<(), HealthError> {
    let url = url(args);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(args.timeout_secs.max(1)))
        .build()
        .map_err(HealthError::Client)?;
    let resp = match client.get(&url).send().await {
        Ok(resp) => resp,
        Err(source) => return Err(HealthError::Unreachable { url, source }),
    };
    match resp.status().as_u16() {
        200 => Ok(()),
        status => Err(HealthError::Status { url, status }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(listen: &str, ready: bool) -> HealthArgs {
        HealthArgs {
            listen: listen.parse().unwrap(),
            ready,
            timeout_secs: 1,
        }
    }

    #[test]
    fn wildcard_addresses_are_asked_on_loopback() {
        assert_eq!(
            url(&args("0.0.0.0:8080", false)),
            "http://127.0.0.1:8080/healthz"
        );
        assert_eq!(url(&args("[::]:9000", true)), "http://[::1]:9000/readyz");
        assert_eq!(
            url(&args("10.1.2.3:80", false)),
            "http://10.1.2.3:80/healthz"
        );
    }
}
