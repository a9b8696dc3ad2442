//! The client's address: the TCP peer, or, behind a trusted reverse
//! proxy, the address that proxy forwarded.
//!
//! Owns [`TrustedProxies`] (`CHATGATE_TRUSTED_PROXIES`: addresses and
//! CIDRs, parsed once at start) and the [`ClientAddr`] extractor that
//! every per-address decision (the WebSocket limit, the customer session
//! rate) and log line uses.
//!
//! From a trusted peer only, the client is the right-most address of
//! `X-Forwarded-For` (every instance of the header, in order) that is not
//! itself a trusted proxy; without that header, the same in the `for=`
//! parameters of `Forwarded` (RFC 7239: a token or a quoted string, IPv6
//! in brackets, an optional port). Every proxy appends the address it got
//! the request from, so the right-most untrusted entry is the last one no
//! trusted proxy made up: what a client wrote to the left of it is not
//! read. If every entry is trusted, the left-most is the client. From any
//! other peer both headers are ignored, so sending them lifts no limit.
//!
//! Fail closed: when a trusted proxy's header cannot be read where it
//! must be (an entry right of the client that is no address, `unknown` or
//! an obfuscated name, a `Forwarded` element without `for=`, an unclosed
//! quote), the proxy's own address is the client's. The limits then bite
//! the proxy, where it shows, instead of an address nobody vouched for.
//!
//! The handshake timeout is not here: it runs before any header is read,
//! on the TCP peer (`listen`).
//!
//! The parsing is our own: the grammar needed is small, and the crates
//! that read these headers take the right-most entry or the left-most, not
//! the right-most untrusted over a configured set.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use ipnet::IpNet;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const FORWARDED: HeaderName = HeaderName::from_static("forwarded");

/// A `CHATGATE_TRUSTED_PROXIES` entry that is no address or CIDR.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "CHATGATE_TRUSTED_PROXIES: {entry:?} is neither an IP address nor a CIDR \
     (e.g. 10.0.0.7, 172.28.0.0/24, 2001:db8::/32)"
)]
pub struct ProxyListError {
    pub entry: String,
}

/// The peers whose forwarding headers are believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Arc<[IpNet]>);

