//! `Protocol` is the remote-write version a request speaks, negotiated from its Content-Type
//! (1.0 `prometheus.WriteRequest` or 2.0 `io.prometheus.write.v2.Request`); this file also holds
//! the Content-Encoding rule (snappy block or nothing), the header names both versions use, and
//! [`encode_body`], what a sender does to a message.

use crate::error::RemoteWriteError;

/// Content-Type media type of both protocol versions.
pub const PROTOBUF_MEDIA_TYPE: &str = "application/x-protobuf";
/// `proto` parameter naming the 1.0 message.
pub const PROTO_V1: &str = "prometheus.WriteRequest";
/// `proto` parameter naming the 2.0 message.
pub const PROTO_V2: &str = "io.prometheus.write.v2.Request";
/// Content-Type a 2.0 sender uses.
pub const CONTENT_TYPE_V2: &str = "application/x-protobuf;proto=io.prometheus.write.v2.Request";
/// Response headers 2.0 senders read (and 1.0 senders ignore).
pub const HEADER_SAMPLES_WRITTEN: &str = "X-Prometheus-Remote-Write-Samples-Written";
pub const HEADER_HISTOGRAMS_WRITTEN: &str = "X-Prometheus-Remote-Write-Histograms-Written";
pub const HEADER_EXEMPLARS_WRITTEN: &str = "X-Prometheus-Remote-Write-Exemplars-Written";

/// Which remote-write message a request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// `prometheus.WriteRequest`, Remote-Write 1.0.
    V1,
    /// `io.prometheus.write.v2.Request`, Remote-Write 2.0.
    V2,
}

impl Protocol {
    /// Picks the protocol from the Content-Type header. A missing header or a bare
    /// `application/x-protobuf` means 1.0, as the 2.0 spec requires for backward compatibility.
    pub fn negotiate(content_type: Option<&str>) -> Result<Protocol, RemoteWriteError> {
        let Some(content_type) = content_type else {
            return Ok(Protocol::V1);
        };
        let mut parts = content_type.split(';');
        let media_type = parts.next().unwrap_or("").trim();
        if !media_type.eq_ignore_ascii_case(PROTOBUF_MEDIA_TYPE) {
            return Err(RemoteWriteError::UnsupportedContentType(content_type.to_string()));
        }
        let mut protocol = Protocol::V1;
        for param in parts {
            let Some((key, value)) = param.split_once('=') else {
                continue;
            };
            if key.trim().eq_ignore_ascii_case("proto") {
                protocol = match value.trim().trim_matches('"') {
                    PROTO_V1 => Protocol::V1,
                    PROTO_V2 => Protocol::V2,
                    _ => return Err(RemoteWriteError::UnsupportedContentType(content_type.to_string())),
                };
            }
        }
        Ok(protocol)
    }

    /// `v1` or `v2`, for metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::V1 => "v1",
            Protocol::V2 => "v2",
        }
    }
}

/// Accepts a missing Content-Encoding or `snappy`; anything else is refused (415).
pub fn check_content_encoding(content_encoding: Option<&str>) -> Result<(), RemoteWriteError> {
    match content_encoding.map(str::trim) {
        None | Some("") => Ok(()),
        Some(enc) if enc.eq_ignore_ascii_case("snappy") => Ok(()),
        Some(other) => Err(RemoteWriteError::UnsupportedContentEncoding(other.to_string())),
    }
}

/// Encodes `request` as a remote-write body (protobuf, then snappy block): what a sender does.
pub fn encode_body<M: prost::Message>(request: &M) -> Vec<u8> {
    let raw = request.encode_to_vec();
    // Compressing an in-memory buffer cannot fail except for inputs over 4 GiB, which no caller
    // builds; an empty body then makes the receiver answer 400, which is the honest outcome.
    snap::raw::Encoder::new().compress_vec(&raw).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiates_protocol_from_content_type() {
        assert_eq!(Protocol::negotiate(None).unwrap(), Protocol::V1);
        assert_eq!(Protocol::negotiate(Some("application/x-protobuf")).unwrap(), Protocol::V1);
        assert_eq!(
            Protocol::negotiate(Some("application/x-protobuf;proto=prometheus.WriteRequest")).unwrap(),
            Protocol::V1
        );
        assert_eq!(Protocol::negotiate(Some(CONTENT_TYPE_V2)).unwrap(), Protocol::V2);
        assert_eq!(
            Protocol::negotiate(Some("application/x-protobuf; proto=\"io.prometheus.write.v2.Request\"")).unwrap(),
            Protocol::V2
        );
        assert!(Protocol::negotiate(Some("application/json")).is_err());
        assert!(Protocol::negotiate(Some("application/x-protobuf;proto=io.prometheus.write.v3.Request")).is_err());
        assert!(check_content_encoding(Some("gzip")).is_err());
        assert!(check_content_encoding(Some("snappy")).is_ok() && check_content_encoding(None).is_ok());
    }
}
