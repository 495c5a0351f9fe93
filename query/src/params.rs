//! `params` is the textual forms Prometheus's HTTP API accepts besides the query itself, each
//! parsed here and nowhere else: series selectors (`match[]`, a rule's `seriesQuery`), times
//! (`time`, `start`, `end`) and durations (`step`, `timeout`, and PromQL's duration literals,
//! whose grammar is the query parser's own lexeme).
//!
//! Callers word the errors for their own surface; [`ParamError`]'s messages are Prometheus's API
//! wording.

use crate::ast::ExprKind;
use crate::error::{ParamError, SelectorError};
use crate::parser::{duration_literal, parse};
use tsdb::Matcher;

/// Largest magnitude of Unix seconds (or seconds of a duration) accepted as a number: its
/// milliseconds still fit an `i64` (about 9.22e18), as Prometheus's own bound.
const MAX_ABS_SECONDS: f64 = 9.2e15;

/// Parses a series selector — a PromQL vector selector `name`, `name{…}` or `{…}` without range,
/// offset or `@` — into its matchers (the metric name's first). Anything else that is valid
/// PromQL is [`SelectorError::NotASelector`].
pub fn parse_selector(text: &str) -> Result<Vec<Matcher>, SelectorError> {
    match parse(text)?.kind {
        ExprKind::Vector(selector) if selector.offset_ms == 0 && selector.at.is_none() => Ok(selector.matchers),
        _ => Err(SelectorError::NotASelector),
    }
}

/// Parses a Prometheus duration (`1h30m`, `5m`, `100ms`; units y w d h m s ms, largest first,
/// each at most once) to milliseconds.
pub fn parse_duration_ms(text: &str) -> Option<i64> {
    match duration_literal(text) {
        Ok(("", ms)) => Some(ms),
        _ => None,
    }
}

/// Parses a duration parameter of the HTTP API: float seconds (`15`, `0.5`) or a Prometheus
/// duration (`1m30s`), to milliseconds.
pub fn parse_duration_param_ms(text: &str) -> Result<i64, ParamError> {
    if let Ok(seconds) = text.parse::<f64>() {
        return seconds_to_ms(seconds).ok_or_else(|| ParamError::DurationOverflow { text: text.to_string() });
    }
    parse_duration_ms(text).ok_or_else(|| ParamError::Duration { text: text.to_string() })
}

/// Parses a time parameter of the HTTP API: float Unix seconds (`1435781451.781`, negative
/// allowed) or RFC 3339 (`2015-07-01T20:10:51.781Z`, any offset), to Unix milliseconds.
pub fn parse_time_ms(text: &str) -> Result<i64, ParamError> {
    if let Some(ms) = text.parse::<f64>().ok().and_then(seconds_to_ms) {
        return Ok(ms);
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis())
        .map_err(|_| ParamError::Time { text: text.to_string() })
}

