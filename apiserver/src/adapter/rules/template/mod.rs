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
//!
//! The work is split by phase: `parse` turns the text into [`Node`]s, `exec` runs the nodes
//! against a [`TemplateValue`]; this module holds what both share and the API the rules use.

mod exec;
mod parse;

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

/// The functions a pipeline may name; `parse` rejects any other, `exec` implements each.
const BUILTINS: &[&str] =
    &["and", "or", "not", "len", "index", "eq", "ne", "lt", "le", "gt", "ge", "print", "printf", "println"];

impl Template {
    /// Parses `source` with `<<`/`>>` delimiters.
    pub(crate) fn parse(source: &str) -> Result<Template, TemplateError> {
        let nodes = parse::parse_template(source)?;
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

    /// Whether the top-level `field` is read only by top-level `<<.field>>` prints (no function,
    /// conditional or variable sees it, nor `.`/`$` as a whole), so the output holds its value
    /// verbatim and depends on it nowhere else. Reads inside `range`/`with` bodies count too.
    pub(crate) fn prints_field_only_plainly(&self, field: &str) -> bool {
        self.nodes.iter().all(|node| match node {
            Node::Action(Pipeline { decl, commands })
                if decl.is_empty()
                    && matches!(commands.as_slice(), [command]
                        if matches!(command.as_slice(), [Operand::Dot(fields)] if fields.len() == 1)) =>
            {
                true
            }
            node => !node_may_read(node, field),
        })
    }

    /// Executes the template against `data` (bound to `.` and `$`).
    pub(crate) fn render(&self, data: &TemplateValue) -> Result<String, TemplateError> {
        exec::render(&self.source, &self.nodes, data)
    }
}

/// Whether `node` may read `field` (conservatively: any `.field`/`$x.field`, and any whole `.`/`$x`).
fn node_may_read(node: &Node, field: &str) -> bool {
    fn pipe_reads(pipe: &Pipeline, field: &str) -> bool {
        pipe.commands.iter().flatten().any(|op| match op {
            Operand::Dot(fields) | Operand::Var(_, fields) => fields.first().is_none_or(|f| f == field),
            Operand::Paren(inner, _) => pipe_reads(inner, field),
            _ => false,
        })
    }
    let any = |nodes: &[Node]| nodes.iter().any(|n| node_may_read(n, field));
    match node {
        Node::Text(_) => false,
        Node::Action(pipe) => pipe_reads(pipe, field),
        Node::If { cond, then, otherwise } => pipe_reads(cond, field) || any(then) || any(otherwise),
        Node::Range { pipe, body, otherwise } | Node::With { pipe, body, otherwise } => {
            pipe_reads(pipe, field) || any(body) || any(otherwise)
        }
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
#[cfg(test)]
mod tests {
    use super::*;

    /// The arguments prometheus-adapter passes to a metrics query template.
    pub(super) fn adapter_args() -> TemplateValue {
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

    pub(super) fn render(source: &str) -> String {
        Template::parse(source).unwrap().render(&adapter_args()).unwrap()
    }

    #[test]
    fn renders_the_standard_fields() {
        assert_eq!(
            render("sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)"),
            "sum(rate(http_requests_total{pod=~\"a|b\",namespace=\"ns\"}[2m])) by (pod,container)"
        );
    }

    #[test]
    fn root_fields_are_listed_for_validation() {
        let t = Template::parse("<<.Series>><<range .GroupBySlice>><<.>><<end>><<.Nope>>").unwrap();
        assert_eq!(t.root_fields(), vec!["GroupBySlice", "Nope", "Series"]);
    }
}
