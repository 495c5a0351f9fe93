//! `parse` turns PromQL text into a type-checked [`Expr`]: nom lexeme parsers for the tokens and a
//! hand-written precedence climber for the operators, following Prometheus's grammar
//! (`promql/parser/generated_parser.y`): `or` < `and unless` < comparisons < `+ -` < `* / %` <
//! `^` (right-associative, binds tighter than unary minus, so `-2^2` is -4).
//!
//! Errors carry the byte offset where parsing failed; messages are worded like Prometheus's.
//! Nesting is limited to [`MAX_DEPTH`] levels so deeply nested input fails cleanly instead of
//! overflowing the stack.

use crate::ast::{AggOp, AtModifier, BinOp, Cardinality, Expr, ExprKind, ValueType, VectorMatching, VectorSelector};
use crate::error::ParseError;
use crate::functions;
use nom::branch::alt;
use nom::bytes::complete::{tag, tag_no_case, take_while, take_while1};
use nom::character::complete::{char, digit1, hex_digit1, multispace1, not_line_ending};
use nom::combinator::{opt, recognize};
use nom::multi::many0_count;
use nom::sequence::{pair, preceded, tuple};
use nom::IResult;
use tsdb::{MatchOp, Matcher, METRIC_NAME};

/// Deepest nesting of sub-expressions accepted.
pub(crate) const MAX_DEPTH: usize = 128;

type PResult<'a, T> = Result<(&'a str, T), ParseError>;

/// `(without, labels)` of a `by`/`without` clause.
type Grouping = (bool, Vec<String>);

/// Parses a complete PromQL expression.
pub fn parse(query: &str) -> Result<Expr, ParseError> {
    let parser = Parser { src: query };
    let rest = parser.skip_ws(query);
    if rest.is_empty() {
        return Err(ParseError { pos: 0, message: "no expression found in input".into() });
    }
    let (rest, expr) = parser.expr(rest, 0, 0)?;
    let rest = parser.skip_ws(rest);
    if !rest.is_empty() {
        return Err(parser.unexpected(rest, ""));
    }
    Ok(expr)
}

/// Consumes a duration literal such as `1h30m` and returns its length in milliseconds.
pub(crate) fn duration_literal(input: &str) -> IResult<&str, i64> {
    const UNITS: [(&str, i64); 7] = [
        ("y", 365 * 86_400_000),
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("ms", 1),
        ("m", 60_000),
        ("s", 1000),
    ];
    let mut rest = input;
    let mut total: i64 = 0;
    let mut last_rank = usize::MAX;
    let mut any = false;
    while let Ok((after_digits, digits)) = digit1::<&str, nom::error::Error<&str>>(rest) {
        let Some((rank, (unit, ms))) = UNITS.iter().enumerate().find(|(_, (u, _))| after_digits.starts_with(u)) else {
            break;
        };
        // Units must come largest first and only once ("ms" sorts between h and m in the table
        // above only for matching; its rank for ordering is after "s").
        let order = match *unit {
            "ms" => 6,
            "m" => 4,
            "s" => 5,
            _ => rank,
        };
        if last_rank != usize::MAX && order <= last_rank {
            break;
        }
        let Ok(n) = digits.parse::<i64>() else { break };
        total = total.saturating_add(n.saturating_mul(*ms));
        last_rank = order;
        any = true;
        rest = &after_digits[unit.len()..];
    }
    if !any || rest.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
        return Err(nom::Err::Error(nom::error::Error::new(input, nom::error::ErrorKind::Digit)));
    }
    Ok((rest, total))
}

/// Consumes whitespace and `#` comments.
fn whitespace(input: &str) -> IResult<&str, usize> {
    many0_count(alt((multispace1, preceded(char('#'), not_line_ending))))(input)
}

/// Consumes an identifier (metric names may contain `:`).
fn identifier(input: &str) -> IResult<&str, &str> {
    recognize(pair(
        take_while1(|c: char| c.is_ascii_alphabetic() || c == '_' || c == ':'),
        take_while(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
    ))(input)
}

/// Consumes a number literal: hex, decimal with optional fraction and exponent, `Inf`, `NaN`.
fn number_literal(input: &str) -> IResult<&str, f64> {
    if let Ok((rest, hex)) = preceded(alt((tag("0x"), tag("0X"))), hex_digit1::<&str, nom::error::Error<&str>>)(input) {
        let value = u64::from_str_radix(hex, 16).map(|v| v as f64).unwrap_or(f64::INFINITY);
        return Ok((rest, value));
    }
    if let Ok((rest, word)) =
        alt((tag_no_case::<&str, &str, nom::error::Error<&str>>("inf"), tag_no_case("nan")))(input)
    {
        if !rest.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            let value = if word.eq_ignore_ascii_case("inf") { f64::INFINITY } else { f64::NAN };
            return Ok((rest, value));
        }
    }
    let (rest, text) = recognize(tuple((
        alt((recognize(pair(digit1, opt(pair(char('.'), opt(digit1))))), recognize(pair(char('.'), digit1)))),
        opt(tuple((alt((char('e'), char('E'))), opt(alt((char('+'), char('-')))), digit1))),
    )))(input)?;
    match text.parse::<f64>() {
        Ok(v) => Ok((rest, v)),
        Err(_) => Err(nom::Err::Error(nom::error::Error::new(input, nom::error::ErrorKind::Float))),
    }
}