/// `seconds` in whole milliseconds, unless not finite or too large for an `i64` of milliseconds.
fn seconds_to_ms(seconds: f64) -> Option<i64> {
    (seconds.is_finite() && seconds.abs() < MAX_ABS_SECONDS).then(|| (seconds * 1000.0).round() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tsdb::MatchOp;

    #[test]
    fn selectors_are_bare_vector_selectors() {
        let m = parse_selector("up{job=\"a\"}").expect("selector");
        assert_eq!(m, vec![Matcher::equal("__name__", "up"), Matcher::equal("job", "a")]);
        let m = parse_selector("{__name__=~\"^seldon_model.*_total\",namespace!=\"\"}\n").expect("selector");
        assert_eq!((m.len(), m[1].op), (2, MatchOp::NotEqual));
        assert!(m[0].matches("seldon_model_infer_total"));
        assert_eq!(parse_selector("up").expect("selector"), vec![Matcher::equal("__name__", "up")]);
        for not_a_selector in ["rate(up[5m])", "up[5m]", "up offset 5m", "up @ 100", "(up)", "1", "-up"] {
            assert_eq!(parse_selector(not_a_selector), Err(SelectorError::NotASelector), "{not_a_selector}");
        }
    }

    #[test]
    fn selector_syntax_errors_carry_the_parser_error() {
        for (text, pos) in [("{a=\"x\"", 6), ("{a==\"x\"}", 3), ("{job=~\".*\"}", 0), ("", 0)] {
            match parse_selector(text) {
                Err(SelectorError::Parse(e)) => assert_eq!(e.pos, pos, "{text}: {e}"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn times_are_float_seconds_or_rfc3339() {
        assert_eq!(parse_time_ms("1435781451.781"), Ok(1_435_781_451_781));
        assert_eq!(parse_time_ms("1.5"), Ok(1_500));
        assert_eq!(parse_time_ms("-1.5"), Ok(-1_500));
        assert_eq!(parse_time_ms("0"), Ok(0));
        assert_eq!(parse_time_ms("2015-07-01T20:10:51.781Z"), Ok(1_435_781_451_781));
        assert_eq!(parse_time_ms("2015-07-01T22:10:51.781+02:00"), Ok(1_435_781_451_781));
        assert_eq!(parse_time_ms("2015-07-01T15:10:51.781-05:00"), Ok(1_435_781_451_781));
        assert_eq!(parse_time_ms("1970-01-01T00:00:02Z"), Ok(2_000));
    }

    #[test]
    fn times_that_are_not_finite_or_overflow_are_refused() {
        for bad in ["NaN", "Inf", "+Inf", "-Inf", "1e16", "-9.3e15", "yesterday", "", "2015-07-01", "5m"] {
            assert_eq!(parse_time_ms(bad), Err(ParamError::Time { text: bad.to_string() }), "{bad}");
        }
        assert_eq!(
            parse_time_ms("soon").map_err(|e| e.to_string()),
            Err("cannot parse \"soon\" to a valid timestamp".to_string())
        );
    }

    #[test]
    fn durations_follow_prometheus_units() {
        assert_eq!(parse_duration_ms("1h30m"), Some(5_400_000));
        assert_eq!(parse_duration_ms("100ms"), Some(100));
        assert_eq!(parse_duration_ms("1m1ms"), Some(60_001));
        assert_eq!(parse_duration_ms("1d"), Some(86_400_000));
        assert_eq!(parse_duration_ms("2w1y"), None);
        assert_eq!(parse_duration_ms("1y2w"), Some(379 * 86_400_000));
        assert_eq!(parse_duration_ms("0s"), Some(0));
        // A bare number is not a duration literal (the API's parameters take it as seconds).
        assert_eq!(parse_duration_ms("0"), None);
        for bad in ["5m1h", "5x", "5", "m", "", "1h1h", "1.5m", "-5m", "5m "] {
            assert_eq!(parse_duration_ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn duration_parameters_are_seconds_or_durations() {
        assert_eq!(parse_duration_param_ms("1m30s"), Ok(90_000));
        assert_eq!(parse_duration_param_ms("15"), Ok(15_000));
        assert_eq!(parse_duration_param_ms("0.5"), Ok(500));
        assert_eq!(parse_duration_param_ms("0"), Ok(0));
        assert_eq!(parse_duration_param_ms("-1"), Ok(-1_000));
        assert_eq!(parse_duration_param_ms("5x"), Err(ParamError::Duration { text: "5x".into() }));
        assert_eq!(parse_duration_param_ms(""), Err(ParamError::Duration { text: String::new() }));
        for overflow in ["1e16", "NaN", "inf"] {
            assert_eq!(
                parse_duration_param_ms(overflow),
                Err(ParamError::DurationOverflow { text: overflow.to_string() }),
                "{overflow}"
            );
        }
        assert_eq!(
            parse_duration_param_ms("5x").map_err(|e| e.to_string()),
            Err("cannot parse \"5x\" to a valid duration".to_string())
        );
        assert_eq!(
            parse_duration_param_ms("1e16").map_err(|e| e.to_string()),
            Err("cannot parse \"1e16\" to a valid duration. It overflows int64".to_string())
        );
    }
}
