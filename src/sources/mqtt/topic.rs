//! Topic filters (`+` one level, `#` the rest) and tag names built from
//! the levels a filter's `+` matched. Pure: no I/O, tested here.

use std::fmt;

/// A validated subscription filter, split into levels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicFilter {
    text: String,
    levels: Vec<Level>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Level {
    Exact(String),
    /// `+`: any one level, captured for the tag's name.
    One,
    /// `#`: this level and every one below (also none).
    Rest,
}

/// Why a filter is not one.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("an empty topic: write levels separated by `/`, like \"plant1/press1/count\"")]
    Empty,
    #[error("`#` must be the whole last level, like \"plant1/#\"")]
    HashNotLast,
    #[error("`+` must be a whole level, like \"plant1/+/count\", not mixed with other characters")]
    PlusMixed,
    #[error("a topic may not hold the NUL character")]
    Nul,
    #[error("a topic is at most 65535 bytes")]
    TooLong,
}

impl TopicFilter {
    pub fn parse(text: &str) -> Result<TopicFilter, FilterError> {
        if text.is_empty() {
            return Err(FilterError::Empty);
        }
        if text.len() > 65_535 {
            return Err(FilterError::TooLong);
        }
        if text.contains('\0') {
            return Err(FilterError::Nul);
        }
        let parts: Vec<&str> = text.split('/').collect();
        let mut levels = Vec::with_capacity(parts.len());
        for (i, p) in parts.iter().enumerate() {
            levels.push(match *p {
                "#" if i + 1 == parts.len() => Level::Rest,
                "#" => return Err(FilterError::HashNotLast),
                "+" => Level::One,
                p if p.contains('#') => return Err(FilterError::HashNotLast),
                p if p.contains('+') => return Err(FilterError::PlusMixed),
                p => Level::Exact(p.to_string()),
            });
        }
        Ok(TopicFilter {
            text: text.to_string(),
            levels,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// How many `+` levels the filter has (what `{N}` may name).
    pub fn captures(&self) -> usize {
        self.levels.iter().filter(|l| **l == Level::One).count()
    }

    /// The levels each `+` matched, when `topic` matches. As MQTT says, a
    /// wildcard first level does not match topics starting with `$`.
    pub fn matches<'t>(&self, topic: &'t str) -> Option<Vec<&'t str>> {
        if topic.starts_with('$') && !matches!(self.levels.first(), Some(Level::Exact(_))) {
            return None;
        }
        let mut captured = Vec::new();
        let mut parts = topic.split('/');
        for level in &self.levels {
            match level {
                Level::Rest => return Some(captured),
                Level::One => captured.push(parts.next()?),
                Level::Exact(e) => {
                    if parts.next()? != e {
                        return None;
                    }
                }
            }
        }
        parts.next().is_none().then_some(captured)
    }
}

impl fmt::Display for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A tag's name, plain or with `{N}`: the level the N-th `+` matched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameTemplate {
    parts: Vec<NamePart>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum NamePart {
    Text(String),
    /// 0-based index into the captured levels.
    Level(usize),
}

impl NameTemplate {
    /// Parse `text` for a filter with `captures` `+` levels. The literal
    /// parts are checked by the caller (they must be a plain name's).
    pub fn parse(text: &str, captures: usize) -> Result<NameTemplate, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(NamePart::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 1..];
            let close = after
                .find('}')
                .ok_or_else(|| format!("tag name {text:?} opens `{{` without closing it: write {{1}} for the level the first `+` matched"))?;
            let n: usize = after[..close].parse().map_err(|_| {
                format!(
                    "tag name {text:?}: `{{{}}}` is not a level number; write {{1}} for the level the first `+` matched",
                    &after[..close]
                )
            })?;
            if n == 0 || n > captures {
                return Err(match captures {
                    0 => format!("tag name {text:?} names level {{{n}}}, but its topic has no `+`"),
                    1 => format!("tag name {text:?} names level {{{n}}}, but its topic has one `+` (use {{1}})"),
                    c => format!("tag name {text:?} names level {{{n}}}, but its topic has {c} `+` (use {{1}} to {{{c}}})"),
                });
            }
            parts.push(NamePart::Level(n - 1));
            rest = &after[close + 1..];
        }
        if rest.contains('}') {
            return Err(format!("tag name {text:?} closes `}}` without opening it"));
        }
        if !rest.is_empty() {
            parts.push(NamePart::Text(rest.to_string()));
        }
        Ok(NameTemplate { parts })
    }

    /// A template with no `{N}`: one tag.
    pub fn fixed(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [NamePart::Text(t)] => Some(t),
            _ => None,
        }
    }

    /// The literal parts, for validation.
    pub fn literals(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            NamePart::Text(t) => Some(t.as_str()),
            NamePart::Level(_) => None,
        })
    }

    /// The name for one message's captured levels.
    pub fn render(&self, captured: &[&str]) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                NamePart::Text(t) => out.push_str(t),
                NamePart::Level(i) => out.push_str(captured.get(*i).copied().unwrap_or("")),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_as_mqtt_says() {
        let f = TopicFilter::parse("plant1/+/qc").unwrap();
        assert_eq!(f.matches("plant1/press1/qc"), Some(vec!["press1"]));
        assert_eq!(f.matches("plant1/press1/qc/x"), None);
        assert_eq!(f.matches("plant1/qc"), None);
        let f = TopicFilter::parse("plant1/#").unwrap();
        assert_eq!(f.matches("plant1"), Some(vec![]));
        assert_eq!(f.matches("plant1/a/b"), Some(vec![]));
        assert_eq!(f.matches("plant2/a"), None);
        let f = TopicFilter::parse("+/count").unwrap();
        assert_eq!(f.matches("$SYS/count"), None);
        let f = TopicFilter::parse("a/b").unwrap();
        assert_eq!(f.matches("a/b"), Some(vec![]));
        assert_eq!(f.matches("a/b/"), None);
    }

    #[test]
    fn bad_filters_say_why() {
        assert_eq!(TopicFilter::parse("a/#/b"), Err(FilterError::HashNotLast));
        assert_eq!(TopicFilter::parse("a/b#"), Err(FilterError::HashNotLast));
        assert_eq!(TopicFilter::parse("a/p+/b"), Err(FilterError::PlusMixed));
        assert_eq!(TopicFilter::parse(""), Err(FilterError::Empty));
    }

    #[test]
    fn names_from_levels() {
        let t = NameTemplate::parse("{1}_qc_{2}", 2).unwrap();
        assert_eq!(t.render(&["press1", "a"]), "press1_qc_a");
        assert!(t.fixed().is_none());
        assert_eq!(
            NameTemplate::parse("count", 0).unwrap().fixed(),
            Some("count")
        );
        assert!(NameTemplate::parse("{2}", 1).is_err());
        assert!(NameTemplate::parse("{x}", 1).is_err());
        assert!(NameTemplate::parse("{1", 1).is_err());
    }
}
