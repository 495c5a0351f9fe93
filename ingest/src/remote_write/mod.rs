//! `remote_write` is the Prometheus remote-write receiver's engine, one file per concern:
//! `protocol` negotiates what a request speaks (Content-Type → [`Protocol`] 1.0 or 2.0,
//! Content-Encoding); `decode` decompresses the snappy block and walks the protobuf into a
//! validated [`DecodedRequest`]; `store` appends it to the store in one batch and reports a
//! [`WriteOutcome`]; `receiver` is the one door that owns the store handle, the limits, the series
//! cache and the decompression buffers: [`Receiver::remote_write`].
//!
//! The HTTP handler (authentication, body size, in-flight budget, statuses) lives in the
//! apiserver; nothing here knows about HTTP beyond the header values it is handed.

mod decode;
mod protocol;
mod receiver;
mod store;

pub use decode::{decode_request, decompress_snappy, DecodeLimits, DecodedRequest, DEFAULT_MAX_FUTURE_MS};
pub use protocol::{
    check_content_encoding, encode_body, Protocol, CONTENT_TYPE_V2, HEADER_EXEMPLARS_WRITTEN,
    HEADER_HISTOGRAMS_WRITTEN, HEADER_SAMPLES_WRITTEN, PROTOBUF_MEDIA_TYPE, PROTO_V1, PROTO_V2,
};
pub use receiver::Receiver;
pub use store::WriteOutcome;

/// Request builders the receiver's tests share.
#[cfg(test)]
mod test_support {
    use crate::proto::v1;

    /// A 1.0 series with these labels (in the given order) and samples `(ts_ms, value)`.
    pub(super) fn v1_series(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> v1::TimeSeries {
        v1::TimeSeries {
            labels: labels.iter().map(|(n, v)| v1::Label { name: n.to_string(), value: v.to_string() }).collect(),
            samples: samples.iter().map(|(t, v)| v1::Sample { value: *v, timestamp: *t }).collect(),
            exemplars: vec![],
            histograms: vec![],
        }
    }
}
