//! `chatgate health`: asks a chatgate on this host for `/healthz` (or
//! `/readyz`) and exits 0 only on HTTP 200.
//!
//! The container's `HEALTHCHECK` runs it, so the image needs no curl or
//! shell. It reads the same `CHATGATE_LISTEN` as the server, so a changed
//! port needs no change to the health check. One HTTP/1.1 GET on hyper's
//! own client connection (hyper serves chatgate already): the server is an
//! IP address on this host, so there is nothing to resolve, pool, redirect
//! or encrypt, and no proxy setting of the environment can come between.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use clap::Args;
use http::{header, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

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

/// Why the server is not healthy; each names the URL asked.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error("{url}: {source}")]
    Connect { url: String, source: std::io::Error },
    #[error("{url}: {source}")]
    Request { url: String, source: http::Error },
    #[error("{url}: {source}")]
    Http { url: String, source: hyper::Error },
    #[error("{url}: no answer within {secs} s")]
    Timeout { url: String, secs: u64 },
    #[error("{url}: HTTP {status}")]
    Status { url: String, status: u16 },
}

/// Where to ask: the address (loopback for a wildcard) and the path.
fn target(args: &HealthArgs) -> (SocketAddr, &'static str) {
    let ip = match args.listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let path = if args.ready { "/readyz" } else { "/healthz" };
    (SocketAddr::new(ip, args.listen.port()), path)
}

/// The URL to ask.
pub fn url(args: &HealthArgs) -> String {
    let (addr, path) = target(args);
    format!("http://{addr}{path}")
}

/// `Ok` when the server answers 200 within the timeout; `Err` says what
/// went wrong.
pub async fn check(args: &HealthArgs) -> Result<(), HealthError> {
    let (addr, path) = target(args);
    let url = url(args);
    let secs = args.timeout_secs.max(1);
    let status = tokio::time::timeout(Duration::from_secs(secs), get(addr, path, &url))
        .await
        .map_err(|_| HealthError::Timeout {
            url: url.clone(),
            secs,
        })??;
    match status {
        200 => Ok(()),
        status => Err(HealthError::Status { url, status }),
    }
}

/// One GET on a fresh connection; the status of the answer.
async fn get(addr: SocketAddr, path: &str, url: &str) -> Result<u16, HealthError> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|source| HealthError::Connect {
            url: url.to_owned(),
            source,
        })?;
    let http = |source| HealthError::Http {
        url: url.to_owned(),
        source,
    };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(http)?;
    // Drives the connection; it ends once `sender` is dropped.
    tokio::spawn(connection);
    let request = Request::get(path)
        .header(header::HOST, addr.to_string())
        .body(String::new())
        .map_err(|source| HealthError::Request {
            url: url.to_owned(),
            source,
        })?;
    let response = sender.send_request(request).await.map_err(http)?;
    Ok(response.status().as_u16())
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
