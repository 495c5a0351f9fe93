//! `Expr` is the typed PromQL syntax tree the parser produces and the evaluator walks.
//!
//! Every node carries the byte offset where it starts in the query (`pos`), so annotations and
//! errors can name the position the way Prometheus does (`line:column`).

use std::fmt;
use tsdb::Matcher;

/// The four PromQL value types, named as Prometheus's error messages name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    Scalar,
    Vector,
    Matrix,
    String,
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ValueType::Scalar => "scalar",
            ValueType::Vector => "instant vector",
            ValueType::Matrix => "range vector",
            ValueType::String => "string",
        })
    }
}

/// A node with its start offset in the query text.
#[derive(Debug, Clone)]
pub struct Expr {
    pub pos: usize,
    pub kind: ExprKind,
}

/// `@` modifier target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AtModifier {
    /// Fixed time in milliseconds since the epoch.
    Ms(i64),
    /// `@ start()`: the start of the query range.
    Start,
    /// `@ end()`: the end of the query range.
    End,
}

/// `name{matchers} offset d @ t`.
#[derive(Debug, Clone)]
pub struct VectorSelector {
    pub name: Option<String>,
    /// All matchers, the metric name included as an `__name__` equality matcher.
    pub matchers: Vec<Matcher>,
    pub offset_ms: i64,
    pub at: Option<AtModifier>,
}

/// Binary operators, in PromQL spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    /// `atan2`: the arc tangent of `lhs / rhs`, an arithmetic operator binding like `*`.
    Atan2,
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    And,
    Or,
    Unless,
}

impl BinOp {
    pub fn is_comparison(self) -> bool {
        matches!(self, BinOp::Eq | BinOp::Ne | BinOp::Gt | BinOp::Lt | BinOp::Ge | BinOp::Le)
    }

    pub fn is_set(self) -> bool {
        matches!(self, BinOp::And | BinOp::Or | BinOp::Unless)
    }

    /// Binding strength: higher binds tighter (Prometheus's grammar precedence).
    pub fn precedence(self) -> u8 {
        match self {
            BinOp::Or => 1,
            BinOp::And | BinOp::Unless => 2,
            BinOp::Eq | BinOp::Ne | BinOp::Gt | BinOp::Lt | BinOp::Ge | BinOp::Le => 3,
            BinOp::Add | BinOp::Sub => 4,
            BinOp::Mul | BinOp::Div | BinOp::Mod | BinOp::Atan2 => 5,
            BinOp::Pow => 6,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Mod => "%",
            BinOp::Pow => "^",
            BinOp::Atan2 => "atan2",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Gt => ">",
            BinOp::Lt => "<",
            BinOp::Ge => ">=",
            BinOp::Le => "<=",
            BinOp::And => "and",
            BinOp::Or => "or",
            BinOp::Unless => "unless",
        }
    }
}

/// How series on the two sides of a vector operation pair up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cardinality {
    OneToOne,
    ManyToOne,
    OneToMany,
    ManyToMany,
}

/// `on(…)`/`ignoring(…)` and `group_left(…)`/`group_right(…)`.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorMatching {
    pub card: Cardinality,
    /// `true` for `on`, `false` for `ignoring` (or no clause).
    pub on: bool,
    pub labels: Vec<String>,
    /// Extra labels copied from the "one" side (`group_left(include…)`).
    pub include: Vec<String>,
}

/// Aggregation operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggOp {
    Sum,
    Avg,
    Min,
    Max,
    Count,
    Group,
    Stddev,
    Stdvar,
    Topk,
    Bottomk,
    Quantile,
    CountValues,
}

impl AggOp {
    /// Folds each group's values into one number without a parameter (`sum avg min max count
    /// group stddev stdvar`): the result depends on the values and the grouping labels only.
    pub fn is_plain_fold(self) -> bool {
        matches!(
            self,
            AggOp::Sum
                | AggOp::Avg
                | AggOp::Min
                | AggOp::Max
                | AggOp::Count
                | AggOp::Group
                | AggOp::Stddev
                | AggOp::Stdvar
        )
    }

