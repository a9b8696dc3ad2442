//! The demo web pages: the agent desktop at `/` and the customer widget at
//! `/widget`, plus their scripts and style sheet under `/web/`.
//!
//! The files live in the top-level `web/` folder and are compiled into the
//! binary, so a deployment is one file and nothing needs a build step. They
//! are plain HTML, CSS and JavaScript modules written against the public
//! API only (the REST operations and `/ws`), which makes them a reference
//! for client writers too.
//!
//! Every response says how it may be used: a content security policy that
//! allows only this origin (scripts, styles, fetches and WebSockets),
//! `nosniff`, no referrer, and no caching, so a new binary is never mixed
//! with stale scripts. The desktop refuses to be framed; the widget is made
//! to be embedded in a shop's page, so it may be.

use axum::extract::Path;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const SVG: &str = "image/svg+xml";

const DESKTOP: Asset = Asset {
    name: "desktop.html",
    content_type: HTML,
    body: include_str!("../web/desktop.html"),
};

const WIDGET: Asset = Asset {
    name: "widget.html",
    content_type: HTML,
    body: include_str!("../web/widget.html"),
};

/// What `/web/{name}` serves.
const ASSETS: &[Asset] = &[
    Asset {
        name: "chatgate.js",
        content_type: JS,
        body: include_str!("../web/chatgate.js"),
    },
    Asset {
        name: "desktop.js",
        content_type: JS,
        body: include_str!("../web/desktop.js"),
    },
    Asset {
        name: "widget.js",
        content_type: JS,
        body: include_str!("../web/widget.js"),
    },
    Asset {
        name: "style.css",
        content_type: CSS,
        body: include_str!("../web/style.css"),
    },
    Asset {
        name: "icon.svg",
        content_type: SVG,
        body: include_str!("../web/icon.svg"),
    },
];

/// `'self'` covers same-origin `ws:`/`wss:` in current browsers; the
/// explicit schemes keep older ones working.
const CSP_COMMON: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self' ws: wss:; base-uri 'none'; form-action 'none'";

/// The routes of the pages, for `http::router` to merge.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { page(&DESKTOP, "'none'") }))
        .route("/widget", get(|| async { page(&WIDGET, "*") }))
        .route("/web/{name}", get(asset))
}

fn page(asset: &Asset, frame_ancestors: &str) -> Response {
    let csp = format!("{CSP_COMMON}; frame-ancestors {frame_ancestors}");
    let mut response = respond(asset);
    if let Ok(value) = HeaderValue::from_str(&csp) {
        response
            .headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, value);
    }
    response
}

async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|a| a.name == name) {
        Some(a) => respond(a),
        None => (StatusCode::NOT_FOUND, "no such file").into_response(),
    }
}

fn respond(asset: &Asset) -> Response {
    let headers: [(HeaderName, &'static str); 4] = [
        (header::CONTENT_TYPE, asset.content_type),
        (header::CACHE_CONTROL, "no-cache"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
    ];
    (headers, asset.body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_a_page_loads_is_served() {
        for page in [&DESKTOP, &WIDGET] {
            for part in page.body.split("\"/web/").skip(1) {
                let name = part.split('"').next().unwrap_or_default();
                assert!(
                    ASSETS.iter().any(|a| a.name == name),
                    "{} loads /web/{name}, which is not served",
                    page.name
                );
            }
        }
    }

    #[test]
    fn modules_import_only_served_files() {
        for a in ASSETS.iter().filter(|a| a.content_type == JS) {
            for part in a.body.split("from \"./").skip(1) {
                let name = part.split('"').next().unwrap_or_default();
                assert!(
                    ASSETS.iter().any(|x| x.name == name),
                    "{} imports ./{name}, which is not served",
                    a.name
                );
            }
        }
    }
}
