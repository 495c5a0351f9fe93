//! `Authenticator` decides whether a request to the metrics APIs may proceed, given its HTTP
//! head and the TLS connection it came on ([`ConnectionInfo`], with the client certificates).
//!
//! Standalone Ringtail offers `AllowAll` and `StaticTokens` (`--adapter-tokens-file`, in
//! kube-apiserver's `--token-auth-file` CSV format: `token,user,uid,"group1,group2"`, re-read
//! when the file changes). A request without a token is `system:anonymous` and gets 403
//! Forbidden; a wrong token gets 401 Unauthorized, as kube-apiserver answers. The Kubernetes
//! integration adds front-proxy certificates, TokenReview and SubjectAccessReview behind the
//! same trait.

use parking_lot::Mutex;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use subtle::ConstantTimeEq;
use tokio_rustls::rustls::pki_types::CertificateDer;

/// What the TLS listener knows about a connection; inserted into every request's extensions.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    pub remote_addr: SocketAddr,
    /// The client's certificate chain, when it sent one.
    pub peer_certificates: Option<Arc<Vec<CertificateDer<'static>>>>,
}

/// Who made a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub groups: Vec<String>,
}

/// The outcome of authentication and authorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthDecision {
    Allow(Identity),
    /// 401: credentials were given but are not valid.
    Unauthorized(String),
    /// 403: the (possibly anonymous) user may not do this.
    Forbidden(String),
}

/// The future an [`Authenticator`] answers with.
pub type PendingDecision<'a> = Pin<Box<dyn Future<Output = AuthDecision> + Send + 'a>>;

/// Decides on each request. Called per request on the serving path: implementations that ask a
/// cluster (TokenReview, SubjectAccessReview) must cache their answers so steady polling is cheap.
pub trait Authenticator: Send + Sync {
    fn decide<'a>(
        &'a self,
        head: &'a http::request::Parts,
        connection: Option<&'a ConnectionInfo>,
    ) -> PendingDecision<'a>;
}

/// Accepts everyone (standalone mode without a tokens file).
pub(crate) struct AllowAll;

impl Authenticator for AllowAll {
    fn decide<'a>(&'a self, _: &'a http::request::Parts, _: Option<&'a ConnectionInfo>) -> PendingDecision<'a> {
        Box::pin(std::future::ready(AuthDecision::Allow(Identity {
            user: "system:anonymous".into(),
            groups: vec!["system:unauthenticated".into()],
        })))
    }
}

/// Why a tokens file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read tokens file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("tokens file {path} line {line}: {message}")]
    Invalid { path: PathBuf, line: usize, message: String },
}

struct TokenTable {
    entries: Vec<(String, Identity)>,
    modified: Option<SystemTime>,
    checked_at: Instant,
}

/// Bearer tokens from a file, re-read (at most once a second) when its modification time changes.
pub(crate) struct StaticTokens {
    path: PathBuf,
    table: Mutex<TokenTable>,
}

/// How often the tokens file's modification time is looked at.
const TOKENS_RECHECK: Duration = Duration::from_secs(1);

impl StaticTokens {
    pub(crate) fn load(path: &Path) -> Result<Self, AuthError> {
        let (entries, modified) = read_tokens(path)?;
        Ok(StaticTokens {
            path: path.to_path_buf(),
            table: Mutex::new(TokenTable { entries, modified, checked_at: Instant::now() }),
        })
    }

