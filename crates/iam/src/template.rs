//! Patterns as policies write them: literal text, `*`/`?` wildcards where the element allows
//! them, and (in `2012-10-17` policies) policy variables such as `${aws:username}`, the escapes
//! `${*}`, `${?}`, `${$}` and the default form `${aws:username, 'nobody'}`.
//!
//! Everything that can be decided when the policy is parsed is: a pattern without variables is
//! compiled once into [`Template::Any`], [`Template::Exact`] or [`Template::Glob`]; only patterns
//! with variables are resolved per request.

use std::borrow::Cow;

use crate::context::{ContextKeys, KeyName};
use crate::wildcard::{self, Piece, eq_short};

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    Lit(String),
    Star,
    One,
    Var {
        /// Context keys are case-insensitive.
        key: KeyName,
        default: Option<Box<str>>,
    },
}

/// Splits `text` into tokens. With `variables` off (`2008-10-17` policies, or elements that do
/// not take variables) `${...}` is plain text; with `wildcards` off `*` and `?` are plain text.
pub(crate) fn tokenize(text: &str, variables: bool, wildcards: bool) -> Result<Vec<Tok>, String> {
    let mut toks = Vec::new();
    let mut lit = String::new();
    let flush = |lit: &mut String, toks: &mut Vec<Tok>| {
        if !lit.is_empty() {
            toks.push(Tok::Lit(std::mem::take(lit)));
        }
    };
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if variables && rest.starts_with("${") {
            let (tok, used) =
                variable(&rest[2..]).map_err(|why| format!("{why} in policy variable at {:?}", short(rest)))?;
            rest = &rest[2 + used..];
            match tok {
                Tok::Lit(s) => lit.push_str(&s),
                var => {
                    flush(&mut lit, &mut toks);
                    toks.push(var);
                }
            }
            continue;
        }
        rest = &rest[c.len_utf8()..];
        match c {
            '*' if wildcards => {
                flush(&mut lit, &mut toks);
                if toks.last() != Some(&Tok::Star) {
                    toks.push(Tok::Star);
                }
            }
            '?' if wildcards => {
                flush(&mut lit, &mut toks);
                toks.push(Tok::One);
            }
            _ => lit.push(c),
        }
    }
    flush(&mut lit, &mut toks);
    Ok(toks)
}

fn short(s: &str) -> String {
    s.chars().take(40).collect()
}

/// Parses what follows `${` up to and including the closing `}`; returns the token and the
/// number of bytes consumed.
fn variable(s: &str) -> Result<(Tok, usize), &'static str> {
    for escape in ["*}", "?}", "$}"] {
        if s.starts_with(escape) {
            return Ok((Tok::Lit(escape[..1].to_owned()), 2));
        }
    }
    let b = s.as_bytes();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && b[*i] == b' ' {
            *i += 1;
        }
    };
    skip_ws(&mut i);
    let start = i;
    while i < b.len() && !matches!(b[i], b'}' | b',' | b' ' | b'\'' | b'$' | b'{') {
        i += 1;
    }
    let key = &s[start..i];
    if key.is_empty() {
        return Err(if i < b.len() && b[i] == b'}' { "empty name" } else { "malformed name" });
    }
    skip_ws(&mut i);
    let mut default = None;
    if i < b.len() && b[i] == b',' {
        i += 1;
        skip_ws(&mut i);
        if i >= b.len() || b[i] != b'\'' {
            return Err("default value not in single quotes");
        }
        i += 1;
        let mut value = String::new();
        loop {
            let Some(c) = s[i..].chars().next() else {
                return Err("unterminated default value");
            };
            i += c.len_utf8();
            if c == '\'' {
                // `''` inside a default value is one quote.
                if b.get(i) == Some(&b'\'') {
                    value.push('\'');
                    i += 1;
                    continue;
                }
                break;
            }
            value.push(c);
        }
        default = Some(value.into_boxed_str());
        skip_ws(&mut i);
    }
    if i >= b.len() {
        return Err("missing closing brace");
    }
    if b[i] != b'}' {
        return Err("malformed name");
    }
    let key = KeyName::new(key);
    Ok((Tok::Var { key, default }, i + 1))
}

/// Whether the tokens hold a policy variable.
pub(crate) fn has_variables(toks: &[Tok]) -> bool {
    toks.iter().any(|t| matches!(t, Tok::Var { .. }))
}

/// The literal text of tokens without wildcards or variables.
pub(crate) fn literal(toks: &[Tok]) -> String {
    toks.iter()
        .map(|t| match t {
            Tok::Lit(s) => s.as_str(),
            Tok::Star => "*",
            Tok::One => "?",
            Tok::Var { .. } => "",
        })
        .collect()
}

