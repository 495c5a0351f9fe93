//! `parse` is the text → nodes half of [`Template`](super::Template): it splits the source at the
//! `<<`/`>>` delimiters (applying trim markers, dropping comments), parses `if`/`range`/`with`
//! blocks into [`Node`]s, and lexes and parses each action's pipeline.

use super::{Node, Operand, Pipeline, TemplateError, BUILTINS};

/// Parses `source` into its nodes, rejecting a stray `<<end>>` or `<<else>>`.
pub(super) fn parse_template(source: &str) -> Result<Vec<Node>, TemplateError> {
    let pieces = split_actions(source)?;
    let mut pos = 0;
    let (nodes, end) = parse_nodes(source, &pieces, &mut pos)?;
    if let Some((keyword, offset)) = end {
        return Err(parse_err(source, offset, &format!("unexpected <<{keyword}>>")));
    }
    Ok(nodes)
}

/// A piece of the source: literal text or an action's inner text, with its byte offset.
enum Piece {
    Text(String),
    Action(String, usize),
}

/// Splits the source at `<<`/`>>`, applying trim markers and dropping comments.
fn split_actions(source: &str) -> Result<Vec<Piece>, TemplateError> {
    let mut pieces = Vec::new();
    let mut rest = 0;
    let mut trim_next_text = false;
    while let Some(found) = source[rest..].find("<<") {
        let open = rest + found;
        let mut text = &source[rest..open];
        if trim_next_text {
            text = text.trim_start();
        }
        let mut inner_start = open + 2;
        let trim_left = source[inner_start..].starts_with("- ");
        if trim_left {
            text = text.trim_end();
            inner_start += 2;
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text.to_string()));
        }
        let close = find_action_end(source, inner_start)
            .ok_or_else(|| parse_err(source, open, "unclosed action: no matching >>"))?;
        let mut inner_end = close;
        trim_next_text = source[..close].ends_with(" -") && close - 2 >= inner_start;
        if trim_next_text {
            inner_end -= 2;
        }
        let inner = source[inner_start..inner_end].trim();
        if !(inner.starts_with("/*") && inner.ends_with("*/")) {
            pieces.push(Piece::Action(inner.to_string(), inner_start));
        }
        rest = close + 2;
    }
    let mut text = &source[rest..];
    if trim_next_text {
        text = text.trim_start();
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text.to_string()));
    }
    Ok(pieces)
}

