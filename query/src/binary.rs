//! `eval_binary` is PromQL's binary operators on one step's values: scalar/scalar, vector/scalar
//! and vector/vector with `on`/`ignoring` matching, `group_left`/`group_right`, `bool`, and the set
//! operators `and or unless` (Prometheus's `VectorBinop`, `VectorscalarBinop`, `VectorAnd/Or/Unless`).

use crate::ast::{BinOp, Cardinality, VectorMatching};
use crate::eval::{Sample, Val};
use crate::QueryError;
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use tsdb::Labels;

/// Applies `op` to two floats: `(value, keep)`. Comparisons return the left value and whether the
/// comparison holds; arithmetic always keeps.
#[inline]
pub(crate) fn apply(op: BinOp, l: f64, r: f64) -> (f64, bool) {
    match op {
        BinOp::Add => (l + r, true),
        BinOp::Sub => (l - r, true),
        BinOp::Mul => (l * r, true),
        BinOp::Div => (l / r, true),
        BinOp::Mod => (l % r, true),
        BinOp::Pow => (l.powf(r), true),
        BinOp::Atan2 => (l.atan2(r), true),
        BinOp::Eq => (l, l == r),
        BinOp::Ne => (l, l != r),
        BinOp::Gt => (l, l > r),
        BinOp::Lt => (l, l < r),
        BinOp::Ge => (l, l >= r),
        BinOp::Le => (l, l <= r),
        BinOp::And | BinOp::Or | BinOp::Unless => (l, true),
    }
}

/// Evaluates one binary operation on already evaluated operands.
pub(crate) fn eval_binary(
    op: BinOp,
    lhs: Val,
    rhs: Val,
    return_bool: bool,
    matching: Option<&VectorMatching>,
) -> Result<Val, QueryError> {
    match (lhs, rhs) {
        (Val::Scalar(l), Val::Scalar(r)) => {
            let (v, keep) = apply(op, l, r);
            Ok(Val::Scalar(if op.is_comparison() { f64::from(u8::from(keep)) } else { v }))
        }
        (Val::Vector(v), Val::Scalar(s)) => Ok(Val::Vector(vector_scalar(op, v, s, false, return_bool))),
        (Val::Scalar(s), Val::Vector(v)) => Ok(Val::Vector(vector_scalar(op, v, s, true, return_bool))),
        (Val::Vector(l), Val::Vector(r)) => {
            let default = VectorMatching { card: Cardinality::ManyToMany, on: false, labels: vec![], include: vec![] };
            let matching = matching.unwrap_or(&default);
            match op {
                BinOp::And => Ok(Val::Vector(set_and_unless(l, &r, matching, true))),
                BinOp::Unless => Ok(Val::Vector(set_and_unless(l, &r, matching, false))),
                BinOp::Or => Ok(Val::Vector(set_or(l, r, matching))),
                _ => vector_vector(op, l, r, return_bool, matching).map(Val::Vector),
            }
        }
        _ => Err(QueryError::Execution("binary expression must contain only scalar and instant vector types".into())),
    }
}

fn vector_scalar(op: BinOp, mut vector: Vec<Sample>, scalar: f64, swap: bool, return_bool: bool) -> Vec<Sample> {
    vector.retain_mut(|s| {
        let (l, r) = if swap { (scalar, s.value) } else { (s.value, scalar) };
        let (mut value, mut keep) = apply(op, l, r);
        if op.is_comparison() && swap {
            // The vector element's own value is the result even when the scalar is on the left.
            value = r;
        }
        if return_bool {
            value = f64::from(u8::from(keep));
            keep = true;
        }
        if keep {
            s.value = value;
            if !op.is_comparison() || return_bool {
                s.drop_name = true;
            }
        }
        keep
    });
    vector
}

/// The hash of the labels a matching clause looks at (`on`: the listed ones; otherwise all but
/// the listed ones and `__name__`).
fn signature(labels: &Labels, matching: &VectorMatching) -> u64 {
    let mut h = crate::label_keys::label_hasher();
    for l in labels.iter() {
        let listed = matching.labels.contains(&l.name);
        let include = if matching.on { listed } else { !listed && l.name != tsdb::METRIC_NAME };
        if include {
            l.name.hash(&mut h);
            l.value.hash(&mut h);
        }
    }
    h.finish()
}

