//! `Exporter` is the bench's own fleet of scrape targets: one HTTP listener per target on its own
//! loopback address (`127.1.x.y`, all on one port, so each target has a distinct `instance` as
//! pods do), each serving `/metrics` either rendered on request by a shared page function
//! ([`Exporter::start`], for pages whose values must change at a chosen instant) or pre-rendered
//! once and served from memory ([`Exporter::start_static`], plain or gzip as the scraper asks, so
//! the target side costs little next to the scraper at hundreds of thousands of samples per
//! second). It counts the pages served per target, which is how the scrape workloads know how
//! many samples each system actually ingested.

use anyhow::{anyhow, Context, Result};
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::task::JoinHandle;

/// Renders target `index`'s page into the buffer (cleared first by the renderer).
pub type PageRenderer = Arc<dyn Fn(usize, &mut String) + Send + Sync>;

/// The most scrape targets one exporter serves: one loopback address each, 250 per third octet of
/// `127.1.x.y`.
pub const MAX_TARGETS: usize = 62_500;

/// One pre-rendered exposition page, as plain text and gzip-compressed (fastest level: the
/// scrapers decompress what they asked for, as they would from a real exporter's client library).
pub struct StaticPage {
    plain: Bytes,
    gzip: Bytes,
}

impl StaticPage {
    /// Compresses `text` once.
    pub fn new(text: String) -> Result<StaticPage> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(text.as_bytes()).context("compressing a page")?;
        let gzip = encoder.finish().context("compressing a page")?;
        Ok(StaticPage { plain: Bytes::from(text), gzip: Bytes::from(gzip) })
    }

    /// Bytes held for this page (plain and gzip).
    pub fn held_bytes(&self) -> usize {
        self.plain.len() + self.gzip.len()
    }
}

/// The pages of every target: `pages[target][version]`; a target serves its versions in turn,
/// one per scrape, so values move between scrapes without rendering anything while serving.
pub type StaticPages = Arc<Vec<Vec<StaticPage>>>;

enum PageSource {
    Render(PageRenderer),
    Static(StaticPages),
}

#[derive(Clone)]
struct TargetState {
    index: usize,
    source: Arc<PageSource>,
    hits: Arc<Vec<AtomicU64>>,
}

/// Running scrape targets; the listeners stop when this is dropped.
pub struct Exporter {
    /// `host:port` of each target, in index order.
    pub targets: Vec<String>,
    hits: Arc<Vec<AtomicU64>>,
    tasks: Vec<JoinHandle<()>>,
}

/// The loopback address of target `index` (127.1.0.1, 127.1.0.2, …; 250 per third octet).
fn target_ip(index: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 1, (index / 250) as u8, (index % 250 + 1) as u8)
}

