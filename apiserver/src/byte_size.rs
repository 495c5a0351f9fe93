//! `parse_byte_size` is the one parser of byte sizes in settings (`--storage-size 512MiB`,
//! `storage_size: 10GiB`): a plain count of bytes, or an integer with one of the units
//! Prometheus's `--storage.tsdb.retention.size` takes, all base 2 as there (`1KB` = `1KiB` =
//! 1024 bytes). Units are case-sensitive, as Prometheus's (`1kb` and `1Kb` are errors).
//!
//! Written here rather than taken from a crate: the size crates read `KB` as 1000 bytes and fold
//! case, and what Prometheus users type must mean what it means to Prometheus.

/// The units, each with its power of 1024: Prometheus's spellings (`KB` … `EB`, from
/// `alecthomas/units.ParseBase2Bytes`) and the IEC ones (`KiB` … `EiB`).
const UNITS: [(&str, u32); 13] = [
    ("B", 0),
    ("KB", 1),
    ("MB", 2),
    ("GB", 3),
    ("TB", 4),
    ("PB", 5),
    ("EB", 6),
    ("KiB", 1),
    ("MiB", 2),
    ("GiB", 3),
    ("TiB", 4),
    ("PiB", 5),
    ("EiB", 6),
];

/// Why a size could not be read; its text names what was wrong and what is accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ByteSizeError {
    #[error("empty size: give a byte count or an integer with a unit (e.g. 512MiB, 10GiB, 1TB)")]
    Empty,
    #[error(
        "invalid size {0:?}: give a byte count or an integer with a unit, one of B, KB, MB, GB, TB, PB, EB \
         (base 2: 1KB = 1024 bytes) or KiB, MiB, GiB, TiB, PiB, EiB (case-sensitive, no decimals)"
    )]
    Invalid(String),
    #[error("size {0:?} is too large (more than 2^64-1 bytes)")]
    Overflow(String),
}

/// Reads `text` as a number of bytes: digits, then optionally one unit of [`UNITS`] with no space.
pub(crate) fn parse_byte_size(text: &str) -> Result<u64, ByteSizeError> {
    if text.is_empty() {
        return Err(ByteSizeError::Empty);
    }
    let digits_end = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(digits_end);
    if digits.is_empty() {
        return Err(ByteSizeError::Invalid(text.to_string()));
    }
    let power = match unit {
        "" => 0,
        unit => UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, power)| *power)
            .ok_or_else(|| ByteSizeError::Invalid(text.to_string()))?,
    };
    let count: u64 = digits.parse().map_err(|_| ByteSizeError::Overflow(text.to_string()))?;
    count.checked_mul(1u64 << (10 * power)).ok_or_else(|| ByteSizeError::Overflow(text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_counts_are_bytes() {
        assert_eq!(parse_byte_size("0"), Ok(0));
        assert_eq!(parse_byte_size("1073741824"), Ok(1 << 30));
        assert_eq!(parse_byte_size("18446744073709551615"), Ok(u64::MAX));
    }

    #[test]
    fn every_unit_is_base_2() {
        for (text, expected) in [
            ("7B", 7),
            ("1KB", 1 << 10),
            ("1KiB", 1 << 10),
            ("512MB", 512 << 20),
            ("512MiB", 512 << 20),
            ("10GB", 10 << 30),
            ("10GiB", 10 << 30),
            ("1TB", 1 << 40),
            ("1TiB", 1 << 40),
            ("2PB", 2 << 50),
            ("2PiB", 2 << 50),
            ("15EB", 15 << 60),
            ("15EiB", 15 << 60),
        ] {
            assert_eq!(parse_byte_size(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn units_are_case_sensitive_and_decimals_refused() {
        for bad in ["1kb", "1Kb", "1kB", "1gib", "1GIB", "1mb", "1.5GB", "0.5", "GB", "-1", "+1", " 1GB", "1 GB"] {
            assert_eq!(parse_byte_size(bad), Err(ByteSizeError::Invalid(bad.to_string())), "{bad}");
        }
        for bad in ["1GBB", "1GB512MB", "1XB", "1k", "1K", "1i", "12e3", "0x10"] {
            assert!(matches!(parse_byte_size(bad), Err(ByteSizeError::Invalid(_))), "{bad}");
        }
        assert_eq!(parse_byte_size(""), Err(ByteSizeError::Empty));
    }

    #[test]
    fn overflow_is_an_error_not_a_wrap() {
        for big in ["16EiB", "16EB", "18446744073709551616", "99999999999999999999999", "17179869184GiB"] {
            assert_eq!(parse_byte_size(big), Err(ByteSizeError::Overflow(big.to_string())), "{big}");
        }
        let message = parse_byte_size("16EiB").unwrap_err().to_string();
        assert!(message.contains("too large"), "{message}");
    }

    #[test]
    fn the_message_says_what_is_accepted() {
        let message = parse_byte_size("1.5GB").unwrap_err().to_string();
        assert!(
            message.contains("\"1.5GB\"") && message.contains("KiB") && message.contains("1KB = 1024"),
            "{message}"
        );
    }
}