    pub fn from_name(name: &str) -> Option<AggOp> {
        Some(match name.to_ascii_lowercase().as_str() {
            "sum" => AggOp::Sum,
            "avg" => AggOp::Avg,
            "min" => AggOp::Min,
            "max" => AggOp::Max,
            "count" => AggOp::Count,
            "group" => AggOp::Group,
            "stddev" => AggOp::Stddev,
            "stdvar" => AggOp::Stdvar,
            "topk" => AggOp::Topk,
            "bottomk" => AggOp::Bottomk,
            "quantile" => AggOp::Quantile,
            "count_values" => AggOp::CountValues,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AggOp::Sum => "sum",
            AggOp::Avg => "avg",
            AggOp::Min => "min",
            AggOp::Max => "max",
            AggOp::Count => "count",
            AggOp::Group => "group",
            AggOp::Stddev => "stddev",
            AggOp::Stdvar => "stdvar",
            AggOp::Topk => "topk",
            AggOp::Bottomk => "bottomk",
            AggOp::Quantile => "quantile",
            AggOp::CountValues => "count_values",
        }
    }

    /// The type of the parameter, for the operators that take one.
    pub fn param_type(self) -> Option<ValueType> {
        match self {
            AggOp::Topk | AggOp::Bottomk | AggOp::Quantile => Some(ValueType::Scalar),
            AggOp::CountValues => Some(ValueType::String),
            _ => None,
        }
    }
}

/// The node kinds.
#[derive(Debug, Clone)]
pub enum ExprKind {
    Number(f64),
    String(String),
    Vector(VectorSelector),
    Matrix {
        selector: VectorSelector,
        range_ms: i64,
    },
    Subquery {
        expr: Box<Expr>,
        range_ms: i64,
        /// `None` when written `[5m:]`: the engine's default step applies.
        step_ms: Option<i64>,
        offset_ms: i64,
        at: Option<AtModifier>,
    },
    Paren(Box<Expr>),
    /// Unary minus (unary plus is dropped by the parser, as Prometheus does).
    Neg(Box<Expr>),
    Binary {
        op: BinOp,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
        return_bool: bool,
        matching: Option<VectorMatching>,
    },
    Aggregate {
        op: AggOp,
        param: Option<Box<Expr>>,
        expr: Box<Expr>,
        grouping: Vec<String>,
        without: bool,
    },
    Call {
        func: &'static crate::functions::Function,
        args: Vec<Expr>,
    },
}

impl Expr {
    /// The type this expression evaluates to.
    pub fn value_type(&self) -> ValueType {
        match &self.kind {
            ExprKind::Number(_) => ValueType::Scalar,
            ExprKind::String(_) => ValueType::String,
            ExprKind::Vector(_) => ValueType::Vector,
            ExprKind::Matrix { .. } | ExprKind::Subquery { .. } => ValueType::Matrix,
            ExprKind::Paren(e) | ExprKind::Neg(e) => e.value_type(),
            ExprKind::Binary { lhs, rhs, .. } => {
                if lhs.value_type() == ValueType::Scalar && rhs.value_type() == ValueType::Scalar {
                    ValueType::Scalar
                } else {
                    ValueType::Vector
                }
            }
            ExprKind::Aggregate { .. } => ValueType::Vector,
            ExprKind::Call { func, .. } => func.return_type,
        }
    }

    /// Strips parentheses.
    pub fn unparen(&self) -> &Expr {
        match &self.kind {
            ExprKind::Paren(inner) => inner.unparen(),
            _ => self,
        }
    }

    /// Calls `visit` on this node and every descendant, parents first.
    pub fn walk<'a>(&'a self, visit: &mut dyn FnMut(&'a Expr)) {
        visit(self);
        match &self.kind {
            ExprKind::Number(_) | ExprKind::String(_) | ExprKind::Vector(_) | ExprKind::Matrix { .. } => {}
            ExprKind::Subquery { expr, .. } | ExprKind::Paren(expr) | ExprKind::Neg(expr) => expr.walk(visit),
            ExprKind::Binary { lhs, rhs, .. } => {
                lhs.walk(visit);
                rhs.walk(visit);
            }
            ExprKind::Aggregate { param, expr, .. } => {
                if let Some(p) = param {
                    p.walk(visit);
                }
                expr.walk(visit);
            }
            ExprKind::Call { args, .. } => args.iter().for_each(|a| a.walk(visit)),
        }
    }
}