#[derive(Debug, Clone)]
pub(crate) enum Template {
    /// A lone `*` wildcard: matches everything.
    Any,
    Exact(Box<str>),
    Glob(Box<[Piece]>),
    /// Has policy variables: resolved against the request context at every match.
    Dynamic {
        toks: Box<[Tok]>,
        lowercase: bool,
    },
}

fn lower(s: &str, lowercase: bool) -> Cow<'_, str> {
    if lowercase && s.chars().any(|c| c.is_uppercase()) { Cow::Owned(s.to_lowercase()) } else { Cow::Borrowed(s) }
}

/// The value a variable stands for: the key's single value, else the default. A missing key,
/// or one with several values, without a default resolves to nothing.
fn resolve_var<'a>(key: &KeyName, default: Option<&'a str>, keys: &'a ContextKeys) -> Option<&'a str> {
    match keys.lookup(key) {
        Some([one]) => Some(one.as_str()),
        _ => default,
    }
}

impl Template {
    /// Compiles tokens; with `lowercase` the literal parts are lowercased (for case-insensitive
    /// comparison against text that the caller lowercases too).
    pub(crate) fn new(toks: Vec<Tok>, lowercase: bool) -> Template {
        if has_variables(&toks) {
            let toks = toks
                .into_iter()
                .map(|t| match t {
                    Tok::Lit(s) => Tok::Lit(lower(&s, lowercase).into_owned()),
                    t => t,
                })
                .collect();
            return Template::Dynamic { toks, lowercase };
        }
        match toks.as_slice() {
            [Tok::Star] => return Template::Any,
            [] => return Template::Exact("".into()),
            [Tok::Lit(s)] => return Template::Exact(lower(s, lowercase).into()),
            _ => {}
        }
        let pieces = toks
            .into_iter()
            .map(|t| match t {
                Tok::Lit(s) => Piece::Lit(lower(&s, lowercase).into()),
                Tok::Star => Piece::Star,
                Tok::One => Piece::One,
                Tok::Var { .. } => unreachable!("handled above"),
            })
            .collect();
        Template::Glob(pieces)
    }

    /// A template for a case-insensitive pattern without variables (actions).
    pub(crate) fn glob_lowercase(pattern: &str) -> Template {
        let pieces = wildcard::compile(&pattern.to_lowercase());
        match pieces.as_slice() {
            [Piece::Star] => Template::Any,
            [] => Template::Exact("".into()),
            [Piece::Lit(s)] => Template::Exact(s.clone()),
            _ => Template::Glob(pieces.into()),
        }
    }

    /// Whether `text` matches. For a lowercasing template `text` must be lowercase already.
    pub(crate) fn matches(&self, text: &str, keys: &ContextKeys) -> bool {
        match self {
            Template::Any => true,
            Template::Exact(s) => eq_short(s.as_bytes(), text.as_bytes()),
            Template::Glob(pieces) => wildcard::matches(pieces, text),
            Template::Dynamic { toks, lowercase } => {
                let mut pieces: Vec<Piece<Cow<str>>> = Vec::with_capacity(toks.len());
                for t in toks.iter() {
                    pieces.push(match t {
                        Tok::Lit(s) => Piece::Lit(Cow::Borrowed(s.as_str())),
                        Tok::Star => Piece::Star,
                        Tok::One => Piece::One,
                        Tok::Var { key, default } => {
                            match resolve_var(key, default.as_deref(), keys) {
                                // Substituted text is literal: a `*` in a value is no wildcard.
                                Some(v) => Piece::Lit(lower(v, *lowercase)),
                                None => return false,
                            }
                        }
                    });
                }
                wildcard::matches(&pieces, text)
            }
        }
    }

    /// The text of a template without wildcards, variables substituted; `None` when a variable
    /// has no value and no default.
    pub(crate) fn resolve<'a>(&'a self, keys: &ContextKeys) -> Option<Cow<'a, str>> {
        match self {
            Template::Any => Some(Cow::Borrowed("*")),
            Template::Exact(s) => Some(Cow::Borrowed(s)),
            Template::Glob(_) => None,
            Template::Dynamic { toks, lowercase } => {
                let mut out = String::new();
                for t in toks.iter() {
                    match t {
                        Tok::Lit(s) => out.push_str(s),
                        Tok::Star => out.push('*'),
                        Tok::One => out.push('?'),
                        Tok::Var { key, default } => {
                            out.push_str(&lower(resolve_var(key, default.as_deref(), keys)?, *lowercase))
                        }
                    }
                }
                Some(Cow::Owned(out))
            }
        }
    }
}

/// Splits an ARN into its six colon-separated parts; the last (the resource) keeps any further
/// colons. `None` when `s` is no ARN.
pub(crate) fn split_arn(s: &str) -> Option<[&str; 6]> {
    let mut it = s.splitn(6, ':');
    let parts = [it.next()?, it.next()?, it.next()?, it.next()?, it.next()?, it.next()?];
    (parts[0] == "arn").then_some(parts)
}

