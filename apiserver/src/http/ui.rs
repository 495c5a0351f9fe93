//! `ui` serves the web page for people: `/` (the page) and `/ui/{file}` (its script and style),
//! built into the binary from `apiserver/ui/` — no separate process, no CDN, no build step. The
//! page reads the Prometheus API and `ui_api`'s JSON; views are hash routes (`#/targets`,
//! `#/adapter`, `#/query?expr=…&range=…`, `#/store`).
//!
//! Every answer carries a Content-Security-Policy allowing only this origin, so the page cannot
//! load or send anything elsewhere, and `nosniff` so the types below are the types used.

use super::AppState;
use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// The page's policy: this origin only, no inline script, no plugins, no framing.
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

/// The files under `/ui/`: name, content type, bytes.
const ASSETS: &[(&str, &str, &str)] = &[
    ("app.js", "text/javascript; charset=utf-8", include_str!("../../ui/app.js")),
    ("graph.js", "text/javascript; charset=utf-8", include_str!("../../ui/graph.js")),
    ("style.css", "text/css; charset=utf-8", include_str!("../../ui/style.css")),
];

const INDEX_HTML: &str = include_str!("../../ui/index.html");

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/", get(index)).route("/ui/{file}", get(asset))
}

async fn index() -> Response {
    page(StatusCode::OK, "text/html; charset=utf-8", INDEX_HTML)
}

async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, body)) => page(StatusCode::OK, content_type, body),
        None => page(StatusCode::NOT_FOUND, "text/plain; charset=utf-8", "no such file in the web UI\n"),
    }
}

fn page(status: StatusCode, content_type: &'static str, body: &'static str) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::ServiceExt;

    async fn fetch(path: &str) -> (StatusCode, axum::http::HeaderMap, String) {
        let app: Router = routes().with_state(test_state());
        let response = app.oneshot(axum::http::Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        (parts.status, parts.headers, String::from_utf8_lossy(&bytes).into_owned())
    }

    fn test_state() -> AppState {
        let db = std::sync::Arc::new(tsdb::Db::open(tsdb::Options::in_memory()).unwrap());
        super::super::ui_api::tests::test_state(db, std::sync::Arc::default())
    }

    #[tokio::test]
    async fn the_page_and_its_assets_have_their_types_and_the_policy() {
        let (status, headers, body) = fetch("/").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert_eq!(headers[header::CONTENT_SECURITY_POLICY], CONTENT_SECURITY_POLICY);
        for (name, content_type, _) in ASSETS {
            assert!(body.contains(&format!("/ui/{name}")), "the page loads {name}");
            let (status, headers, _) = fetch(&format!("/ui/{name}")).await;
            assert_eq!(status, StatusCode::OK, "{name}");
            assert_eq!(headers[header::CONTENT_TYPE], *content_type);
            assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        }
        let (status, _, _) = fetch("/ui/../Cargo.toml").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    #[test]
    fn nothing_is_loaded_from_elsewhere() {
        assert!(!CONTENT_SECURITY_POLICY.contains("http"), "only 'self' sources");
        for text in [INDEX_HTML].into_iter().chain(ASSETS.iter().map(|(_, _, body)| *body)) {
            // The SVG namespace is a name, never fetched.
            let text = text.replace("\"http://www.w3.org/2000/svg\"", "SVG_NS");
            assert!(!text.contains("https://") && !text.contains("http://"), "a remote URL in the UI");
            assert!(!text.contains("<script>"), "inline script would be refused by the policy");
        }
    }
}