    fn lookup(&self, token: &str) -> Option<Identity> {
        let mut table = self.table.lock();
        if table.checked_at.elapsed() >= TOKENS_RECHECK {
            table.checked_at = Instant::now();
            let modified = std::fs::metadata(&self.path).and_then(|m| m.modified()).ok();
            if modified != table.modified {
                match read_tokens(&self.path) {
                    Ok((entries, modified)) => {
                        tracing::info!(path = %self.path.display(), tokens = entries.len(), "tokens file reloaded");
                        table.entries = entries;
                        table.modified = modified;
                    }
                    Err(e) => tracing::error!(error = %e, "tokens file not reloaded; keeping the previous tokens"),
                }
            }
        }
        // Compare against every entry in constant time per entry, so timing reveals nothing.
        let mut found = None;
        for (candidate, identity) in &table.entries {
            if bool::from(candidate.as_bytes().ct_eq(token.as_bytes())) && found.is_none() {
                found = Some(identity.clone());
            }
        }
        found
    }
}

/// Tokens with who they identify, and the file's modification time.
type LoadedTokens = (Vec<(String, Identity)>, Option<SystemTime>);

fn read_tokens(path: &Path) -> Result<LoadedTokens, AuthError> {
    let text = std::fs::read_to_string(path).map_err(|source| AuthError::Read { path: path.to_path_buf(), source })?;
    let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let mut entries = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields = split_csv(line);
        let token = fields.first().cloned().unwrap_or_default();
        if token.is_empty() {
            return Err(AuthError::Invalid { path: path.to_path_buf(), line: i + 1, message: "empty token".into() });
        }
        let user = fields.get(1).filter(|u| !u.is_empty()).cloned().unwrap_or_else(|| format!("token-user-{}", i + 1));
        let groups = fields
            .get(3)
            .map(|g| g.split(',').map(str::trim).filter(|g| !g.is_empty()).map(str::to_string).collect())
            .unwrap_or_default();
        entries.push((token, Identity { user, groups }));
    }
    Ok((entries, modified))
}

/// Splits one CSV line (double quotes group commas).
fn split_csv(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(String::new()),
            c => fields.last_mut().into_iter().for_each(|f| f.push(c)),
        }
    }
    fields.into_iter().map(|f| f.trim().to_string()).collect()
}

impl Authenticator for StaticTokens {
    fn decide<'a>(&'a self, head: &'a http::request::Parts, _: Option<&'a ConnectionInfo>) -> PendingDecision<'a> {
        Box::pin(std::future::ready(self.check(head)))
    }
}

impl StaticTokens {
    /// The decision for one request head (no I/O: the table is in memory).
    pub(crate) fn check(&self, head: &http::request::Parts) -> AuthDecision {
        let Some(value) = head.headers.get(http::header::AUTHORIZATION) else {
            return AuthDecision::Forbidden(
                "User \"system:anonymous\" cannot get the metrics APIs: a bearer token is required".into(),
            );
        };
        let token = value.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")).map(str::trim);
        match token.and_then(|t| self.lookup(t)) {
            Some(identity) => AuthDecision::Allow(identity),
            None => AuthDecision::Unauthorized("Unauthorized".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(auth: Option<&str>) -> http::request::Parts {
        let mut builder = http::Request::builder().uri("/apis");
        if let Some(a) = auth {
            builder = builder.header("authorization", a);
        }
        builder.body(()).unwrap().into_parts().0
    }

    #[test]
    fn tokens_file_in_kube_csv_format() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.csv");
        std::fs::write(&path, "# comment\nsecret1,alice,1,\"ops,dev\"\nsecret2\n").unwrap();
        let tokens = StaticTokens::load(&path).unwrap();
        match tokens.check(&head(Some("Bearer secret1"))) {
            AuthDecision::Allow(identity) => {
                assert_eq!(identity.user, "alice");
                assert_eq!(identity.groups, vec!["ops", "dev"]);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(tokens.check(&head(Some("Bearer secret2"))), AuthDecision::Allow(_)));
        assert!(matches!(tokens.check(&head(Some("Bearer nope"))), AuthDecision::Unauthorized(_)));
        assert!(matches!(tokens.check(&head(Some("Basic x"))), AuthDecision::Unauthorized(_)));
        assert!(matches!(tokens.check(&head(None)), AuthDecision::Forbidden(_)));
    }
}