/// An ARN pattern, matched part by part as IAM does: a wildcard never reaches across the colon
/// between two parts (except inside the final resource part, which may itself hold colons).
#[derive(Debug, Clone)]
pub(crate) struct ArnPattern {
    parts: Box<[Template; 6]>,
}

impl ArnPattern {
    /// `None` when the tokens do not form `arn:partition:service:region:account:resource`.
    pub(crate) fn compile(toks: Vec<Tok>) -> Option<ArnPattern> {
        let mut parts: Vec<Vec<Tok>> = vec![Vec::new()];
        for t in toks {
            match t {
                Tok::Lit(s) => {
                    let mut rest = s.as_str();
                    while parts.len() < 6 {
                        let Some((head, tail)) = rest.split_once(':') else {
                            break;
                        };
                        if !head.is_empty() {
                            parts.last_mut()?.push(Tok::Lit(head.to_owned()));
                        }
                        parts.push(Vec::new());
                        rest = tail;
                    }
                    if !rest.is_empty() {
                        parts.last_mut()?.push(Tok::Lit(rest.to_owned()));
                    }
                }
                t => parts.last_mut()?.push(t),
            }
        }
        if parts.len() != 6 || parts[0] != [Tok::Lit("arn".into())] {
            return None;
        }
        let parts: Vec<Template> = parts.into_iter().map(|p| Template::new(p, false)).collect();
        Some(ArnPattern { parts: Box::new(parts.try_into().ok()?) })
    }

    pub(crate) fn matches(&self, arn: &[&str; 6], keys: &ContextKeys) -> bool {
        // Part 0 is `arn` on both sides (checked when compiled and when split). The resource
        // part differs most often, so it goes first.
        (1..6).rev().all(|i| self.parts[i].matches(arn[i], keys))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(pairs: &[(&str, &[&str])]) -> ContextKeys {
        let mut k = ContextKeys::default();
        for (key, values) in pairs {
            k.insert(key, values.iter().map(|v| v.to_string()).collect());
        }
        k
    }

    #[test]
    fn tokenizes_variables_escapes_and_defaults() {
        let toks = tokenize("a${aws:UserName}b${*}${?}${$}c*", true, true).unwrap();
        assert_eq!(
            toks,
            vec![
                Tok::Lit("a".into()),
                Tok::Var { key: "aws:username".into(), default: None },
                Tok::Lit("b*?$c".into()),
                Tok::Star,
            ]
        );
        let toks = tokenize("${ aws:username , 'it''s' }", true, false).unwrap();
        assert_eq!(toks, vec![Tok::Var { key: "aws:username".into(), default: Some("it's".into()) }]);
        assert_eq!(tokenize("${a", true, false).unwrap_err(), "missing closing brace in policy variable at \"${a\"");
        assert_eq!(tokenize("${}", true, false).unwrap_err(), "empty name in policy variable at \"${}\"");
        assert_eq!(
            tokenize("${a, b}", true, false).unwrap_err(),
            "default value not in single quotes in policy variable at \"${a, b}\""
        );
        assert_eq!(tokenize("${a}", false, false).unwrap(), vec![Tok::Lit("${a}".into())]);
    }

    #[test]
    fn resolves_variables_as_literal_text() {
        let k = keys(&[("aws:username", &["a*"]), ("aws:TagKeys", &["x", "y"])]);
        let t = Template::new(tokenize("u/${aws:username}", true, true).unwrap(), false);
        assert!(t.matches("u/a*", &k));
        assert!(!t.matches("u/ab", &k), "a substituted * is literal");
        let multi = Template::new(tokenize("${aws:TagKeys}", true, false).unwrap(), false);
        assert!(multi.resolve(&k).is_none(), "a multi-valued key is no variable value");
        let dflt = Template::new(tokenize("${aws:TagKeys, 'd'}", true, false).unwrap(), false);
        assert_eq!(dflt.resolve(&k).as_deref(), Some("d"));
    }

    #[test]
    fn arn_parts_do_not_cross_colons() {
        let k = ContextKeys::default();
        let p = |s: &str| ArnPattern::compile(tokenize(s, true, true).unwrap());
        let arn = split_arn("arn:aws:ecr:us-east-1:123456789012:repository/a:b").unwrap();
        assert!(p("arn:aws:ecr:*:123456789012:repository/*").unwrap().matches(&arn, &k));
        assert!(p("arn:aws:ecr:us-east-?:*:*").unwrap().matches(&arn, &k));
        assert!(!p("arn:aws:ecr:*:repository/*:*").unwrap().matches(&arn, &k));
        assert!(p("arn:aws:ecr:*").is_none());
        assert!(p("aws:ecr:a:b:c:d").is_none());
        assert!(split_arn("arn:aws:ecr").is_none());
    }
}
