//! Query parameters under every reading an upstream might give them.
//!
//! Frameworks split a query differently: Rack and many Java servers take
//! `;` as a separator as well as `&` (`?x=1;action=delete` has an `action`
//! there), Rack also drops spaces after a separator, and ASP.NET reads names
//! without regard to case. A `query:` predicate must hold if any of these
//! readings would satisfy it, so the gateway yields the union of them.

use std::borrow::Cow;

/// Every `(name, value)` pair under any reading: split on `&` alone, and on
/// `&` and `;`. Names and values are percent-decoded (`+` as a space), and
/// names lose surrounding whitespace. A pair can appear twice (once per
/// reading); callers only ever ask whether some pair matches.
pub fn pairs(query: &str) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
    query.split('&').flat_map(|piece| {
        // `x=1;action=delete` as one pair (the `&`-only reading) and, if it
        // holds a `;`, as the pairs the `;` reading makes of it.
        let split = piece.contains(';').then(|| piece.split(';'));
        std::iter::once(piece)
            .chain(split.into_iter().flatten())
            .filter_map(pair)
    })
}

fn pair(piece: &str) -> Option<(Cow<'_, str>, Cow<'_, str>)> {
    if piece.is_empty() {
        return None;
    }
    let (name, value) = form_urlencoded::parse(piece.as_bytes()).next()?;
    let name = match name {
        Cow::Borrowed(n) => Cow::Borrowed(n.trim()),
        Cow::Owned(n) if n.trim().len() == n.len() => Cow::Owned(n),
        Cow::Owned(n) => Cow::Owned(n.trim().to_owned()),
    };
    Some((name, value))
}

/// Whether a parameter name read from a query is `want`, folding case
/// unless the route is case-sensitive.
pub fn name_is(name: &str, want: &str, fold_case: bool) -> bool {
    if fold_case {
        name.chars()
            .flat_map(char::to_lowercase)
            .eq(want.chars().flat_map(char::to_lowercase))
    } else {
        name == want
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(q: &str) -> Vec<(String, String)> {
        pairs(q).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
    }

    #[test]
    fn both_separators_are_read() {
        let p = all("x=1;action=delete&b=%41+c; y = 2");
        let has = |k: &str, v: &str| p.iter().any(|(pk, pv)| pk == k && pv == v);
        assert!(has("x", "1;action=delete"), "the &-only reading: {p:?}");
        assert!(has("x", "1") && has("action", "delete"), "the ; reading: {p:?}");
        assert!(has("b", "A c"));
        assert!(has("y", " 2"), "names are trimmed, values kept: {p:?}");
        assert!(all("").is_empty());
        assert!(all("&&").is_empty());
        assert_eq!(all(";;&"), [(";;".to_owned(), String::new())], "no empty names");
    }

    #[test]
    fn names_fold_case_unless_asked_not_to() {
        assert!(name_is("Action", "action", true));
        assert!(name_is("ACTION", "aCtIoN", true));
        assert!(!name_is("Action", "action", false));
        assert!(!name_is("actions", "action", true));
    }
}
