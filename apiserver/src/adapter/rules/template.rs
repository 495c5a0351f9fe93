//! `Template` is the subset of Go's `text/template` that prometheus-adapter configs use, with its
//! `<<` / `>>` delimiters: field and map access (`<<.Series>>`, `<<.LabelValuesByName.pod>>`),
//! variables (`<<$>>`, `<<$v>>`, `<<$x := …>>`), `if`/`else if`/`else`, `range` (with `$i, $v :=`
//! and `else`), `with`, pipelines (`|`), parentheses, comments (`<</* … */>>`), trim markers
//! (`<<-` and `->>`), and the builtins `and or not len index eq ne lt le gt ge print printf
//! println`. Anything else is a parse error naming what is unsupported, never silently ignored.
//!
//! Semantics follow Go: empty strings, lists and maps, `0` and `false` are false; a missing map
//! key prints `<no value>`; a missing field of the top-level object is an error (it is a struct
//! in prometheus-adapter).

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// A value a template can read.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TemplateValue {
    Str(String),
    Int(i64),
    Bool(bool),
    List(Vec<TemplateValue>),
    /// A map; `struct` says whether a missing key is an error (Go struct) or `<no value>` (Go map).
    Map {
        entries: BTreeMap<String, TemplateValue>,
        is_struct: bool,
    },
    /// Go's invalid value (a missing map key).
    Missing,
}

impl TemplateValue {
    /// A struct-like value: reading a field it lacks is an error.
    pub(crate) fn object(fields: impl IntoIterator<Item = (&'static str, TemplateValue)>) -> Self {
        TemplateValue::Map { entries: fields.into_iter().map(|(k, v)| (k.to_string(), v)).collect(), is_struct: true }
    }

    /// A map-like value: reading a key it lacks gives `<no value>`.
    pub(crate) fn map(entries: BTreeMap<String, TemplateValue>) -> Self {
        TemplateValue::Map { entries, is_struct: false }
    }

    pub(crate) fn str(text: impl Into<String>) -> Self {
        TemplateValue::Str(text.into())
    }

    pub(crate) fn list_of_str<S: Into<String>>(items: impl IntoIterator<Item = S>) -> Self {
        TemplateValue::List(items.into_iter().map(|s| TemplateValue::Str(s.into())).collect())
    }

    fn truthy(&self) -> bool {
        match self {
            TemplateValue::Str(s) => !s.is_empty(),
            TemplateValue::Int(i) => *i != 0,
            TemplateValue::Bool(b) => *b,
            TemplateValue::List(l) => !l.is_empty(),
            TemplateValue::Map { entries, .. } => !entries.is_empty(),
            TemplateValue::Missing => false,
        }
    }

    /// Appends the value as Go's `fmt.Print` would.
    fn print_to(&self, out: &mut String) {
        match self {
            TemplateValue::Str(s) => out.push_str(s),
            TemplateValue::Int(i) => {
                let _ = write!(out, "{i}");
            }
            TemplateValue::Bool(b) => {
                let _ = write!(out, "{b}");
            }
            TemplateValue::List(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    item.print_to(out);
                }
                out.push(']');
            }
            TemplateValue::Map { entries, .. } => {
                out.push_str("map[");
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    out.push_str(k);
                    out.push(':');
                    v.print_to(out);
                }
                out.push(']');
            }
            TemplateValue::Missing => out.push_str("<no value>"),
        }
    }

    fn printed(&self) -> String {
        let mut out = String::new();
        self.print_to(&mut out);
        out
    }
}

/// Why a template could not be parsed or executed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("template {template:?}: parse error at byte {offset}: {message}")]
    Parse { template: String, offset: usize, message: String },
    #[error("template {template:?}: {message}")]
    Exec { template: String, message: String },
}

/// A parsed template.
#[derive(Debug, Clone)]
pub(crate) struct Template {
    source: String,
    nodes: Vec<Node>,
}

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Action(Pipeline),
    If { cond: Pipeline, then: Vec<Node>, otherwise: Vec<Node> },
    Range { pipe: Pipeline, body: Vec<Node>, otherwise: Vec<Node> },
    With { pipe: Pipeline, body: Vec<Node>, otherwise: Vec<Node> },
}

#[derive(Debug, Clone)]
struct Pipeline {
    /// Variables declared with `:=` (one, or two for `range $i, $v :=`).
    decl: Vec<String>,
    commands: Vec<Vec<Operand>>,
}

