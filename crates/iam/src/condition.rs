//! The `Condition` element: operators, their values precompiled at parse time, and evaluation
//! against the request's context keys.
//!
//! Semantics (IAM's "condition operators" and "multivalued context keys" pages):
//! * several keys under one operator, and several operators, must all hold (AND);
//! * several values for one key: any may match (OR);
//! * a key that holds several values in the request (without a set qualifier): the positive
//!   operators hold when any request value matches any policy value, the negated ones
//!   (`StringNotEquals`, `NotIpAddress`, ...) when none does;
//! * a key missing from the request: the positive operators are false, the negated ones true,
//!   every `...IfExists` operator true; `Null` tests for the key's presence;
//! * `ForAllValues:` holds when every request value passes the operator (so also when the key is
//!   missing or empty), `ForAnyValue:` when at least one does (so never when it is missing,
//!   unless `...IfExists`).

use std::borrow::Cow;

use crate::context::{ContextKeys, KeyName};
use crate::net::{Cidr, parse_ip};
use crate::template::{ArnPattern, Template, Tok, has_variables, literal, split_arn, tokenize};
use crate::time::parse_date;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cmp {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Cmp {
    fn holds<T: PartialOrd>(self, request: T, policy: T) -> bool {
        match self {
            Cmp::Eq => request == policy,
            Cmp::Lt => request < policy,
            Cmp::Le => request <= policy,
            Cmp::Gt => request > policy,
            Cmp::Ge => request >= policy,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    Str { ignore_case: bool, like: bool },
    Numeric(Cmp),
    Date(Cmp),
    Bool,
    Binary,
    Ip,
    Arn,
    Null,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SetQualifier {
    Single,
    ForAllValues,
    ForAnyValue,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Operator {
    family: Family,
    negated: bool,
    if_exists: bool,
    set: SetQualifier,
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &s[prefix.len()..])
}

impl Operator {
    /// Parses an operator name such as `ForAnyValue:StringLikeIfExists` (names compare without
    /// regard to case).
    pub(crate) fn parse(name: &str) -> Result<Operator, String> {
        let unknown = || format!("unknown condition operator {name:?}");
        let (set, rest) = if let Some(r) = strip_prefix_ignore_case(name, "ForAllValues:") {
            (SetQualifier::ForAllValues, r)
        } else if let Some(r) = strip_prefix_ignore_case(name, "ForAnyValue:") {
            (SetQualifier::ForAnyValue, r)
        } else {
            (SetQualifier::Single, name)
        };
        let lower = rest.to_ascii_lowercase();
        let (base, if_exists) = match lower.strip_suffix("ifexists") {
            Some(b) if !b.is_empty() => (b, true),
            _ => (lower.as_str(), false),
        };
        use Cmp::*;
        use Family::*;
        let str_ = |ignore_case, like| Str { ignore_case, like };
        let (family, negated) = match base {
            "stringequals" => (str_(false, false), false),
            "stringnotequals" => (str_(false, false), true),
            "stringequalsignorecase" => (str_(true, false), false),
            "stringnotequalsignorecase" => (str_(true, false), true),
            "stringlike" => (str_(false, true), false),
            "stringnotlike" => (str_(false, true), true),
            "numericequals" => (Numeric(Eq), false),
            "numericnotequals" => (Numeric(Eq), true),
            "numericlessthan" => (Numeric(Lt), false),
            "numericlessthanequals" => (Numeric(Le), false),
            "numericgreaterthan" => (Numeric(Gt), false),
            "numericgreaterthanequals" => (Numeric(Ge), false),
            "dateequals" => (Date(Eq), false),
            "datenotequals" => (Date(Eq), true),
            "datelessthan" => (Date(Lt), false),
            "datelessthanequals" => (Date(Le), false),
            "dategreaterthan" => (Date(Gt), false),
            "dategreaterthanequals" => (Date(Ge), false),
            "bool" => (Bool, false),
            "binaryequals" => (Binary, false),
            "ipaddress" => (Ip, false),
            "notipaddress" => (Ip, true),
            "arnequals" | "arnlike" => (Arn, false),
            "arnnotequals" | "arnnotlike" => (Arn, true),
            "null" => (Null, false),
            _ => return Err(unknown()),
        };
        if family == Null && if_exists {
            return Err(format!("{name:?}: Null cannot take IfExists (it already tests whether the key exists)"));
        }
        if family == Null && set != SetQualifier::Single {
            return Err(format!("{name:?}: Null cannot take ForAllValues or ForAnyValue"));
        }
        Ok(Operator { family, negated, if_exists, set })
    }
}

/// One policy value, in the form its operator compares.
#[derive(Debug, Clone)]
enum Value {
    Str(Template),
    Num(f64),
    Date(i128),
    Bool(bool),
    Binary(Box<str>),
    Ip(Cidr),
    Arn(ArnPattern),
    Null(bool),
    /// A numeric, date, boolean, binary or address value with policy variables in it: parsed
    /// after substitution, per request.
    Deferred(Template),
}

/// A number as the `Numeric*` operators take it: decimal, optionally signed, with a fraction
/// or exponent; no `inf`/`NaN`.
fn parse_number(s: &str) -> Option<f64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E')) {
        return None;
    }
    s.parse::<f64>().ok().filter(|f| f.is_finite())
}

fn parse_bool(s: &str) -> Option<bool> {
    if s.eq_ignore_ascii_case("true") {
        Some(true)
    } else if s.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

fn is_base64(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    s.len() - body.len() <= 2 && body.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/'))
}

/// Parses a literal (variable-free) value for `family`, or says why it is malformed.
fn literal_value(family: Family, text: &str) -> Result<Value, String> {
    let bad = |what: &str| format!("{text:?} is not {what}");
    match family {
        Family::Str { .. } | Family::Arn => unreachable!("compiled as patterns"),
        Family::Numeric(_) => parse_number(text).map(Value::Num).ok_or_else(|| bad("a number")),
        Family::Date(_) => parse_date(text).map(Value::Date).ok_or_else(|| bad("an ISO 8601 date or epoch seconds")),
        Family::Bool => parse_bool(text).map(Value::Bool).ok_or_else(|| bad("true or false")),
        Family::Null => parse_bool(text).map(Value::Null).ok_or_else(|| bad("true or false")),
        Family::Binary => is_base64(text).then(|| Value::Binary(text.into())).ok_or_else(|| bad("base64")),
        Family::Ip => Cidr::parse(text).map(Value::Ip).ok_or_else(|| bad("an IPv4 or IPv6 address or CIDR")),
    }
}

/// One key under one operator, with its values.
#[derive(Debug, Clone)]
pub(crate) struct Condition {
    op: Operator,
    key: KeyName,
    values: Box<[Value]>,
}

impl Condition {
    /// Compiles `values` (already normalized to strings) for `key` under `op`. The error is the
    /// message for the value at the given index.
    pub(crate) fn compile(
        op: Operator,
        key: &str,
        values: &[String],
        variables: bool,
    ) -> Result<Condition, (usize, String)> {
        let mut compiled = Vec::with_capacity(values.len());
        for (i, text) in values.iter().enumerate() {
            // `Null` compares no value with the request, so a variable there means nothing.
            let vars = variables && op.family != Family::Null;
            let wildcards = matches!(op.family, Family::Str { like: true, .. } | Family::Arn);
            let toks: Vec<Tok> = tokenize(text, vars, wildcards).map_err(|e| (i, e))?;
            let value = match op.family {
                Family::Str { ignore_case, .. } => Value::Str(Template::new(toks, ignore_case)),
                Family::Arn => Value::Arn(ArnPattern::compile(toks).ok_or_else(|| {
                    (i, format!("{text:?} is not an ARN (arn:partition:service:region:account:resource)"))
                })?),
                _ if has_variables(&toks) => Value::Deferred(Template::new(toks, false)),
                family => literal_value(family, &literal(&toks)).map_err(|e| (i, e))?,
            };
            compiled.push(value);
        }
        Ok(Condition { op, key: KeyName::new(key), values: compiled.into() })
    }

    pub(crate) fn evaluate(&self, keys: &ContextKeys) -> bool {
        let op = self.op;
        let present = keys.lookup(&self.key).filter(|v| !v.is_empty());
        if op.family == Family::Null {
            return self.values.iter().any(|v| matches!(v, Value::Null(absent) if *absent == present.is_none()));
        }
        let Some(request) = present else {
            return match op.set {
                SetQualifier::Single => op.if_exists || op.negated,
                SetQualifier::ForAllValues => true,
                SetQualifier::ForAnyValue => op.if_exists,
            };
        };
        match op.set {
            SetQualifier::Single => request.iter().any(|r| self.matches_any(r, keys)) != op.negated,
            SetQualifier::ForAllValues => request.iter().all(|r| self.matches_any(r, keys) != op.negated),
            SetQualifier::ForAnyValue => request.iter().any(|r| self.matches_any(r, keys) != op.negated),
        }
    }

    /// Whether one request value matches any of the policy values under the (un-negated)
    /// operator. A request value that does not parse for the operator matches nothing.
    fn matches_any(&self, request: &str, keys: &ContextKeys) -> bool {
        match self.op.family {
            Family::Str { ignore_case, .. } => {
                let request = if ignore_case && request.chars().any(char::is_uppercase) {
                    Cow::Owned(request.to_lowercase())
                } else {
                    Cow::Borrowed(request)
                };
                self.values.iter().any(|v| match v {
                    Value::Str(t) => t.matches(&request, keys),
                    _ => false,
                })
            }
            Family::Arn => split_arn(request).is_some_and(|parts| {
                self.values.iter().any(|v| match v {
                    Value::Arn(p) => p.matches(&parts, keys),
                    _ => false,
                })
            }),
            Family::Numeric(cmp) => parse_number(request).is_some_and(|x| {
                self.any_value(keys, |v| match v {
                    Value::Num(y) => cmp.holds(x, *y),
                    _ => false,
                })
            }),
            Family::Date(cmp) => parse_date(request).is_some_and(|x| {
                self.any_value(keys, |v| match v {
                    Value::Date(y) => cmp.holds(x, *y),
                    _ => false,
                })
            }),
            Family::Bool => {
                parse_bool(request).is_some_and(|x| self.any_value(keys, |v| matches!(v, Value::Bool(y) if x == *y)))
            }
            Family::Binary => self.any_value(keys, |v| matches!(v, Value::Binary(y) if **y == *request)),
            Family::Ip => parse_ip(request)
                .is_some_and(|ip| self.any_value(keys, |v| matches!(v, Value::Ip(c) if c.contains(ip)))),
            Family::Null => false,
        }
    }

    /// Whether `test` holds for any value, deferred values substituted and parsed first (one
    /// that then fails to parse, or has a variable without value, matches nothing).
    fn any_value(&self, keys: &ContextKeys, test: impl Fn(&Value) -> bool) -> bool {
        self.values.iter().any(|v| match v {
            Value::Deferred(t) => {
                t.resolve(keys).and_then(|text| literal_value(self.op.family, &text).ok()).is_some_and(|v| test(&v))
            }
            v => test(v),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_names() {
        let op = Operator::parse("forAnyValue:stringLikeIfExists").unwrap();
        assert_eq!(op.set, SetQualifier::ForAnyValue);
        assert!(op.if_exists);
        assert_eq!(op.family, Family::Str { ignore_case: false, like: true });
        assert_eq!(Operator::parse("StringEqualz").unwrap_err(), "unknown condition operator \"StringEqualz\"");
        assert!(Operator::parse("IfExists").is_err());
        assert!(Operator::parse("NullIfExists").is_err());
        assert!(Operator::parse("ForAllValues:Null").is_err());
    }

    #[test]
    fn numbers_and_base64() {
        assert_eq!(parse_number("-1.5e3"), Some(-1500.0));
        assert_eq!(parse_number("inf"), None);
        assert_eq!(parse_number("NaN"), None);
        assert_eq!(parse_number("1e999"), None);
        assert_eq!(parse_number(""), None);
        assert!(is_base64("QmVydGg="));
        assert!(!is_base64("Qm=Vy"));
        assert!(!is_base64("a==="));
    }
}