/// The offset of the `>>` closing an action, skipping quoted strings.
fn find_action_end(source: &str, from: usize) -> Option<usize> {
    let bytes = source.as_bytes();
    let mut i = from;
    while i + 1 < bytes.len() {
        match bytes[i] {
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    if bytes[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'`' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'`' {
                    i += 1;
                }
            }
            b'>' if bytes[i + 1] == b'>' => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

fn parse_err(source: &str, offset: usize, message: &str) -> TemplateError {
    TemplateError::Parse { template: source.to_string(), offset, message: message.to_string() }
}

type BlockEnd = Option<(String, usize)>;

/// Parses nodes until `end`/`else` (returned, with its text) or the end of input.
fn parse_nodes(source: &str, pieces: &[Piece], pos: &mut usize) -> Result<(Vec<Node>, BlockEnd), TemplateError> {
    let mut nodes = Vec::new();
    while *pos < pieces.len() {
        let piece = &pieces[*pos];
        *pos += 1;
        let (action, offset) = match piece {
            Piece::Text(text) => {
                nodes.push(Node::Text(text.clone()));
                continue;
            }
            Piece::Action(action, offset) => (action.as_str(), *offset),
        };
        let (keyword, rest) = match action.split_once(char::is_whitespace) {
            Some((k, r)) => (k, r.trim()),
            None => (action, ""),
        };
        match keyword {
            "end" => return Ok((nodes, Some(("end".into(), offset)))),
            "else" => return Ok((nodes, Some((format!("else {rest}").trim().to_string(), offset)))),
            "if" => nodes.push(parse_if(source, pieces, pos, rest, offset)?),
            "range" | "with" => {
                let pipe = parse_pipeline(source, rest, offset)?;
                if keyword == "with" && !pipe.decl.is_empty() && pipe.decl.len() != 1 {
                    return Err(parse_err(source, offset, "with takes at most one variable"));
                }
                let (body, end) = parse_nodes(source, pieces, pos)?;
                let otherwise = match end {
                    Some((ref k, _)) if k == "end" => Vec::new(),
                    Some((ref k, o)) if k == "else" => {
                        let (otherwise, end) = parse_nodes(source, pieces, pos)?;
                        expect_end(source, end, o)?;
                        otherwise
                    }
                    Some((k, o)) => return Err(parse_err(source, o, &format!("unexpected <<{k}>> in {keyword}"))),
                    None => return Err(parse_err(source, offset, &format!("{keyword} without end"))),
                };
                nodes.push(if keyword == "range" {
                    Node::Range { pipe, body, otherwise }
                } else {
                    Node::With { pipe, body, otherwise }
                });
            }
            "define" | "template" | "block" | "break" | "continue" => {
                return Err(parse_err(source, offset, &format!("<<{keyword}>> is not supported")))
            }
            _ => nodes.push(Node::Action(parse_pipeline(source, action, offset)?)),
        }
    }
    Ok((nodes, None))
}

fn expect_end(source: &str, end: BlockEnd, offset: usize) -> Result<(), TemplateError> {
    match end {
        Some((k, _)) if k == "end" => Ok(()),
        Some((k, o)) => Err(parse_err(source, o, &format!("unexpected <<{k}>>, expected <<end>>"))),
        None => Err(parse_err(source, offset, "missing <<end>>")),
    }
}

/// Parses the rest of an `if` after its condition, including `else if` chains.
fn parse_if(source: &str, pieces: &[Piece], pos: &mut usize, cond: &str, offset: usize) -> Result<Node, TemplateError> {
    let cond = parse_pipeline(source, cond, offset)?;
    let (then, end) = parse_nodes(source, pieces, pos)?;
    let otherwise = match end {
        Some((k, _)) if k == "end" => Vec::new(),
        Some((k, o)) if k == "else" => {
            let (otherwise, end) = parse_nodes(source, pieces, pos)?;
            expect_end(source, end, o)?;
            otherwise
        }
        Some((k, o)) if k.starts_with("else if ") => vec![parse_if(source, pieces, pos, &k["else if ".len()..], o)?],
        Some((k, o)) => return Err(parse_err(source, o, &format!("unexpected <<{k}>> in if"))),
        None => return Err(parse_err(source, offset, "if without end")),
    };
    Ok(Node::If { cond, then, otherwise })
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Dot(Vec<String>),
    Var(String, Vec<String>),
    Ident(String),
    Str(String),
    Int(i64),
    Open,
    Close(Vec<String>),
    Pipe,
    Declare,
    Comma,
}

fn lex_action(source: &str, text: &str, offset: usize) -> Result<Vec<Tok>, TemplateError> {
    let bytes = text.as_bytes();
    let mut toks = Vec::new();
    let mut i = 0;
    let fields = |i: &mut usize| -> Vec<String> {
        let mut out = Vec::new();
        while *i < bytes.len() && bytes[*i] == b'.' {
            let start = *i + 1;
            let mut j = start;
            while j < bytes.len() && (bytes[j].is_ascii_alphanumeric() || bytes[j] == b'_') {
                j += 1;
            }
            if j == start {
                break;
            }
            out.push(text[start..j].to_string());
            *i = j;
        }
        out
    };
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'(' => {
                toks.push(Tok::Open);
                i += 1;
            }
            b')' => {
                i += 1;
                toks.push(Tok::Close(fields(&mut i)));
            }
            b'|' => {
                toks.push(Tok::Pipe);
                i += 1;
            }
            b',' => {
                toks.push(Tok::Comma);
                i += 1;
            }
            b':' if bytes.get(i + 1) == Some(&b'=') => {
                toks.push(Tok::Declare);
                i += 2;
            }
            b'.' => {
                let f = fields(&mut i);
                if f.is_empty() {
                    i += 1; // bare `.`
                }
                toks.push(Tok::Dot(f));
            }
            b'$' => {
                let start = i;
                i += 1;
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                let name = text[start..i].to_string();
                toks.push(Tok::Var(name, fields(&mut i)));
            }
            b'"' => {
                let mut value = String::new();
                i += 1;
                loop {
                    match bytes.get(i) {
                        None => return Err(parse_err(source, offset + i, "unterminated string")),
                        Some(b'"') => break,
                        Some(b'\\') => {
                            let escaped = bytes.get(i + 1).copied();
                            value.push(match escaped {
                                Some(b'n') => '\n',
                                Some(b't') => '\t',
                                Some(b'\\') => '\\',
                                Some(b'"') => '"',
                                _ => return Err(parse_err(source, offset + i, "unsupported escape in string")),
                            });
                            i += 2;
                        }
                        Some(_) => {
                            let ch = text[i..].chars().next().unwrap_or('\u{fffd}');
                            value.push(ch);
                            i += ch.len_utf8();
                        }
                    }
                }
                i += 1;
                toks.push(Tok::Str(value));
            }
            b'`' => {
                let end =
                    text[i + 1..].find('`').ok_or_else(|| parse_err(source, offset + i, "unterminated raw string"))?;
                toks.push(Tok::Str(text[i + 1..i + 1 + end].to_string()));
                i += end + 2;
            }
            b'0'..=b'9' | b'-' => {
                let start = i;
                i += 1;
                while i < bytes.len() && bytes[i].is_ascii_digit() {
                    i += 1;
                }
                let n = text[start..i]
                    .parse()
                    .map_err(|_| parse_err(source, offset + start, "unsupported number literal"))?;
                toks.push(Tok::Int(n));
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                toks.push(Tok::Ident(text[start..i].to_string()));
            }
            _ => return Err(parse_err(source, offset + i, &format!("unexpected character {:?}", c as char))),
        }
    }
    Ok(toks)
}

fn parse_pipeline(source: &str, text: &str, offset: usize) -> Result<Pipeline, TemplateError> {
    let toks = lex_action(source, text, offset)?;
    let mut pos = 0;
    let pipe = parse_pipe_tokens(source, &toks, &mut pos, offset, true)?;
    if pos != toks.len() {
        return Err(parse_err(source, offset, "unexpected tokens after pipeline"));
    }
    Ok(pipe)
}

fn parse_pipe_tokens(
    source: &str,
    toks: &[Tok],
    pos: &mut usize,
    offset: usize,
    allow_decl: bool,
) -> Result<Pipeline, TemplateError> {
    let mut decl = Vec::new();
    if allow_decl {
        // `$x :=` or `$i, $v :=`
        let mut probe = *pos;
        let mut names = Vec::new();
        while let Some(Tok::Var(name, fields)) = toks.get(probe) {
            if !fields.is_empty() {
                break;
            }
            names.push(name.clone());
            probe += 1;
            match toks.get(probe) {
                Some(Tok::Comma) => probe += 1,
                Some(Tok::Declare) => {
                    decl = names.clone();
                    *pos = probe + 1;
                    break;
                }
                _ => break,
            }
        }
        if decl.len() > 2 {
            return Err(parse_err(source, offset, "too many declarations"));
        }
    }
    let mut commands = Vec::new();
    let mut current = Vec::new();
    while let Some(tok) = toks.get(*pos) {
        match tok {
            Tok::Pipe => {
                if current.is_empty() {
                    return Err(parse_err(source, offset, "missing command before |"));
                }
                commands.push(std::mem::take(&mut current));
                *pos += 1;
                continue;
            }
            Tok::Close(_) => break,
            Tok::Open => {
                *pos += 1;
                let inner = parse_pipe_tokens(source, toks, pos, offset, false)?;
                match toks.get(*pos) {
                    Some(Tok::Close(fields)) => current.push(Operand::Paren(Box::new(inner), fields.clone())),
                    _ => return Err(parse_err(source, offset, "unclosed (")),
                }
            }
            Tok::Dot(fields) => current.push(Operand::Dot(fields.clone())),
            Tok::Var(name, fields) => current.push(Operand::Var(name.clone(), fields.clone())),
            Tok::Str(s) => current.push(Operand::Str(s.clone())),
            Tok::Int(n) => current.push(Operand::Int(*n)),
            Tok::Ident(name) => current.push(match name.as_str() {
                "true" => Operand::Bool(true),
                "false" => Operand::Bool(false),
                f if BUILTINS.contains(&f) => Operand::Func(f.to_string()),
                other => return Err(parse_err(source, offset, &format!("function {other:?} not defined"))),
            }),
            Tok::Declare | Tok::Comma => return Err(parse_err(source, offset, "unexpected := or ,")),
        }
        *pos += 1;
    }
    if current.is_empty() {
        return Err(parse_err(source, offset, "missing value for command"));
    }
    commands.push(current);
    Ok(Pipeline { decl, commands })
}

#[cfg(test)]
mod tests {
    use super::super::tests::render;
    use super::super::Template;

    #[test]
    fn trim_markers_and_comments() {
        assert_eq!(render("a  <<- .GroupBy ->>  b<</* note */>>"), "apod,containerb");
    }

    #[test]
    fn errors_are_reported_not_ignored() {
        assert!(Template::parse("<<.Series").is_err());
        assert!(Template::parse("<<if .Series>>x").is_err());
        assert!(Template::parse("<<end>>").is_err());
        assert!(Template::parse("<<join .GroupBySlice \",\">>").is_err());
        assert!(Template::parse("<<template \"x\">>").is_err());
    }

    #[test]
    fn promql_comparison_operators_are_plain_text() {
        assert_eq!(render("<<.Series>> > 0 and x < 3"), "http_requests_total > 0 and x < 3");
    }
}