/// Whether an `Accept-Encoding` value accepts gzip (a `gzip` or `*` token not weighted `q=0`).
fn accepts_gzip(value: &str) -> bool {
    value.split(',').any(|part| {
        let mut fields = part.split(';').map(str::trim);
        let coding = fields.next().unwrap_or("");
        let refused = fields.any(|f| f.replace(' ', "").trim_start_matches("q=").parse::<f64>() == Ok(0.0));
        (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !refused
    })
}

impl Exporter {
    /// Starts `count` targets (at most [`MAX_TARGETS`]) serving pages from `render`.
    pub async fn start(count: usize, render: PageRenderer) -> Result<Exporter> {
        Self::start_source(count, PageSource::Render(render)).await
    }

    /// Starts one target per entry of `pages` (at most [`MAX_TARGETS`]), each serving its
    /// pre-rendered versions in turn; a target with no version is an error.
    pub async fn start_static(pages: StaticPages) -> Result<Exporter> {
        if let Some(index) = pages.iter().position(Vec::is_empty) {
            return Err(anyhow!("scrape target {index} has no page"));
        }
        Self::start_source(pages.len(), PageSource::Static(pages)).await
    }

    async fn start_source(count: usize, source: PageSource) -> Result<Exporter> {
        if count > MAX_TARGETS {
            return Err(anyhow!("{count} scrape targets: at most {MAX_TARGETS} loopback addresses are used"));
        }
        // A listener per target and a connection per target per scraper, plus room for the rest.
        crate::suite::measure::ensure_open_files(2 * count as u64 + 1024, &format!("{count} scrape targets"))?;
        let source = Arc::new(source);
        let hits: Arc<Vec<AtomicU64>> = Arc::new((0..count).map(|_| AtomicU64::new(0)).collect());
        // One port for all addresses; retried with a new port if another program holds it on one.
        let mut last_error = None;
        for _ in 0..5 {
            let port = crate::free_port().map_err(|e| anyhow!(e))?;
            match Self::bind_all(count, port).await {
                Ok(listeners) => {
                    let mut tasks = Vec::with_capacity(count);
                    let mut targets = Vec::with_capacity(count);
                    for (index, listener) in listeners.into_iter().enumerate() {
                        targets.push(format!("{}:{port}", target_ip(index)));
                        let state = TargetState { index, source: source.clone(), hits: hits.clone() };
                        let router = Router::new().route("/metrics", get(serve_page)).with_state(state);
                        tasks.push(tokio::spawn(async move {
                            // A listener error ends this target only; the scrapers report it as down.
                            let _ = axum::serve(listener, router).await;
                        }));
                    }
                    return Ok(Exporter { targets, hits, tasks });
                }
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow!("no port found for the exporter")))
    }

    async fn bind_all(count: usize, port: u16) -> Result<Vec<tokio::net::TcpListener>> {
        let mut listeners = Vec::with_capacity(count);
        for index in 0..count {
            let address = (target_ip(index), port);
            listeners.push(
                tokio::net::TcpListener::bind(address)
                    .await
                    .with_context(|| format!("binding scrape target {}:{port}", address.0))?,
            );
        }
        Ok(listeners)
    }

    /// Pages served to all scrapers so far, summed over targets.
    pub fn total_hits(&self) -> u64 {
        self.hits.iter().map(|h| h.load(Ordering::Relaxed)).sum()
    }

    /// The fewest pages any one target has served.
    pub fn min_hits(&self) -> u64 {
        self.hits.iter().map(|h| h.load(Ordering::Relaxed)).min().unwrap_or(0)
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn serve_page(State(state): State<TargetState>, headers: HeaderMap) -> Response {
    let served = state.hits[state.index].fetch_add(1, Ordering::Relaxed);
    let content_type = (header::CONTENT_TYPE, "text/plain; version=0.0.4");
    match &*state.source {
        PageSource::Render(render) => {
            let mut page = String::new();
            render(state.index, &mut page);
            ([content_type], page).into_response()
        }
        PageSource::Static(pages) => {
            let versions = &pages[state.index];
            let page = &versions[served as usize % versions.len()];
            let gzip = headers.get(header::ACCEPT_ENCODING).and_then(|v| v.to_str().ok()).is_some_and(accepts_gzip);
            if gzip {
                ([content_type, (header::CONTENT_ENCODING, "gzip")], page.gzip.clone()).into_response()
            } else {
                ([content_type], page.plain.clone()).into_response()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn serves_and_counts_pages() -> Result<()> {
        let render: PageRenderer = Arc::new(|index, page: &mut String| {
            page.clear();
            page.push_str(&format!("up_value{{target=\"{index}\"}} 1\n"));
        });
        let exporter = Exporter::start(3, render).await?;
        let client = reqwest::Client::builder().no_proxy().build()?;
        let body = client.get(format!("http://{}/metrics", exporter.targets[2])).send().await?.text().await?;
        assert_eq!(body, "up_value{target=\"2\"} 1\n");
        assert_eq!(exporter.total_hits(), 1);
        assert_eq!(exporter.min_hits(), 0);
        Ok(())
    }

    #[tokio::test]
    async fn serves_static_versions_in_turn_plain_or_gzip() -> Result<()> {
        let pages: StaticPages = Arc::new(vec![
            vec![StaticPage::new("a 1\n".into())?, StaticPage::new("a 2\n".into())?],
            vec![StaticPage::new("b 1\n".into())?],
        ]);
        let exporter = Exporter::start_static(pages).await?;
        let plain = reqwest::Client::builder().no_proxy().gzip(false).build()?;
        let url = format!("http://{}/metrics", exporter.targets[0]);
        assert_eq!(plain.get(&url).send().await?.text().await?, "a 1\n");
        assert_eq!(plain.get(&url).send().await?.text().await?, "a 2\n");
        // A client asking for gzip gets it and decompresses the same page.
        let gzip = reqwest::Client::builder().no_proxy().gzip(true).build()?;
        assert_eq!(gzip.get(&url).send().await?.text().await?, "a 1\n");
        let raw = plain.get(&url).header("accept-encoding", "gzip").send().await?;
        assert_eq!(raw.headers().get("content-encoding").map(|v| v.as_bytes()), Some(&b"gzip"[..]));
        assert_eq!((exporter.total_hits(), exporter.min_hits()), (4, 0));
        assert!(Exporter::start_static(Arc::new(vec![vec![]])).await.is_err());
        Ok(())
    }

    #[test]
    fn gzip_is_accepted_unless_refused() {
        assert!(accepts_gzip("gzip"));
        assert!(accepts_gzip("deflate, gzip;q=0.5"));
        assert!(accepts_gzip("*"));
        assert!(!accepts_gzip("identity"));
        assert!(!accepts_gzip("gzip;q=0"));
        assert!(!accepts_gzip("gzip; q=0.0, br"));
    }
}