/// Consumes a quoted string ('…', "…" with Go escapes, or `…` raw) and returns its value.
fn string_literal(input: &str) -> Result<(&str, String), String> {
    let mut chars = input.char_indices();
    let Some((_, quote)) = chars.next() else { return Err("unexpected end of input".into()) };
    if quote == '`' {
        return match input[1..].find('`') {
            Some(end) => Ok((&input[end + 2..], input[1..end + 1].to_string())),
            None => Err("unterminated raw string".into()),
        };
    }
    // Go strings are bytes: `\xNN` and octal escapes add raw bytes, and invalid UTF-8 ends up
    // as U+FFFD (which later fails label-name validation, as in Prometheus).
    let mut out: Vec<u8> = Vec::new();
    let mut buf = [0u8; 4];
    while let Some((i, c)) = chars.next() {
        if c == quote {
            return Ok((&input[i + 1..], String::from_utf8_lossy(&out).into_owned()));
        }
        if c == '\n' {
            return Err("unterminated quoted string".into());
        }
        if c != '\\' {
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        let Some((_, esc)) = chars.next() else { break };
        let simple = match esc {
            'a' => Some(b'\x07'),
            'b' => Some(b'\x08'),
            'f' => Some(b'\x0c'),
            'n' => Some(b'\n'),
            'r' => Some(b'\r'),
            't' => Some(b'\t'),
            'v' => Some(b'\x0b'),
            '\\' => Some(b'\\'),
            '\'' => Some(b'\''),
            '"' => Some(b'"'),
            _ => None,
        };
        if let Some(byte) = simple {
            out.push(byte);
            continue;
        }
        match esc {
            'x' | 'u' | 'U' => {
                let len = match esc {
                    'x' => 2,
                    'u' => 4,
                    _ => 8,
                };
                let mut code = 0u32;
                for _ in 0..len {
                    let digit = chars.next().and_then(|(_, d)| d.to_digit(16));
                    let Some(d) = digit else { return Err("invalid escape sequence in string".into()) };
                    code = code * 16 + d;
                }
                if esc == 'x' {
                    out.push(code as u8);
                } else {
                    match char::from_u32(code) {
                        Some(ch) => out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes()),
                        None => return Err("invalid Unicode code point in escape sequence".into()),
                    }
                }
            }
            '0'..='7' => {
                let mut code = esc.to_digit(8).unwrap_or(0);
                for _ in 0..2 {
                    let digit = chars.next().and_then(|(_, d)| d.to_digit(8));
                    let Some(d) = digit else { return Err("invalid escape sequence in string".into()) };
                    code = code * 8 + d;
                }
                if code > 255 {
                    return Err("invalid octal escape in string".into());
                }
                out.push(code as u8);
            }
            other => return Err(format!("unknown escape sequence '\\{other}'")),
        }
    }
    Err("unterminated quoted string".into())
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// Binary operator tokens, longest first.
const BINOP_TOKENS: &[(&str, BinOp)] = &[
    ("==", BinOp::Eq),
    ("!=", BinOp::Ne),
    (">=", BinOp::Ge),
    ("<=", BinOp::Le),
    ("+", BinOp::Add),
    ("-", BinOp::Sub),
    ("*", BinOp::Mul),
    ("/", BinOp::Div),
    ("%", BinOp::Mod),
    ("^", BinOp::Pow),
    (">", BinOp::Gt),
    ("<", BinOp::Lt),
];

struct Parser<'a> {
    src: &'a str,
}

impl<'a> Parser<'a> {
    fn pos(&self, rest: &str) -> usize {
        self.src.len() - rest.len()
    }

    fn err(&self, rest: &str, message: impl Into<String>) -> ParseError {
        ParseError { pos: self.pos(rest), message: message.into() }
    }

    fn unexpected(&self, rest: &str, context: &str) -> ParseError {
        let what = match rest.chars().next() {
            None => "end of input".to_string(),
            Some(c) if is_ident_char(c) => {
                let word: String = rest.chars().take_while(|c| is_ident_char(*c)).collect();
                format!("identifier {word:?}")
            }
            Some(c) => format!("character {c:?}"),
        };
        if context.is_empty() {
            self.err(rest, format!("unexpected {what}"))
        } else {
            self.err(rest, format!("unexpected {what} in {context}"))
        }
    }