impl TrustedProxies {
    /// Parses addresses (a bare one is a /32 or a /128) and CIDRs; blank
    /// entries are skipped, so an empty setting trusts no one.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, ProxyListError> {
        let nets = entries
            .iter()
            .map(|e| e.as_ref().trim())
            .filter(|e| !e.is_empty())
            .map(|e| {
                let net = match e.parse::<IpAddr>() {
                    Ok(ip) => Ok(IpNet::from(ip.to_canonical())),
                    Err(_) => e.parse::<IpNet>(),
                };
                net.map_err(|_| ProxyListError {
                    entry: e.to_owned(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self(nets.into()))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `ip` is a trusted proxy.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client address of a request from `peer` (see the module doc).
    pub fn client_of(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.contains(peer) {
            return peer;
        }
        let chain = if headers.contains_key(X_FORWARDED_FOR) {
            x_forwarded_for(headers)
        } else if headers.contains_key(FORWARDED) {
            forwarded_for(headers)
        } else {
            return peer;
        };
        match chain.and_then(|chain| self.rightmost_untrusted(&chain)) {
            Some(client) => client,
            None => {
                tracing::debug!(%peer, "a trusted proxy's forwarding header is unreadable: its own address counts");
                peer
            }
        }
    }

    /// The right-most entry that is not a trusted proxy (the left-most if
    /// all are), or `None` if an entry read on the way is unreadable.
    fn rightmost_untrusted(&self, chain: &[Option<IpAddr>]) -> Option<IpAddr> {
        let mut left_most = None;
        for entry in chain.iter().rev() {
            let ip = (*entry)?;
            if !self.contains(ip) {
                return Some(ip);
            }
            left_most = Some(ip);
        }
        left_most
    }
}

/// Every `X-Forwarded-For` entry, left (the client's side) to right, each
/// `None` where it is no address; `None` for a value that is not text.
fn x_forwarded_for(headers: &HeaderMap) -> Option<Vec<Option<IpAddr>>> {
    let mut chain = Vec::new();
    for value in headers.get_all(X_FORWARDED_FOR) {
        let value = value.to_str().ok()?;
        chain.extend(value.split(',').map(node));
    }
    Some(chain)
}

/// Every `Forwarded` element's `for=`, left to right, each `None` where
/// it is missing, repeated or no address; `None` for a header that does
/// not split (an unclosed quote, a value that is not text).
fn forwarded_for(headers: &HeaderMap) -> Option<Vec<Option<IpAddr>>> {
    let mut chain = Vec::new();
    for value in headers.get_all(FORWARDED) {
        let value = value.to_str().ok()?;
        for element in split_unquoted(value, ',')? {
            chain.push(for_of(element));
        }
    }
    Some(chain)
}

/// The `for=` of one `Forwarded` element (parameter names are
/// case-insensitive; a parameter may appear once).
fn for_of(element: &str) -> Option<IpAddr> {
    let mut found = None;
    for pair in split_unquoted(element, ';')? {
        let (name, value) = pair.split_once('=')?;
        if name.trim().eq_ignore_ascii_case("for") {
            if found.is_some() {
                return None;
            }
            found = Some(unquote(value.trim())?);
        }
    }
    node(&found?)
}

/// Splits on `sep` outside double-quoted strings (with `\` escapes);
/// `None` if a quote is not closed.
fn split_unquoted(s: &str, sep: char) -> Option<Vec<&str>> {
    let (mut parts, mut start) = (Vec::new(), 0);
    let (mut quoted, mut escaped) = (false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                parts.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    if quoted {
        return None;
    }
    parts.push(&s[start..]);
    Some(parts)
}

/// A parameter value: a token as it is, a quoted string without its
/// quotes and escapes.
fn unquote(value: &str) -> Option<String> {
    let Some(inner) = value.strip_prefix('"') else {
        return Some(value.to_owned());
    };
    let inner = inner.strip_suffix('"')?;
    let (mut out, mut escaped) = (String::with_capacity(inner.len()), false);
    for c in inner.chars() {
        match c {
            '\\' if !escaped => escaped = true,
            c => {
                out.push(c);
                escaped = false;
            }
        }
    }
    Some(out)
}

/// One hop's address: `192.0.2.1`, `192.0.2.1:80`, `2001:db8::1`,
/// `[2001:db8::1]` or `[2001:db8::1]:80` (surrounding blanks ignored).
fn node(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    let ip = if let Some(rest) = s.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        IpAddr::V6(v6.parse::<Ipv6Addr>().ok()?)
    } else if let Ok(ip) = s.parse::<IpAddr>() {
        ip
    } else {
        let (v4, port) = s.split_once(':')?;
        if !is_port(port) {
            return None;
        }
        IpAddr::V4(v4.parse().ok()?)
    };
    Some(ip.to_canonical())
}

fn is_port(s: &str) -> bool {
    s.parse::<u16>().is_ok() && s.bytes().all(|b| b.is_ascii_digit())
}

/// The address a request comes from, as per-address limits and logs see
/// it: the TCP peer (`ConnectInfo`, which the listener inserts), or the
/// client a trusted proxy forwarded. An axum extractor over any state
/// that gives [`TrustedProxies`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// A request without a peer address: it did not come through the
/// listener. Refused rather than counted under no address.
#[derive(Debug)]
pub struct NoPeerAddress;

impl IntoResponse for NoPeerAddress {
    fn into_response(self) -> Response {
        (StatusCode::INTERNAL_SERVER_ERROR, "no peer address").into_response()
    }
}

impl<S> FromRequestParts<S> for ClientAddr
where
    S: Send + Sync,
    TrustedProxies: FromRef<S>,
{
    type Rejection = NoPeerAddress;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let ConnectInfo(peer) = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .ok_or(NoPeerAddress)?;
        let trusted = TrustedProxies::from_ref(state);
        Ok(ClientAddr(trusted.client_of(peer.ip(), &parts.headers)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(*name, HeaderValue::from_str(value).unwrap());
        }
        h
    }

    /// The proxy at 10.0.0.1 and another trusted hop at 10.9.9.9.
    fn trusted() -> TrustedProxies {
        TrustedProxies::parse(&["10.0.0.1", " 10.9.9.0/24 ", "", "fd00::/8"]).unwrap()
    }

    fn client(pairs: &[(&'static str, &str)]) -> IpAddr {
        trusted().client_of(ip("10.0.0.1"), &headers(pairs))
    }

    #[test]
    fn entries_are_addresses_or_cidrs_and_nothing_else() {
        let t = trusted();
        assert!(t.contains(ip("10.0.0.1")));
        assert!(!t.contains(ip("10.0.0.2")), "a bare address is a /32");
        assert!(t.contains(ip("10.9.9.200")));
        assert!(t.contains(ip("fd12::1")));
        assert!(t.contains(ip("::ffff:10.0.0.1")), "mapped IPv4 is IPv4");
        assert!(TrustedProxies::parse::<&str>(&[]).unwrap().is_empty());
        for bad in ["10.0.0.0/33", "nginx", "10.0.0.1:80", "::/129", "10.0.0"] {
            assert_eq!(
                TrustedProxies::parse(&["10.0.0.1", bad]).unwrap_err(),
                ProxyListError { entry: bad.into() }
            );
        }
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_sends() {
        let h = headers(&[
            ("x-forwarded-for", "203.0.113.7"),
            ("forwarded", "for=203.0.113.8"),
        ]);
        assert_eq!(
            trusted().client_of(ip("198.51.100.1"), &h),
            ip("198.51.100.1")
        );
        assert_eq!(
            TrustedProxies::default().client_of(ip("10.0.0.1"), &h),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn the_rightmost_untrusted_entry_is_the_client() {
        assert_eq!(client(&[]), ip("10.0.0.1"), "no header: the peer");
        assert_eq!(
            client(&[("x-forwarded-for", "203.0.113.7")]),
            ip("203.0.113.7")
        );
        assert_eq!(
            client(&[("x-forwarded-for", "6.6.6.6, 203.0.113.7, 10.9.9.9")]),
            ip("203.0.113.7"),
            "a spoofed left-most entry and a trusted hop are passed over"
        );
        assert_eq!(
            client(&[
                ("x-forwarded-for", "6.6.6.6"),
                ("x-forwarded-for", "203.0.113.7,10.9.9.9")
            ]),
            ip("203.0.113.7"),
            "every instance, in order"
        );
        assert_eq!(
            client(&[("x-forwarded-for", "10.9.9.8, 10.9.9.9")]),
            ip("10.9.9.8"),
            "all trusted: the left-most"
        );
        assert_eq!(
            client(&[("x-forwarded-for", "garbage, 203.0.113.7")]),
            ip("203.0.113.7"),
            "what lies left of the client is not read"
        );
        assert_eq!(
            client(&[
                ("x-forwarded-for", "203.0.113.7:4711"),
                ("x-forwarded-for", "[2001:db8::2]:80")
            ]),
            ip("2001:db8::2")
        );
        assert_eq!(
            client(&[("x-forwarded-for", "::ffff:203.0.113.9")]),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn an_unreadable_entry_where_it_must_be_read_makes_the_proxy_the_client() {
        for bad in [
            "203.0.113.7, unknown",
            "203.0.113.7, ",
            "",
            "203.0.113.7, 1.2.3.4:99999",
            "[2001:db8::1",
        ] {
            assert_eq!(
                client(&[("x-forwarded-for", bad)]),
                ip("10.0.0.1"),
                "{bad:?}"
            );
        }
        for bad in [
            "for=203.0.113.7, for=_hidden",
            "for=203.0.113.7, proto=https",
            "for=203.0.113.7;for=203.0.113.8",
            "for=\"203.0.113.7",
            "for=\"[2001:db8::1]:4711",
        ] {
            assert_eq!(client(&[("forwarded", bad)]), ip("10.0.0.1"), "{bad:?}");
        }
    }

    #[test]
    fn forwarded_for_is_read_without_x_forwarded_for() {
        assert_eq!(
            client(&[("forwarded", "for=\"[2001:db8::1]:4711\"")]),
            ip("2001:db8::1")
        );
        assert_eq!(
            client(&[(
                "forwarded",
                "for=6.6.6.6, For=203.0.113.7;proto=https;by=10.0.0.1, for=10.9.9.9"
            )]),
            ip("203.0.113.7")
        );
        assert_eq!(
            client(&[("forwarded", "for=\"_x;y,z\", for=\"203.0.113.7:80\"")]),
            ip("203.0.113.7"),
            "separators inside quotes do not split"
        );
        assert_eq!(
            client(&[
                ("forwarded", "for=203.0.113.1"),
                ("x-forwarded-for", "203.0.113.2")
            ]),
            ip("203.0.113.2"),
            "X-Forwarded-For first"
        );
    }

    #[test]
    fn hops_are_addresses_with_an_optional_port() {
        assert_eq!(node(" 192.0.2.1 "), Some(ip("192.0.2.1")));
        assert_eq!(node("192.0.2.1:80"), Some(ip("192.0.2.1")));
        assert_eq!(node("2001:db8::1"), Some(ip("2001:db8::1")));
        assert_eq!(node("[2001:db8::1]"), Some(ip("2001:db8::1")));
        assert_eq!(node("[2001:db8::1]:443"), Some(ip("2001:db8::1")));
        for bad in [
            "",
            "unknown",
            "_gazonk",
            "192.0.2.1:",
            "192.0.2.1:+80",
            "[2001:db8::1]x",
            "[192.0.2.1]",
        ] {
            assert_eq!(node(bad), None, "{bad:?}");
        }
        assert_eq!(unquote("\"a\\\"b\""), Some("a\"b".to_owned()));
        assert_eq!(unquote("\"open"), None);
    }
}