#[derive(Debug, Clone)]
enum Operand {
    /// `.` followed by zero or more field names.
    Dot(Vec<String>),
    /// `$name` followed by zero or more field names (`$` alone is the root).
    Var(String, Vec<String>),
    Str(String),
    Int(i64),
    Bool(bool),
    Func(String),
    Paren(Box<Pipeline>, Vec<String>),
}

const BUILTINS: &[&str] =
    &["and", "or", "not", "len", "index", "eq", "ne", "lt", "le", "gt", "ge", "print", "printf", "println"];

impl Template {
    /// Parses `source` with `<<`/`>>` delimiters.
    pub(crate) fn parse(source: &str) -> Result<Template, TemplateError> {
        let pieces = split_actions(source)?;
        let mut pos = 0;
        let (nodes, end) = parse_nodes(source, &pieces, &mut pos)?;
        if let Some((keyword, offset)) = end {
            return Err(parse_err(source, offset, &format!("unexpected <<{keyword}>>")));
        }
        Ok(Template { source: source.to_string(), nodes })
    }

    /// The template text as written.
    pub(crate) fn source(&self) -> &str {
        &self.source
    }

    /// Top-level fields the template reads from `.` or `$` (for validating a config at load).
    pub(crate) fn root_fields(&self) -> Vec<String> {
        let mut out = Vec::new();
        collect_fields(&self.nodes, &mut out);
        out.sort();
        out.dedup();
        out
    }

    /// Whether the template is text and prints of top-level fields only (`<<.Series>>`: no
    /// functions, pipelines, conditionals, loops or variables), so that its output depends on a
    /// field only where that field is printed.
    pub(crate) fn is_plain_field_prints(&self) -> bool {
        self.nodes.iter().all(|node| match node {
            Node::Text(_) => true,
            Node::Action(Pipeline { decl, commands }) => {
                decl.is_empty()
                    && matches!(commands.as_slice(), [command]
                        if matches!(command.as_slice(), [Operand::Dot(fields)] if fields.len() == 1))
            }
            _ => false,
        })
    }

    /// Executes the template against `data` (bound to `.` and `$`).
    pub(crate) fn render(&self, data: &TemplateValue) -> Result<String, TemplateError> {
        let mut exec = Exec { template: &self.source, vars: vec![("$".to_string(), data.clone())], out: String::new() };
        exec.nodes(&self.nodes, data)?;
        Ok(exec.out)
    }
}

fn collect_fields(nodes: &[Node], out: &mut Vec<String>) {
    fn from_pipe(pipe: &Pipeline, out: &mut Vec<String>) {
        for cmd in &pipe.commands {
            for op in cmd {
                match op {
                    Operand::Dot(fields) | Operand::Var(_, fields) if !fields.is_empty() => out.push(fields[0].clone()),
                    Operand::Paren(inner, _) => from_pipe(inner, out),
                    _ => {}
                }
            }
        }
    }
    for node in nodes {
        match node {
            Node::Text(_) => {}
            Node::Action(p) => from_pipe(p, out),
            // Inside range/with, `.` is rebound: only the pipeline itself reads the root.
            Node::If { cond, then, otherwise } => {
                from_pipe(cond, out);
                collect_fields(then, out);
                collect_fields(otherwise, out);
            }
            Node::Range { pipe, otherwise, .. } | Node::With { pipe, otherwise, .. } => {
                from_pipe(pipe, out);
                collect_fields(otherwise, out);
            }
        }
    }
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

struct Exec<'a> {
    template: &'a str,
    vars: Vec<(String, TemplateValue)>,
    out: String,
}

