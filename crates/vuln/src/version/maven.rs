//! Maven versions, ordered after the model of Maven's `ComparableVersion`.
//!
//! A version is lower-cased and read into items: numbers, qualifiers, and nested lists. `.`
//! separates items; `-`, and every switch between digits and letters, opens a nested list.
//! Trailing "null" items (`0`, the empty qualifier and its aliases `ga`, `final`,
//! `release`, empty lists) are dropped, so `1.0 == 1.0.0 == 1.0-ga`. Qualifiers order
//! `alpha < beta < milestone < rc (= cr) < snapshot < "" (release) < sp`, then unknown
//! qualifiers alphabetically; `a1`/`b1`/`m1` mean alpha/beta/milestone when a digit follows.
//! A number is newer than a list, which is newer than a qualifier.
//!
//! Limitation: this follows the long-standing (Maven 3.x) algorithm and does not reproduce
//! the later refinements for mixed letter/digit tokens.

use std::cmp::Ordering;

use super::generic::cmp_numeric;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    /// Digits with leading zeros stripped ("" for zero).
    Int(String),
    /// A qualifier, aliases resolved.
    Str(String),
    List(Vec<Item>),
}

/// Known qualifiers in order; the empty string is the release itself.
const QUALIFIERS: [&str; 7] = ["alpha", "beta", "milestone", "rc", "snapshot", "", "sp"];
const RELEASE_RANK: usize = 5;

fn qualifier_rank(q: &str) -> (usize, &str) {
    match QUALIFIERS.iter().position(|k| *k == q) {
        Some(i) => (i, ""),
        None => (QUALIFIERS.len(), q),
    }
}

impl Item {
    fn int(digits: &str) -> Item {
        Item::Int(digits.trim_start_matches('0').to_string())
    }

    fn string(s: &str, followed_by_digit: bool) -> Item {
        let s = match (s, followed_by_digit) {
            ("a", true) => "alpha",
            ("b", true) => "beta",
            ("m", true) => "milestone",
            ("ga" | "final" | "release", _) => "",
            ("cr", _) => "rc",
            (s, _) => s,
        };
        Item::Str(s.to_string())
    }

    fn is_null(&self) -> bool {
        match self {
            Item::Int(n) => n.is_empty(),
            Item::Str(s) => s.is_empty(),
            Item::List(l) => l.is_empty(),
        }
    }

    /// Compares with another item, or with "nothing" (`None`) where one list is shorter.
    fn cmp_opt(&self, other: Option<&Item>) -> Ordering {
        use Ordering::*;
        match (self, other) {
            (Item::Int(n), None) => {
                if n.is_empty() {
                    Equal
                } else {
                    Greater
                }
            }
            (Item::Str(s), None) => qualifier_rank(s).0.cmp(&RELEASE_RANK),
            (Item::List(l), None) => l.iter().map(|i| i.cmp_opt(None)).find(|o| *o != Equal).unwrap_or(Equal),
            (Item::Int(a), Some(Item::Int(b))) => cmp_numeric(a.as_bytes(), b.as_bytes()),
            (Item::Int(_), Some(_)) => Greater,
            (Item::Str(_), Some(Item::Int(_) | Item::List(_))) => Less,
            (Item::Str(a), Some(Item::Str(b))) => qualifier_rank(a).cmp(&qualifier_rank(b)),
            (Item::List(_), Some(Item::Int(_))) => Less,
            (Item::List(_), Some(Item::Str(_))) => Greater,
            (Item::List(a), Some(Item::List(b))) => cmp_lists(a, b),
        }
    }
}

