//! Reading an HTTP answer's body under a byte limit, for the small answers Ringtail asks for
//! besides scrapes (OAuth 2.0 token endpoints, HTTP service discovery): a larger answer is an
//! error naming the limit, never unbounded memory.

/// The body of `response`; an error past `limit` bytes.
pub(crate) async fn read_limited(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, String> {
    if response.content_length().is_some_and(|length| length > limit as u64) {
        return Err(format!("the answer is larger than {limit} bytes"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > limit {
            return Err(format!("the answer is larger than {limit} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
