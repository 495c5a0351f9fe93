//! `exec` is the nodes + data → text half of [`Template`](super::Template): `Exec` walks the
//! parsed [`Node`]s with Go's scoping of `.` and variables, and implements the builtins.

use super::{Node, Operand, Pipeline, TemplateError, TemplateValue};
use std::fmt::Write as _;

/// Executes `nodes` (parsed from `template`) against `data`, bound to `.` and `$`.
pub(super) fn render(template: &str, nodes: &[Node], data: &TemplateValue) -> Result<String, TemplateError> {
    let mut exec = Exec { template, vars: vec![("$".to_string(), data.clone())], out: String::new() };
    exec.nodes(nodes, data)?;
    Ok(exec.out)
}

/// One execution: the variables in scope (innermost last) and the text written so far.
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
    use super::super::tests::{adapter_args, render};
    use super::super::Template;

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
    fn a_missing_field_of_the_top_level_object_is_an_error() {
        let t = Template::parse("<<.Nope>>").unwrap();
        assert!(t.render(&adapter_args()).is_err());
    }
}