fn set_and_unless(lhs: Vec<Sample>, rhs: &[Sample], matching: &VectorMatching, keep_matches: bool) -> Vec<Sample> {
    let sigs: HashSet<u64> = rhs.iter().map(|s| signature(&s.labels, matching)).collect();
    lhs.into_iter().filter(|s| sigs.contains(&signature(&s.labels, matching)) == keep_matches).collect()
}

fn set_or(mut lhs: Vec<Sample>, rhs: Vec<Sample>, matching: &VectorMatching) -> Vec<Sample> {
    let sigs: HashSet<u64> = lhs.iter().map(|s| signature(&s.labels, matching)).collect();
    lhs.extend(rhs.into_iter().filter(|s| !sigs.contains(&signature(&s.labels, matching))));
    lhs
}

/// Renders labels as Prometheus's `labels.String()`: `{__name__="x", a="b"}`.
pub(crate) fn labels_string(labels: &Labels) -> String {
    let parts: Vec<String> = labels.iter().map(|l| format!("{}={:?}", l.name, l.value)).collect();
    format!("{{{}}}", parts.join(", "))
}

fn match_labels(labels: &Labels, matching: &VectorMatching) -> Labels {
    Labels::from_sorted(
        labels
            .iter()
            .filter(|l| {
                let listed = matching.labels.contains(&l.name);
                if matching.on {
                    listed
                } else {
                    !listed && l.name != tsdb::METRIC_NAME
                }
            })
            .cloned()
            .collect(),
    )
}

fn vector_vector(
    op: BinOp,
    lhs: Vec<Sample>,
    rhs: Vec<Sample>,
    return_bool: bool,
    matching: &VectorMatching,
) -> Result<Vec<Sample>, QueryError> {
    let swapped = matching.card == Cardinality::OneToMany;
    let (many, one) = if swapped { (rhs, lhs) } else { (lhs, rhs) };
    let mut one_by_sig: HashMap<u64, usize> = HashMap::with_capacity_and_hasher(one.len(), Default::default());
    for (i, s) in one.iter().enumerate() {
        let sig = signature(&s.labels, matching);
        if let Some(&prev) = one_by_sig.get(&sig) {
            let side = if swapped { "left" } else { "right" };
            let mut pair = [labels_string(&one[prev].labels), labels_string(&s.labels)];
            pair.sort();
            return Err(QueryError::Execution(format!(
                "found duplicate series for the match group {} on the {side} hand-side of the operation: [{}, {}];\
                 many-to-many matching not allowed: matching labels must be unique on one side",
                labels_string(&match_labels(&s.labels, matching)),
                pair[0],
                pair[1]
            )));
        }
        one_by_sig.insert(sig, i);
    }
    // One-to-one: the match groups already matched. Otherwise each result's match group and
    // label set (one table for the step, sized for it, not one per group). A result without
    // `group_left` / `group_right` labels is its many-side series' label set (names are removed
    // only when the step is finished), and those of one vector are distinct: nothing to check.
    let check_results = matching.card != Cardinality::OneToOne && !matching.include.is_empty();
    let mut matched_groups: HashSet<u64> = HashSet::default();
    let mut matched_results: crate::label_keys::LabelSet<(u64, Arc<Labels>)> = Default::default();
    if matching.card == Cardinality::OneToOne {
        matched_groups.reserve(many.len());
    } else if check_results {
        matched_results.reserve(many.len());
    }
    let mut out = Vec::with_capacity(many.len());
    for s in many {
        let sig = signature(&s.labels, matching);
        let Some(&oi) = one_by_sig.get(&sig) else { continue };
        let other = &one[oi];
        let (l, r) = if swapped { (other.value, s.value) } else { (s.value, other.value) };
        let (mut value, keep) = apply(op, l, r);
        // Cardinality errors are raised even for pairs a comparison filters out.
        let labels = result_labels(&s.labels, &other.labels, matching);
        match matching.card {
            Cardinality::OneToOne => {
                if !matched_groups.insert(sig) {
                    return Err(QueryError::Execution(
                        "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)"
                            .into(),
                    ));
                }
            }
            _ if !check_results => {}
            _ => {
                if !matched_results.insert((sig, labels.clone())) {
                    return Err(QueryError::Execution(
                        "multiple matches for labels: grouping labels must ensure unique matches".into(),
                    ));
                }
            }
        }
        if return_bool {
            value = f64::from(u8::from(keep));
        } else if !keep {
            continue;
        }
        let drop_name = return_bool || !op.is_comparison() || s.drop_name;
        out.push(Sample { labels, value, drop_name });
    }
    Ok(out)
}