    fn skip_ws(&self, input: &'a str) -> &'a str {
        match whitespace(input) {
            Ok((rest, _)) => rest,
            Err(_) => input,
        }
    }

    /// Consumes `token` after optional whitespace, or fails naming what was expected.
    fn expect(&self, input: &'a str, token: &str, context: &str) -> Result<&'a str, ParseError> {
        let rest = self.skip_ws(input);
        match rest.strip_prefix(token) {
            Some(after) => Ok(after),
            None => Err(self.unexpected(rest, &format!("{context}, expected \"{token}\""))),
        }
    }

    /// Consumes a keyword (case-insensitive, whole word) after optional whitespace.
    fn keyword(&self, input: &'a str, word: &str) -> Option<&'a str> {
        let rest = self.skip_ws(input);
        let (after, ident) = identifier(rest).ok()?;
        ident.eq_ignore_ascii_case(word).then_some(after)
    }

    /// Consumes a binary expression whose operators bind at least as tight as `min_prec`.
    fn expr(&self, input: &'a str, min_prec: u8, depth: usize) -> PResult<'a, Expr> {
        if depth > MAX_DEPTH {
            return Err(self.err(input, format!("expression nested too deeply (more than {MAX_DEPTH} levels)")));
        }
        let (mut rest, mut lhs) = self.unary(input, depth)?;
        // Each operator folded into `lhs` nests the tree one level deeper (a flat chain
        // `1+1+…+1` is a left-deep tree), so it counts against the same limit as parentheses:
        // the evaluator and the tree's drop recurse over that depth.
        let mut chain_depth = depth;
        while let Some((after_op, op)) = self.binop(rest) {
            if op.precedence() < min_prec {
                break;
            }
            chain_depth += 1;
            if chain_depth > MAX_DEPTH {
                return Err(self.err(
                    self.skip_ws(rest),
                    format!("expression nested too deeply (more than {MAX_DEPTH} levels, binary operators included)"),
                ));
            }
            let op_rest = self.skip_ws(rest);
            let (after_mods, (return_bool, matching)) = self.binop_modifiers(after_op, op)?;
            let next_prec = if op == BinOp::Pow { op.precedence() } else { op.precedence() + 1 };
            let (after_rhs, rhs) = self.expr(after_mods, next_prec, chain_depth)?;
            lhs = self.build_binary(op_rest, op, lhs, rhs, return_bool, matching)?;
            rest = after_rhs;
        }
        Ok((rest, lhs))
    }

    /// Consumes a binary operator token, if one follows.
    fn binop(&self, input: &'a str) -> Option<(&'a str, BinOp)> {
        let rest = self.skip_ws(input);
        for (token, op) in BINOP_TOKENS {
            if let Some(after) = rest.strip_prefix(token) {
                // `=~`/`!~` never appear between expressions; `!=` is handled as a token above.
                return Some((after, *op));
            }
        }
        let (after, word) = identifier(rest).ok()?;
        let op = match word.to_ascii_lowercase().as_str() {
            "and" => BinOp::And,
            "or" => BinOp::Or,
            "unless" => BinOp::Unless,
            "atan2" => BinOp::Atan2,
            _ => return None,
        };
        Some((after, op))
    }

    /// Consumes `bool`, `on(…)`/`ignoring(…)` and `group_left(…)`/`group_right(…)` after an operator.
    fn binop_modifiers(&self, input: &'a str, op: BinOp) -> PResult<'a, (bool, Option<VectorMatching>)> {
        let mut rest = input;
        let mut return_bool = false;
        if let Some(after) = self.keyword(rest, "bool") {
            if !op.is_comparison() {
                return Err(self.err(self.skip_ws(rest), "bool modifier can only be used on comparison operators"));
            }
            return_bool = true;
            rest = after;
        }
        let mut matching: Option<VectorMatching> = None;
        let on = self.keyword(rest, "on").map(|a| (a, true));
        let ignoring = self.keyword(rest, "ignoring").map(|a| (a, false));
        if let Some((after, is_on)) = on.or(ignoring) {
            let (after, labels) = self.label_list(after)?;
            matching = Some(VectorMatching { card: Cardinality::OneToOne, on: is_on, labels, include: Vec::new() });
            rest = after;
            let left = self.keyword(rest, "group_left").map(|a| (a, Cardinality::ManyToOne));
            let right = self.keyword(rest, "group_right").map(|a| (a, Cardinality::OneToMany));
            if let Some((after, card)) = left.or(right) {
                let group_pos = self.skip_ws(rest);
                if op.is_set() {
                    return Err(self.err(group_pos, format!("no grouping allowed for \"{}\" operation", op.as_str())));
                }
                rest = after;
                let mut include = Vec::new();
                if self.skip_ws(rest).starts_with('(') {
                    let (after, labels) = self.label_list(rest)?;
                    include = labels;
                    rest = after;
                }
                if let Some(m) = matching.as_mut() {
                    if m.on {
                        if let Some(dup) = include.iter().find(|l| m.labels.contains(l)) {
                            return Err(self.err(
                                group_pos,
                                format!("label \"{dup}\" must not occur in ON and GROUP clause at once"),
                            ));
                        }
                    }
                    m.card = card;
                    m.include = include;
                }
            }
        } else if self.keyword(rest, "group_left").is_some() || self.keyword(rest, "group_right").is_some() {
            return Err(self.unexpected(self.skip_ws(rest), "binary expression, grouping requires on() or ignoring()"));
        }
        Ok((rest, (return_bool, matching)))
    }

    fn build_binary(
        &self,
        op_rest: &str,
        op: BinOp,
        lhs: Expr,
        rhs: Expr,
        return_bool: bool,
        matching: Option<VectorMatching>,
    ) -> Result<Expr, ParseError> {
        let (lt, rt) = (lhs.value_type(), rhs.value_type());
        for t in [lt, rt] {
            if t != ValueType::Scalar && t != ValueType::Vector {
                return Err(self.err(op_rest, "binary expression must contain only scalar and instant vector types"));
            }
        }
        let both_vectors = lt == ValueType::Vector && rt == ValueType::Vector;
        if op.is_comparison() && !return_bool && lt == ValueType::Scalar && rt == ValueType::Scalar {
            return Err(self.err(op_rest, "comparisons between scalars must use BOOL modifier"));
        }
        if op.is_set() && !both_vectors {
            return Err(
                self.err(op_rest, format!("set operator \"{}\" not allowed in binary scalar expression", op.as_str()))
            );
        }
        if matching.is_some() && !both_vectors {
            return Err(self.err(op_rest, "vector matching only allowed between instant vectors"));
        }
        let matching = if both_vectors {
            let mut m = matching.unwrap_or(VectorMatching {
                card: Cardinality::OneToOne,
                on: false,
                labels: Vec::new(),
                include: Vec::new(),
            });
            if op.is_set() {
                m.card = Cardinality::ManyToMany;
            }
            Some(m)
        } else {
            None
        };
        Ok(Expr {
            pos: lhs.pos,
            kind: ExprKind::Binary { op, lhs: Box::new(lhs), rhs: Box::new(rhs), return_bool, matching },
        })
    }

    /// Consumes a unary `-`/`+` chain and its operand (which binds `^` tighter than the sign).
    fn unary(&self, input: &'a str, depth: usize) -> PResult<'a, Expr> {
        let rest = self.skip_ws(input);
        let sign = if rest.starts_with('-') {
            Some(true)
        } else if rest.starts_with('+') {
            Some(false)
        } else {
            None
        };
        let Some(negative) = sign else { return self.postfix(rest, depth) };
        if depth > MAX_DEPTH {
            return Err(self.err(rest, format!("expression nested too deeply (more than {MAX_DEPTH} levels)")));
        }
        let pos = self.pos(rest);
        let (after, operand) = self.expr(&rest[1..], BinOp::Pow.precedence(), depth + 1)?;
        let t = operand.value_type();
        if t != ValueType::Scalar && t != ValueType::Vector {
            return Err(ParseError {
                pos,
                message: format!(
                    "unary expression only allowed on expressions of type scalar or instant vector, got {t:?}"
                )
                .replace("Matrix", "\"range vector\"")
                .replace("String", "\"string\""),
            });
        }
        let expr = match (negative, operand.kind) {
            (true, ExprKind::Number(v)) => Expr { pos, kind: ExprKind::Number(-v) },
            (false, ExprKind::Number(v)) => Expr { pos, kind: ExprKind::Number(v) },
            (true, kind) => Expr { pos, kind: ExprKind::Neg(Box::new(Expr { pos: operand.pos, kind })) },
            (false, kind) => Expr { pos: operand.pos, kind },
        };
        Ok((after, expr))
    }

    /// Consumes a primary expression and its `[range]`, `[range:step]`, `offset` and `@` suffixes.
    fn postfix(&self, input: &'a str, depth: usize) -> PResult<'a, Expr> {
        let (mut rest, mut expr) = self.primary(input, depth)?;
        loop {
            let here = self.skip_ws(rest);
            if let Some(after) = here.strip_prefix('[') {
                let (after, e) = self.range_suffix(here, after, expr)?;
                expr = e;
                rest = after;
            } else if let Some(after) = self.keyword(here, "offset") {
                let (after, offset_ms) = self.signed_duration(after, "offset")?;
                expr = self.apply_offset(here, expr, offset_ms)?;
                rest = after;
            } else if let Some(after) = here.strip_prefix('@') {
                let (after, at) = self.at_value(after)?;
                expr = self.apply_at(here, expr, at)?;
                rest = after;
            } else {
                return Ok((rest, expr));
            }
        }
    }

    /// Consumes the inside of `[…]` after the `[`.
    fn range_suffix(&self, open: &'a str, input: &'a str, expr: Expr) -> PResult<'a, Expr> {
        let (rest, range_ms) = self.duration(input, "range")?;
        let rest = self.skip_ws(rest);
        if let Some(after) = rest.strip_prefix(':') {
            let after = self.skip_ws(after);
            let (after, step_ms) = if after.starts_with(']') {
                (after, None)
            } else {
                self.duration(after, "subquery step").map(|(r, s)| (r, Some(s)))?
            };
            let after = self.expect(after, "]", "subquery selector")?;
            if expr.value_type() != ValueType::Vector {
                return Err(self.err(
                    open,
                    format!("subquery is only allowed on instant vector, got {} instead", expr.value_type()),
                ));
            }
            if step_ms == Some(0) {
                return Err(self.err(open, "zero step is not allowed in a subquery"));
            }
            let pos = expr.pos;
            return Ok((
                after,
                Expr {
                    pos,
                    kind: ExprKind::Subquery { expr: Box::new(expr), range_ms, step_ms, offset_ms: 0, at: None },
                },
            ));
        }
        let rest = self.expect(rest, "]", "range selector")?;
        match expr.kind {
            ExprKind::Vector(selector) => {
                if selector.offset_ms != 0 || selector.at.is_some() {
                    return Err(self.err(open, "no offset or @ modifiers allowed before range"));
                }
                Ok((rest, Expr { pos: expr.pos, kind: ExprKind::Matrix { selector, range_ms } }))
            }
            _ => Err(self.err(open, "ranges only allowed for vector selectors")),
        }
    }

    fn apply_offset(&self, at: &str, mut expr: Expr, offset_ms: i64) -> Result<Expr, ParseError> {
        let slot = match &mut expr.kind {
            ExprKind::Vector(s) | ExprKind::Matrix { selector: s, .. } => &mut s.offset_ms,
            ExprKind::Subquery { offset_ms, .. } => offset_ms,
            _ => return Err(self.err(
                at,
                "offset modifier must be preceded by an instant vector selector or range vector selector or a subquery",
            )),
        };
        if *slot != 0 {
            return Err(self.err(at, "offset may not be set multiple times"));
        }
        *slot = offset_ms;
        Ok(expr)
    }

    fn apply_at(&self, pos: &str, mut expr: Expr, value: AtModifier) -> Result<Expr, ParseError> {
        let slot =
            match &mut expr.kind {
                ExprKind::Vector(s) | ExprKind::Matrix { selector: s, .. } => &mut s.at,
                ExprKind::Subquery { at, .. } => at,
                _ => return Err(self.err(
                    pos,
                    "@ modifier must be preceded by an instant vector selector or range vector selector or a subquery",
                )),
            };
        if slot.is_some() {
            return Err(self.err(pos, "@ <timestamp> may not be set multiple times"));
        }
        *slot = Some(value);
        Ok(expr)
    }

    /// Consumes the value after `@`: a (signed) Unix time in seconds, `start()` or `end()`.
    fn at_value(&self, input: &'a str) -> PResult<'a, AtModifier> {
        let rest = self.skip_ws(input);
        for (word, at) in [("start", AtModifier::Start), ("end", AtModifier::End)] {
            if let Some(after) = self.keyword(rest, word) {
                let after = self.expect(after, "(", "@ modifier")?;
                let after = self.expect(after, ")", "@ modifier")?;
                return Ok((after, at));
            }
        }
        let (negative, unsigned) = match rest.strip_prefix('-') {
            Some(r) => (true, self.skip_ws(r)),
            None => (false, self.skip_ws(rest.strip_prefix('+').unwrap_or(rest))),
        };
        let (after, seconds) = match duration_literal(unsigned) {
            Ok((after, ms)) => (after, ms as f64 / 1000.0),
            Err(_) => match number_literal(unsigned) {
                Ok(r) => r,
                Err(_) => return Err(self.unexpected(unsigned, "@ modifier, expected a timestamp")),
            },
        };
        let seconds = if negative { -seconds } else { seconds };
        if !seconds.is_finite() || seconds.abs() > 9.2e15 {
            return Err(self.err(unsigned, format!("timestamp out of bounds for @ modifier: {seconds}")));
        }
        Ok((after, AtModifier::Ms((seconds * 1000.0).round() as i64)))
    }

    /// Consumes a duration, or a plain number of seconds, for ranges and steps (must be > 0).
    fn duration(&self, input: &'a str, what: &str) -> PResult<'a, i64> {
        let rest = self.skip_ws(input);
        let (after, ms) = self.duration_or_seconds(rest, what)?;
        if ms <= 0 {
            return Err(self.err(rest, format!("{what} duration must be greater than 0")));
        }
        Ok((after, ms))
    }

    /// Consumes an optionally signed duration (offsets).
    fn signed_duration(&self, input: &'a str, what: &str) -> PResult<'a, i64> {
        let rest = self.skip_ws(input);
        let (negative, unsigned) = match rest.strip_prefix('-') {
            Some(r) => (true, self.skip_ws(r)),
            None => (false, self.skip_ws(rest.strip_prefix('+').unwrap_or(rest))),
        };
        let (after, ms) = self.duration_or_seconds(unsigned, what)?;
        Ok((after, if negative { -ms } else { ms }))
    }

    fn duration_or_seconds(&self, rest: &'a str, what: &str) -> PResult<'a, i64> {
        if let Ok((after, ms)) = duration_literal(rest) {
            return Ok((after, ms));
        }
        match number_literal(rest) {
            Ok((after, seconds)) if seconds.is_finite() && seconds.abs() < 9.2e15 => {
                Ok((after, (seconds * 1000.0).round() as i64))
            }
            _ => Err(self.unexpected(rest, &format!("{what}, expected a duration"))),
        }
    }

    /// Consumes `( label, … )` (names may be quoted).
    fn label_list(&self, input: &'a str) -> PResult<'a, Vec<String>> {
        let mut rest = self.expect(input, "(", "grouping opts")?;
        let mut labels = Vec::new();
        loop {
            rest = self.skip_ws(rest);
            if let Some(after) = rest.strip_prefix(')') {
                return Ok((after, labels));
            }
            let (after, name) = self.label_name(rest, "grouping opts")?;
            labels.push(name);
            rest = self.skip_ws(after);
            if let Some(after) = rest.strip_prefix(',') {
                rest = after;
            } else if !rest.starts_with(')') {
                return Err(self.unexpected(rest, "grouping opts, expected \",\" or \")\""));
            }
        }
    }

    fn label_name(&self, rest: &'a str, context: &str) -> PResult<'a, String> {
        if rest.starts_with(['"', '\'', '`']) {
            return string_literal(rest).map_err(|m| self.err(rest, m));
        }
        match identifier(rest) {
            Ok((after, name)) if !name.contains(':') => Ok((after, name.to_string())),
            _ => Err(self.unexpected(rest, &format!("{context}, expected label"))),
        }
    }

    /// Consumes a literal, selector, call, aggregation or parenthesised expression.
    fn primary(&self, input: &'a str, depth: usize) -> PResult<'a, Expr> {
        let rest = self.skip_ws(input);
        let pos = self.pos(rest);
        let Some(first) = rest.chars().next() else { return Err(self.unexpected(rest, "")) };
        match first {
            '(' => {
                let (after, inner) = self.expr(&rest[1..], 0, depth + 1)?;
                let after = self.expect(after, ")", "paren expression")?;
                Ok((after, Expr { pos, kind: ExprKind::Paren(Box::new(inner)) }))
            }
            '"' | '\'' | '`' => {
                let (after, value) = string_literal(rest).map_err(|m| self.err(rest, m))?;
                Ok((after, Expr { pos, kind: ExprKind::String(value) }))
            }
            '{' => {
                let (after, selector) = self.selector(rest, None)?;
                Ok((after, Expr { pos, kind: ExprKind::Vector(selector) }))
            }
            c if c.is_ascii_digit() || c == '.' => {
                if let Ok((after, ms)) = duration_literal(rest) {
                    if !after.starts_with('.') {
                        return Ok((after, Expr { pos, kind: ExprKind::Number(ms as f64 / 1000.0) }));
                    }
                }
                match number_literal(rest) {
                    Ok((after, v)) if !after.starts_with(|c: char| is_ident_char(c) || c == '.') => {
                        Ok((after, Expr { pos, kind: ExprKind::Number(v) }))
                    }
                    _ => Err(self.err(rest, "bad number or duration syntax")),
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => self.identifier_expr(rest, depth),
            _ => Err(self.unexpected(rest, "")),
        }
    }

    /// Consumes what starts with an identifier: number words, aggregations, calls, selectors.
    fn identifier_expr(&self, rest: &'a str, depth: usize) -> PResult<'a, Expr> {
        let pos = self.pos(rest);
        let (after, word) = identifier(rest).map_err(|_| self.unexpected(rest, ""))?;
        if let Ok((after_num, v)) = number_literal(rest) {
            if word.eq_ignore_ascii_case("inf") || word.eq_ignore_ascii_case("nan") {
                return Ok((after_num, Expr { pos, kind: ExprKind::Number(v) }));
            }
        }
        let next = self.skip_ws(after);
        if let Some(op) = AggOp::from_name(word) {
            let next_word = identifier(next).map(|(_, w)| w.to_ascii_lowercase()).unwrap_or_default();
            if next.starts_with('(') || next_word == "by" || next_word == "without" {
                return self.aggregation(after, op, pos, depth);
            }
        }
        if let Some(args_at) = next.strip_prefix('(') {
            return self.call(rest, word, args_at, pos, depth);
        }
        for kw in ["by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"] {
            if word.eq_ignore_ascii_case(kw) {
                return Err(self.unexpected(rest, ""));
            }
        }
        let (after, selector) = if next.starts_with('{') {
            self.selector(next, Some(word))?
        } else {
            (after, self.finish_selector(rest, Some(word.to_string()), Vec::new())?)
        };
        Ok((after, Expr { pos, kind: ExprKind::Vector(selector) }))
    }

    fn call(&self, name_at: &'a str, name: &str, args_at: &'a str, pos: usize, depth: usize) -> PResult<'a, Expr> {
        let Some(func) = functions::lookup(name) else {
            if let Some(why) = functions::unsupported_reason(name) {
                return Err(self.err(name_at, format!("function \"{name}\" is not supported by Ringtail: {why}")));
            }
            return Err(self.err(name_at, format!("unknown function with name \"{name}\"")));
        };
        let (rest, args) = self.arguments(args_at, depth, "function call arguments")?;
        let (min, max) = match func.optional_args {
            usize::MAX => (func.arg_types.len() - 1, usize::MAX),
            n => (func.arg_types.len() - n, func.arg_types.len()),
        };
        if args.len() < min || args.len() > max {
            let message = if min == max {
                format!("expected {} argument(s) in call to \"{}\", got {}", min, func.name, args.len())
            } else if args.len() < min {
                format!("expected at least {} argument(s) in call to \"{}\", got {}", min, func.name, args.len())
            } else {
                format!("expected at most {} argument(s) in call to \"{}\", got {}", max, func.name, args.len())
            };
            return Err(ParseError { pos, message });
        }
        for (i, arg) in args.iter().enumerate() {
            let want = func.arg_types[i.min(func.arg_types.len() - 1)];
            let got = arg.value_type();
            if want != got {
                return Err(ParseError {
                    pos: arg.pos,
                    message: format!("expected type {want} in call to function \"{}\", got {got}", func.name),
                });
            }
        }
        Ok((rest, Expr { pos, kind: ExprKind::Call { func, args } }))
    }

    /// Consumes `expr, expr, …)` (the opening parenthesis already read), a trailing comma allowed.
    fn arguments(&self, input: &'a str, depth: usize, context: &str) -> PResult<'a, Vec<Expr>> {
        let mut rest = input;
        let mut args = Vec::new();
        loop {
            let here = self.skip_ws(rest);
            if let Some(after) = here.strip_prefix(')') {
                return Ok((after, args));
            }
            let (after, arg) = self.expr(here, 0, depth + 1)?;
            args.push(arg);
            let after = self.skip_ws(after);
            if let Some(a) = after.strip_prefix(',') {
                rest = a;
            } else if !after.starts_with(')') {
                return Err(self.unexpected(after, &format!("{context}, expected \",\" or \")\"")));
            } else {
                rest = after;
            }
        }
    }

    fn aggregation(&self, input: &'a str, op: AggOp, pos: usize, depth: usize) -> PResult<'a, Expr> {
        let mut rest = input;
        let mut grouping = None;
        if let Some((after, g)) = self.grouping_clause(rest)? {
            grouping = Some(g);
            rest = after;
        }
        let rest = self.expect(rest, "(", "aggregation")?;
        let (mut rest, mut args) = self.arguments(rest, depth, "aggregation")?;
        if let Some((after, g)) = self.grouping_clause(rest)? {
            if grouping.is_some() {
                return Err(self.err(self.skip_ws(rest), "aggregation has more than one grouping clause"));
            }
            grouping = Some(g);
            rest = after;
        }
        let want = if op.param_type().is_some() { 2 } else { 1 };
        if args.len() != want {
            return Err(ParseError {
                pos,
                message: format!(
                    "wrong number of arguments for aggregate expression provided, expected {want}, got {}",
                    args.len()
                ),
            });
        }
        let expr = args.pop().ok_or_else(|| self.err(rest, "BUG: aggregation without argument"))?;
        let param = args.pop();
        if expr.value_type() != ValueType::Vector {
            return Err(ParseError {
                pos: expr.pos,
                message: format!("expected type instant vector in aggregation expression, got {}", expr.value_type()),
            });
        }
        if let (Some(p), Some(want)) = (&param, op.param_type()) {
            if p.value_type() != want {
                return Err(ParseError {
                    pos: p.pos,
                    message: format!("expected type {want} in aggregation parameter, got {}", p.value_type()),
                });
            }
        }
        let (without, grouping) = grouping.unwrap_or((false, Vec::new()));
        Ok((
            rest,
            Expr {
                pos,
                kind: ExprKind::Aggregate { op, param: param.map(Box::new), expr: Box::new(expr), grouping, without },
            },
        ))
    }

    /// Consumes `by (…)` or `without (…)` if present.
    fn grouping_clause(&self, input: &'a str) -> Result<Option<(&'a str, Grouping)>, ParseError> {
        for (word, without) in [("by", false), ("without", true)] {
            if let Some(after) = self.keyword(input, word) {
                let (after, labels) = self.label_list(after)?;
                return Ok(Some((after, (without, labels))));
            }
        }
        Ok(None)
    }

    /// Consumes `{ matcher, … }` (the metric name, if any, was already read).
    fn selector(&self, input: &'a str, name: Option<&str>) -> PResult<'a, VectorSelector> {
        let mut rest = self.expect(input, "{", "vector selector")?;
        let mut matchers = Vec::new();
        let mut name = name.map(str::to_string);
        loop {
            rest = self.skip_ws(rest);
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let (after, label) = self.label_name(rest, "label matching")?;
            let after = self.skip_ws(after);
            let quoted_name = rest.starts_with(['"', '\'', '`']);
            let op = [
                ("=~", MatchOp::RegexMatch),
                ("!~", MatchOp::RegexNoMatch),
                ("!=", MatchOp::NotEqual),
                ("=", MatchOp::Equal),
            ]
            .into_iter()
            .find(|(t, _)| after.starts_with(t));
            let after = match op {
                Some((token, op)) => {
                    let value_at = self.skip_ws(&after[token.len()..]);
                    if !value_at.starts_with(['"', '\'', '`']) {
                        return Err(self.unexpected(value_at, "label matching, expected string"));
                    }
                    let (after_value, value) = string_literal(value_at).map_err(|m| self.err(value_at, m))?;
                    let matcher = Matcher::new(op, label, value).map_err(|e| self.err(value_at, e.to_string()))?;
                    matchers.push(matcher);
                    after_value
                }
                None if quoted_name => {
                    if name.is_some() {
                        return Err(self.err(rest, format!("metric name must not be set twice: {label:?}")));
                    }
                    name = Some(label);
                    after
                }
                None => return Err(self.unexpected(after, "label matching, expected label matching operator")),
            };
            let after = self.skip_ws(after);
            if let Some(a) = after.strip_prefix(',') {
                rest = a;
            } else if after.starts_with('}') {
                rest = after;
            } else {
                return Err(self.unexpected(after, "label matching, expected \",\" or \"}\""));
            }
        }
        let selector = self.finish_selector(input, name, matchers)?;
        Ok((rest, selector))
    }

    fn finish_selector(
        &self,
        at: &str,
        name: Option<String>,
        mut matchers: Vec<Matcher>,
    ) -> Result<VectorSelector, ParseError> {
        if let Some(n) = &name {
            if matchers.iter().any(|m| m.name == METRIC_NAME) {
                return Err(self.err(at, format!("metric name must not be set twice: {n:?}")));
            }
            matchers.insert(0, Matcher::equal(METRIC_NAME, n.clone()));
        }
        if matchers.iter().all(|m| m.matches_empty()) {
            return Err(self.err(at, "vector selector must contain at least one non-empty matcher"));
        }
        let name = name.or_else(|| {
            matchers.iter().find(|m| m.name == METRIC_NAME && m.op == MatchOp::Equal).map(|m| m.value.clone())
        });
        Ok(VectorSelector { name, matchers, offset_ms: 0, at: None })
    }
}

/// Converts a byte offset in `query` to Prometheus's `line:column` (both 1-based).
pub fn line_col(query: &str, pos: usize) -> (usize, usize) {
    let before = &query[..pos.min(query.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map_or(before.len(), |i| before.len() - i - 1) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(q: &str) -> f64 {
        match parse(q).unwrap().unparen().kind {
            ExprKind::Number(v) => v,
            ref k => panic!("not a number: {k:?}"),
        }
    }

    #[test]
    fn number_forms() {
        assert_eq!(num("0x1f"), 31.0);
        assert_eq!(num("1e3"), 1000.0);
        assert_eq!(num(".5"), 0.5);
        assert_eq!(num("2."), 2.0);
        assert_eq!(num("-Inf"), f64::NEG_INFINITY);
        assert!(num("nan").is_nan());
        assert_eq!(num("1h30m"), 5400.0);
        assert_eq!(num("+0.2"), 0.2);
    }

    #[test]
    fn power_binds_tighter_than_unary_minus_and_is_right_associative() {
        let e = parse("-2^2").unwrap();
        assert!(matches!(e.kind, ExprKind::Neg(_)));
        let e = parse("2^3^2").unwrap();
        let ExprKind::Binary { rhs, .. } = e.kind else { panic!() };
        assert!(matches!(rhs.kind, ExprKind::Binary { op: BinOp::Pow, .. }));
    }

    #[test]
    fn precedence_of_set_and_comparison_operators() {
        let e = parse("a or b and c > 1 + 2 * 3").unwrap();
        let ExprKind::Binary { op, rhs, .. } = e.kind else { panic!() };
        assert_eq!(op, BinOp::Or);
        let ExprKind::Binary { op, rhs, .. } = rhs.kind else { panic!() };
        assert_eq!(op, BinOp::And);
        let ExprKind::Binary { op, rhs, .. } = rhs.kind else { panic!() };
        assert_eq!(op, BinOp::Gt);
        let ExprKind::Binary { op, .. } = rhs.kind else { panic!() };
        assert_eq!(op, BinOp::Add);
    }

    #[test]
    fn selectors_with_modifiers() {
        let e = parse("rate(http_requests_total{job=~\"api.*\", code!=\"500\"}[5m] offset -1m @ 100)").unwrap();
        let ExprKind::Call { args, .. } = e.kind else { panic!() };
        let ExprKind::Matrix { selector, range_ms } = &args[0].kind else { panic!() };
        assert_eq!(*range_ms, 300_000);
        assert_eq!(selector.offset_ms, -60_000);
        assert_eq!(selector.at, Some(AtModifier::Ms(100_000)));
        assert_eq!(selector.matchers.len(), 3);
        let e = parse("foo @ start() offset 5m").unwrap();
        let ExprKind::Vector(s) = e.kind else { panic!() };
        assert_eq!(s.at, Some(AtModifier::Start));
        assert!(parse("{__name__=~\"a|b\"}").is_ok());
        assert!(parse("{\"utf8.metric\", a=\"b\"}").is_ok());
    }

    #[test]
    fn subqueries_aggregations_and_matching() {
        assert!(matches!(parse("max_over_time(rate(x[1m])[5m:30s])").unwrap().kind, ExprKind::Call { .. }));
        assert!(matches!(parse("(a + b)[5m:]").unwrap().kind, ExprKind::Subquery { step_ms: None, .. }));
        let e = parse("sum(x) by (a, b)").unwrap();
        assert!(matches!(e.kind, ExprKind::Aggregate { ref grouping, without: false, .. } if grouping.len() == 2));
        assert!(parse("topk by (a) (3, x)").is_ok());
        assert!(parse("count_values(\"v\", x)").is_ok());
        let e = parse("a * on(x) group_left(y) b").unwrap();
        let ExprKind::Binary { matching: Some(m), .. } = e.kind else { panic!() };
        assert_eq!(m.card, Cardinality::ManyToOne);
        assert_eq!(m.include, vec!["y".to_string()]);
        assert!(parse("a > bool b").is_ok());
        assert!(parse("x # a comment\n + 1").is_ok());
    }

    #[test]
    fn strings_and_escapes() {
        let e = parse(r#""a\"b\n\x41\u00e9""#).unwrap();
        assert!(matches!(e.kind, ExprKind::String(ref s) if s == "a\"b\nAé"));
        let e = parse("`raw\\n`").unwrap();
        assert!(matches!(e.kind, ExprKind::String(ref s) if s == "raw\\n"));
    }

    #[test]
    fn errors_are_worded_like_prometheus() {
        let err = |q: &str| parse(q).unwrap_err().message;
        assert_eq!(err("foo(x)"), "unknown function with name \"foo\"");
        assert_eq!(
            err("histogram_count(x)"),
            "function \"histogram_count\" is not supported by Ringtail: it reads native histograms, which Ringtail \
             does not store"
        );
        assert!(err("limitk(2, x)").contains("newer than Prometheus 2.42"));
        assert_eq!(err("rate(x)"), "expected type range vector in call to function \"rate\", got instant vector");
        assert_eq!(err("1 > 2"), "comparisons between scalars must use BOOL modifier");
        assert_eq!(err("{a=\"\"}"), "vector selector must contain at least one non-empty matcher");
        assert_eq!(err("sum(x[5m])"), "expected type instant vector in aggregation expression, got range vector");
        assert_eq!(err("1 and x"), "set operator \"and\" not allowed in binary scalar expression");
        assert!(parse("(1").is_err());
        assert!(parse("1)").is_err());
        assert!(parse("").is_err());
        assert!(parse("x{a=~\"(\"}").is_err());
    }

    #[test]
    fn deep_nesting_fails_cleanly() {
        let deep = format!("{}1{}", "(".repeat(10_000), ")".repeat(10_000));
        assert!(parse(&deep).unwrap_err().message.contains("nested too deeply"));
        let unary = "-".repeat(10_000) + "1";
        assert!(parse(&unary).is_err());
        let fine = format!("{}1{}", "(".repeat(100), ")".repeat(100));
        assert!(parse(&fine).is_ok());
    }

    /// Regression: a flat chain of 3000 `+` (a 6 KB GET) built a 3000-deep tree whose evaluation
    /// overflowed a worker's stack and aborted the process; chains now count as nesting.
    #[test]
    fn long_operator_chains_of_every_kind_fail_cleanly() {
        let operators =
            ["+", "-", "*", "/", "%", "^", "==", "!=", ">", "<", ">=", "<=", "== bool", "and", "or", "unless"];
        for op in operators {
            let terms = vec!["up"; 100_000];
            let chain = terms.join(&format!(" {op} "));
            let error = parse(&chain).expect_err(op);
            assert!(error.message.contains("nested too deeply"), "{op}: {}", error.message);
            let short = vec!["up"; 100].join(&format!(" {op} "));
            assert!(parse(&short).is_ok(), "{op}: a 100-term chain parses");
        }
        let mixed: String = (0..50_000).map(|i| if i % 2 == 0 { "1 + " } else { "(1) * " }).collect::<String>() + "1";
        assert!(parse(&mixed).unwrap_err().message.contains("nested too deeply"));
    }

    /// Every other nesting kind at 100 000 levels: calls, aggregations, parentheses, unary minus
    /// and subqueries each count against the same limit (none may overflow the stack).
    #[test]
    fn hundred_thousand_deep_nesting_of_every_kind_fails_cleanly() {
        const N: usize = 100_000;
        let nested = |open: &str, inner: &str, close: &str| format!("{}{inner}{}", open.repeat(N), close.repeat(N));
        let cases = [
            ("calls", nested("abs(", "up", ")")),
            ("aggregations", nested("sum(", "up", ")")),
            ("aggregations with grouping", nested("sum by (a) (", "up", ")")),
            ("parentheses", nested("(", "up", ")")),
            ("unary minus", nested("-", "up", "")),
            ("unary minus in parentheses", nested("-(", "up", ")")),
            ("range functions over subqueries", nested("max_over_time((", "up", ")[5m:])")),
            ("calls with chains", nested("abs(up + ", "up", ")")),
        ];
        for (kind, query) in cases {
            let error = parse(&query).expect_err(kind);
            assert!(error.message.contains("nested too deeply"), "{kind}: {}", error.message);
        }
        assert!(parse(&format!("{}up{}", "abs(".repeat(100), ")".repeat(100))).is_ok(), "100 nested calls parse");
    }

    #[test]
    fn positions_are_line_and_column() {
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("histogram_quantile(0.8, series)", 24), (1, 25));
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_arbitrary_input(s in "\\PC{0,64}") {
            let _ = parse(&s);
        }

        #[test]
        fn never_panics_on_promql_like_input(s in "[a-z(){}\\[\\]\"=~!,:@0-9.+\\-*/^ ]{0,48}") {
            let _ = parse(&s);
        }
    }
}