impl Exec<'_> {
    fn err(&self, message: impl Into<String>) -> TemplateError {
        TemplateError::Exec { template: self.template.to_string(), message: message.into() }
    }

    fn nodes(&mut self, nodes: &[Node], dot: &TemplateValue) -> Result<(), TemplateError> {
        for node in nodes {
            let mark = self.vars.len();
            match node {
                Node::Text(text) => self.out.push_str(text),
                Node::Action(pipe) => {
                    let value = self.pipeline(pipe, dot)?;
                    if pipe.decl.is_empty() {
                        value.print_to(&mut self.out);
                    } else {
                        // A declaration stays visible to the rest of the enclosing block.
                        self.bind(&pipe.decl, value);
                        continue;
                    }
                }
                Node::If { cond, then, otherwise } => {
                    let value = self.pipeline(cond, dot)?;
                    self.bind(&cond.decl, value.clone());
                    self.nodes(if value.truthy() { then } else { otherwise }, dot)?;
                }
                Node::With { pipe, body, otherwise } => {
                    let value = self.pipeline(pipe, dot)?;
                    if value.truthy() {
                        self.bind(&pipe.decl, value.clone());
                        self.nodes(body, &value)?;
                    } else {
                        self.nodes(otherwise, dot)?;
                    }
                }
                Node::Range { pipe, body, otherwise } => {
                    let value = self.pipeline(pipe, dot)?;
                    let items: Vec<(TemplateValue, TemplateValue)> = match value {
                        TemplateValue::List(items) => {
                            items.into_iter().enumerate().map(|(i, v)| (TemplateValue::Int(i as i64), v)).collect()
                        }
                        TemplateValue::Map { entries, .. } => {
                            entries.into_iter().map(|(k, v)| (TemplateValue::Str(k), v)).collect()
                        }
                        TemplateValue::Int(n) => {
                            (0..n.max(0)).map(|i| (TemplateValue::Int(i), TemplateValue::Int(i))).collect()
                        }
                        TemplateValue::Missing => Vec::new(),
                        other => return Err(self.err(format!("range can't iterate over {}", other.printed()))),
                    };
                    if items.is_empty() {
                        self.nodes(otherwise, dot)?;
                    }
                    for (key, item) in items {
                        let inner = self.vars.len();
                        match pipe.decl.as_slice() {
                            [v] => self.vars.push((v.clone(), item.clone())),
                            [k, v] => {
                                self.vars.push((k.clone(), key));
                                self.vars.push((v.clone(), item.clone()));
                            }
                            _ => {}
                        }
                        self.nodes(body, &item)?;
                        self.vars.truncate(inner);
                    }
                }
            }
            self.vars.truncate(mark);
        }
        Ok(())
    }

    fn bind(&mut self, decl: &[String], value: TemplateValue) {
        if let Some(name) = decl.last() {
            self.vars.push((name.clone(), value));
        }
    }

    fn pipeline(&mut self, pipe: &Pipeline, dot: &TemplateValue) -> Result<TemplateValue, TemplateError> {
        let mut previous: Option<TemplateValue> = None;
        for cmd in &pipe.commands {
            previous = Some(self.command(cmd, dot, previous.take())?);
        }
        previous.ok_or_else(|| self.err("empty pipeline"))
    }

    fn command(
        &mut self,
        cmd: &[Operand],
        dot: &TemplateValue,
        piped: Option<TemplateValue>,
    ) -> Result<TemplateValue, TemplateError> {
        let Some((first, rest)) = cmd.split_first() else { return Err(self.err("empty command")) };
        if let Operand::Func(name) = first {
            let mut args = Vec::with_capacity(rest.len() + 1);
            for arg in rest {
                args.push(self.operand(arg, dot)?);
            }
            args.extend(piped);
            return self.call(name, args);
        }
        if !rest.is_empty() || piped.is_some() {
            return Err(self.err("can't give arguments to a non-function"));
        }
        self.operand(first, dot)
    }

    fn operand(&mut self, op: &Operand, dot: &TemplateValue) -> Result<TemplateValue, TemplateError> {
        match op {
            Operand::Dot(fields) => self.fields(dot.clone(), fields),
            Operand::Var(name, fields) => {
                let value = self
                    .vars
                    .iter()
                    .rev()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.clone())
                    .ok_or_else(|| self.err(format!("undefined variable {name:?}")))?;
                self.fields(value, fields)
            }
            Operand::Str(s) => Ok(TemplateValue::Str(s.clone())),
            Operand::Int(n) => Ok(TemplateValue::Int(*n)),
            Operand::Bool(b) => Ok(TemplateValue::Bool(*b)),
            Operand::Func(name) => self.call(name, Vec::new()),
            Operand::Paren(pipe, fields) => {
                let value = self.pipeline(pipe, dot)?;
                self.fields(value, fields)
            }
        }
    }

    fn fields(&self, mut value: TemplateValue, fields: &[String]) -> Result<TemplateValue, TemplateError> {
        for field in fields {
            value = match value {
                TemplateValue::Map { mut entries, is_struct } => match entries.remove(field) {
                    Some(v) => v,
                    None if is_struct => return Err(self.err(format!("can't evaluate field {field}"))),
                    None => TemplateValue::Missing,
                },
                other => {
                    return Err(self.err(format!("can't evaluate field {field} in {}", other.printed())));
                }
            };
        }
        Ok(value)
    }

    fn call(&self, name: &str, args: Vec<TemplateValue>) -> Result<TemplateValue, TemplateError> {
        let arity = |n: usize| -> Result<(), TemplateError> {
            if args.len() == n {
                Ok(())
            } else {
                Err(self.err(format!("wrong number of args for {name}: want {n} got {}", args.len())))
            }
        };
        Ok(match name {
            "and" => {
                let mut last = TemplateValue::Bool(true);
                for a in args {
                    let stop = !a.truthy();
                    last = a;
                    if stop {
                        break;
                    }
                }
                last
            }
            "or" => {
                let mut last = TemplateValue::Bool(false);
                for a in args {
                    let stop = a.truthy();
                    last = a;
                    if stop {
                        break;
                    }
                }
                last
            }
            "not" => {
                arity(1)?;
                TemplateValue::Bool(!args[0].truthy())
            }
            "len" => {
                arity(1)?;
                TemplateValue::Int(match &args[0] {
                    TemplateValue::Str(s) => s.len() as i64,
                    TemplateValue::List(l) => l.len() as i64,
                    TemplateValue::Map { entries, .. } => entries.len() as i64,
                    other => return Err(self.err(format!("len of {}", other.printed()))),
                })
            }
            "index" => {
                let mut it = args.into_iter();
                let mut value = it.next().ok_or_else(|| self.err("index needs a value"))?;
                for key in it {
                    value = match (value, key) {
                        (TemplateValue::List(l), TemplateValue::Int(i)) => usize::try_from(i)
                            .ok()
                            .and_then(|i| l.into_iter().nth(i))
                            .ok_or_else(|| self.err(format!("index {i} out of range")))?,
                        (TemplateValue::Map { mut entries, .. }, TemplateValue::Str(k)) => {
                            entries.remove(&k).unwrap_or(TemplateValue::Missing)
                        }
                        (v, k) => return Err(self.err(format!("can't index {} with {}", v.printed(), k.printed()))),
                    };
                }
                value
            }
            "eq" | "ne" | "lt" | "le" | "gt" | "ge" => {
                if args.len() < 2 {
                    return Err(self.err(format!("{name} needs two arguments")));
                }
                let ordering = |a: &TemplateValue, b: &TemplateValue| match (a, b) {
                    (TemplateValue::Int(x), TemplateValue::Int(y)) => Ok(x.cmp(y)),
                    (TemplateValue::Str(x), TemplateValue::Str(y)) => Ok(x.cmp(y)),
                    (TemplateValue::Bool(x), TemplateValue::Bool(y)) if matches!(name, "eq" | "ne") => Ok(x.cmp(y)),
                    _ => Err(self.err(format!("incompatible types for comparison in {name}"))),
                };
                let result = match name {
                    // Go's eq accepts several right-hand values: true if any is equal.
                    "eq" => {
                        let mut any = false;
                        for b in &args[1..] {
                            any |= ordering(&args[0], b)?.is_eq();
                        }
                        any
                    }
                    "ne" => !ordering(&args[0], &args[1])?.is_eq(),
                    "lt" => ordering(&args[0], &args[1])?.is_lt(),
                    "le" => ordering(&args[0], &args[1])?.is_le(),
                    "gt" => ordering(&args[0], &args[1])?.is_gt(),
                    _ => ordering(&args[0], &args[1])?.is_ge(),
                };
                TemplateValue::Bool(result)
            }
            "print" | "println" => {
                let mut out = String::new();
                for (i, a) in args.iter().enumerate() {
                    // Go's Print adds spaces between operands when neither is a string.
                    let both_non_str =
                        i > 0 && !matches!(a, TemplateValue::Str(_)) && !matches!(args[i - 1], TemplateValue::Str(_));
                    if name == "println" && i > 0 || both_non_str && name == "print" {
                        out.push(' ');
                    }
                    a.print_to(&mut out);
                }
                if name == "println" {
                    out.push('\n');
                }
                TemplateValue::Str(out)
            }
            "printf" => {
                let mut it = args.into_iter();
                let Some(TemplateValue::Str(format)) = it.next() else {
                    return Err(self.err("printf needs a format string"));
                };
                let mut out = String::new();
                let mut chars = format.chars();
                while let Some(c) = chars.next() {
                    if c != '%' {
                        out.push(c);
                        continue;
                    }
                    match chars.next() {
                        Some('%') => out.push('%'),
                        Some('s') | Some('v') | Some('d') => match it.next() {
                            Some(v) => v.print_to(&mut out),
                            None => out.push_str("%!(MISSING)"),
                        },
                        Some('q') => match it.next() {
                            Some(v) => {
                                let _ = write!(out, "{:?}", v.printed());
                            }
                            None => out.push_str("%!(MISSING)"),
                        },
                        other => return Err(self.err(format!("printf verb %{} not supported", other.unwrap_or(' ')))),
                    }
                }
                TemplateValue::Str(out)
            }
            other => return Err(self.err(format!("function {other:?} not defined"))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> TemplateValue {
        let mut by_name = BTreeMap::new();
        by_name.insert("pod".to_string(), TemplateValue::str("a|b"));
        TemplateValue::object([
            ("Series", TemplateValue::str("http_requests_total")),
            ("LabelMatchers", TemplateValue::str("pod=~\"a|b\",namespace=\"ns\"")),
            ("GroupBy", TemplateValue::str("pod,container")),
            ("GroupBySlice", TemplateValue::list_of_str(["pod", "container"])),
            ("LabelValuesByName", TemplateValue::map(by_name)),
        ])
    }

    fn render(source: &str) -> String {
        Template::parse(source).unwrap().render(&args()).unwrap()
    }

    #[test]
    fn renders_the_standard_fields() {
        assert_eq!(
            render("sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)"),
            "sum(rate(http_requests_total{pod=~\"a|b\",namespace=\"ns\"}[2m])) by (pod,container)"
        );
    }

    #[test]
    fn range_with_index_and_separator() {
        assert_eq!(
            render("by (<<range $i, $v := .GroupBySlice>><<if $i>>, <<end>><<$v>><<end>>)"),
            "by (pod, container)"
        );
        assert_eq!(render("<<range .GroupBySlice>>[<<.>>]<<else>>none<<end>>"), "[pod][container]");
        assert_eq!(render("<<range $v := .GroupBySlice>><<$v>>;<<end>>"), "pod;container;");
    }

    #[test]
    fn maps_index_and_missing_keys() {
        assert_eq!(render("<<.LabelValuesByName.pod>>"), "a|b");
        assert_eq!(render("<<index .LabelValuesByName \"pod\">>"), "a|b");
        assert_eq!(render("<<.LabelValuesByName.nope>>"), "<no value>");
        assert_eq!(render("<<index .GroupBySlice 1>>"), "container");
        assert_eq!(render("<<len .GroupBySlice>>"), "2");
        assert_eq!(render("<<.GroupBySlice>>"), "[pod container]");
    }

    #[test]
    fn conditionals_and_comparisons() {
        assert_eq!(
            render("<<if eq .Series \"x\">>x<<else if eq .Series \"http_requests_total\">>y<<else>>z<<end>>"),
            "y"
        );
        assert_eq!(render("<<if and .Series (not .LabelValuesByName.nope)>>ok<<end>>"), "ok");
        assert_eq!(render("<<with .GroupBy>><<.>><<end>>"), "pod,container");
        assert_eq!(render("<<$s := .Series>><<$s>>!"), "http_requests_total!");
        assert_eq!(render("<<.Series | printf \"%s_rate\">>"), "http_requests_total_rate");
        assert_eq!(render("<<printf \"%s-%d\" .Series 3>>"), "http_requests_total-3");
    }

    #[test]
    fn trim_markers_and_comments() {
        assert_eq!(render("a  <<- .GroupBy ->>  b<</* note */>>"), "apod,containerb");
    }

    #[test]
    fn root_fields_are_listed_for_validation() {
        let t = Template::parse("<<.Series>><<range .GroupBySlice>><<.>><<end>><<.Nope>>").unwrap();
        assert_eq!(t.root_fields(), vec!["GroupBySlice", "Nope", "Series"]);
    }

    #[test]
    fn errors_are_reported_not_ignored() {
        assert!(Template::parse("<<.Series").is_err());
        assert!(Template::parse("<<if .Series>>x").is_err());
        assert!(Template::parse("<<end>>").is_err());
        assert!(Template::parse("<<join .GroupBySlice \",\">>").is_err());
        assert!(Template::parse("<<template \"x\">>").is_err());
        let t = Template::parse("<<.Nope>>").unwrap();
        assert!(t.render(&args()).is_err());
    }

    #[test]
    fn promql_comparison_operators_are_plain_text() {
        assert_eq!(render("<<.Series>> > 0 and x < 3"), "http_requests_total > 0 and x < 3");
    }
}