fn result_labels(many: &Arc<Labels>, one: &Labels, matching: &VectorMatching) -> Arc<Labels> {
    match matching.card {
        Cardinality::OneToOne if matching.on => {
            Arc::new(Labels::from_sorted(many.iter().filter(|l| matching.labels.contains(&l.name)).cloned().collect()))
        }
        Cardinality::OneToOne if !matching.labels.is_empty() => {
            Arc::new(Labels::from_sorted(many.iter().filter(|l| !matching.labels.contains(&l.name)).cloned().collect()))
        }
        Cardinality::ManyToOne | Cardinality::OneToMany if !matching.include.is_empty() => {
            let mut labels = (**many).clone();
            for name in &matching.include {
                labels.set(name, one.get(name).unwrap_or(""));
            }
            Arc::new(labels)
        }
        _ => many.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(pairs: &[(&str, &str)], value: f64) -> Sample {
        Sample { labels: Arc::new(Labels::from_pairs(pairs.iter().copied())), value, drop_name: false }
    }

    #[test]
    fn comparison_with_scalar_on_the_left_keeps_the_vector_value() {
        let v = vector_scalar(BinOp::Lt, vec![sample(&[("__name__", "a")], 5.0)], 1.0, true, false);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].value, 5.0);
        assert!(!v[0].drop_name);
    }

    #[test]
    fn one_to_one_matching_ignores_the_metric_name() {
        let l = vec![sample(&[("__name__", "a"), ("x", "1")], 2.0)];
        let r = vec![sample(&[("__name__", "b"), ("x", "1")], 3.0)];
        let m = VectorMatching { card: Cardinality::OneToOne, on: false, labels: vec![], include: vec![] };
        let out = vector_vector(BinOp::Mul, l, r, false, &m).unwrap();
        assert_eq!(out[0].value, 6.0);
        assert!(out[0].drop_name);
    }

    #[test]
    fn each_match_group_and_result_is_used_once() {
        let many = || {
            vec![
                sample(&[("__name__", "a"), ("pod", "p"), ("x", "1")], 2.0),
                sample(&[("__name__", "a"), ("pod", "p"), ("x", "2")], 4.0),
                sample(&[("__name__", "a"), ("pod", "q"), ("x", "1")], 8.0),
            ]
        };
        let one = || vec![sample(&[("__name__", "b"), ("pod", "p"), ("x", "9")], 2.0)];
        let on_pod = |card, include: &[&str]| VectorMatching {
            card,
            on: true,
            labels: vec!["pod".into()],
            include: include.iter().map(|s| s.to_string()).collect(),
        };
        // One-to-one: two series of the left side match the same group.
        let err = vector_vector(BinOp::Div, many(), one(), false, &on_pod(Cardinality::OneToOne, &[])).unwrap_err();
        assert!(err.to_string().contains("many-to-one matching must be explicit"), "{err}");
        // group_left: both match, each keeping its own labels.
        let out = vector_vector(BinOp::Div, many(), one(), false, &on_pod(Cardinality::ManyToOne, &[])).unwrap();
        let values: Vec<f64> = out.iter().map(|s| s.value).collect();
        assert_eq!(values, [1.0, 2.0]);
        // group_left(x): both take x from the right side, so their results are one label set.
        let err = vector_vector(BinOp::Div, many(), one(), false, &on_pod(Cardinality::ManyToOne, &["x"])).unwrap_err();
        assert!(err.to_string().contains("grouping labels must ensure unique matches"), "{err}");
    }

    #[test]
    fn duplicate_on_the_one_side_is_an_error() {
        let l = vec![sample(&[("__name__", "a")], 2.0)];
        let r = vec![sample(&[("__name__", "b"), ("x", "2")], 3.0), sample(&[("__name__", "b"), ("x", "1")], 3.0)];
        let m = VectorMatching { card: Cardinality::OneToOne, on: true, labels: vec![], include: vec![] };
        let err = vector_vector(BinOp::Gt, l, r, false, &m).unwrap_err().to_string();
        assert!(err.starts_with("found duplicate series for the match group {} on the right hand-side"), "{err}");
        assert!(err.contains("[{__name__=\"b\", x=\"1\"}, {__name__=\"b\", x=\"2\"}]"), "{err}");
    }
}