fn cmp_lists(a: &[Item], b: &[Item]) -> Ordering {
    for k in 0..a.len().max(b.len()) {
        let ord = match (a.get(k), b.get(k)) {
            (Some(x), y) => x.cmp_opt(y),
            (None, Some(y)) => y.cmp_opt(None).reverse(),
            (None, None) => Ordering::Equal,
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    Ordering::Equal
}

/// Parses a version into its item tree.
fn parse(version: &str) -> Vec<Item> {
    // Lists live in an arena while parsing; a child list always has a larger index than its
    // parent, so normalizing from the last index back handles children first.
    enum Node {
        Item(Item),
        List(usize),
    }
    let v = version.trim().to_ascii_lowercase();
    let bytes = v.as_bytes();
    let mut lists: Vec<Vec<Node>> = vec![Vec::new()];
    let mut current = 0;
    let mut start = 0;
    let mut in_digits = false;

    let token = |s: &str, digits: bool, followed_by_digit: bool| {
        if digits { Item::int(s) } else { Item::string(s, followed_by_digit) }
    };
    for (i, &c) in bytes.iter().enumerate() {
        match c {
            b'.' | b'-' => {
                let item = if i == start { Item::Int(String::new()) } else { token(&v[start..i], in_digits, false) };
                lists[current].push(Node::Item(item));
                start = i + 1;
                if c == b'-' {
                    lists.push(Vec::new());
                    let id = lists.len() - 1;
                    lists[current].push(Node::List(id));
                    current = id;
                }
            }
            _ => {
                let digit = c.is_ascii_digit();
                if digit != in_digits && i > start {
                    lists[current].push(Node::Item(token(&v[start..i], in_digits, digit)));
                    start = i;
                    lists.push(Vec::new());
                    let id = lists.len() - 1;
                    lists[current].push(Node::List(id));
                    current = id;
                }
                in_digits = digit;
            }
        }
    }
    if v.len() > start {
        lists[current].push(Node::Item(token(&v[start..], in_digits, false)));
    }

    // Build bottom-up, dropping trailing null items of each list: walking back, nulls go,
    // non-null lists are stepped over, and the first non-null plain item stops the walk.
    let mut built: Vec<Option<Vec<Item>>> = (0..lists.len()).map(|_| None).collect();
    for id in (0..lists.len()).rev() {
        let mut items: Vec<Item> = std::mem::take(&mut lists[id])
            .into_iter()
            .map(|n| match n {
                Node::Item(item) => item,
                Node::List(child) => Item::List(built[child].take().unwrap_or_default()),
            })
            .collect();
        let mut k = items.len();
        while k > 0 {
            k -= 1;
            if items[k].is_null() {
                items.remove(k);
            } else if !matches!(items[k], Item::List(_)) {
                break;
            }
        }
        built[id] = Some(items);
    }
    built[0].take().unwrap_or_default()
}

/// Compares two Maven versions.
pub fn compare(a: &str, b: &str) -> Ordering {
    cmp_lists(&parse(a), &parse(b))
}

/// Maven accepts any string as a version; this only rejects empty and whitespace-laden ones.
pub fn is_valid(v: &str) -> bool {
    !v.is_empty() && !v.chars().any(char::is_whitespace)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    #[test]
    fn qualifier_order() {
        let chain = [
            "1.0-alpha-1",
            "1.0-alpha-2",
            "1.0-beta-1",
            "1.0-milestone-1",
            "1.0-rc-1",
            "1.0-snapshot",
            "1.0",
            "1.0-sp",
            "1.0-whatever",
            "1.0.1",
        ];
        for pair in chain.windows(2) {
            assert_eq!(compare(pair[0], pair[1]), Less, "{} < {}", pair[0], pair[1]);
        }
    }

    #[test]
    fn equivalences_and_numbers() {
        assert_eq!(compare("1.0", "1.0.0"), Equal);
        assert_eq!(compare("1.0", "1-ga"), Equal);
        assert_eq!(compare("2.0.0.RELEASE", "2.0.0"), Equal);
        assert_eq!(compare("1.0.Final", "1"), Equal);
        assert_eq!(compare("1.0a1", "1.0-alpha-1"), Equal);
        assert_eq!(compare("1.0-CR1", "1.0-RC1"), Equal);
        assert_eq!(compare("1.0-1", "1.0"), Greater);
        assert_eq!(compare("1.0-1", "1.0.1"), Less);
        assert_eq!(compare("2.12.7.1", "2.12.7"), Greater);
        assert_eq!(compare("1.10", "1.9"), Greater);
        assert_eq!(compare("5.3.18", "5.3.9"), Greater);
    }
}
