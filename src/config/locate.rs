//! Maps a config path such as `routes[3].match.path` to the line and column
//! where it appears. serde_yaml only locates its own syntax and type errors;
//! the semantic checks done after deserialising (regexes, cross-field rules)
//! need this index to point at the offending spot too.

use std::collections::HashMap;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// 1-based line and column of every mapping value and sequence item.
#[derive(Debug, Default)]
pub struct Locations {
    at: HashMap<String, (usize, usize)>,
}

impl Locations {
    pub fn index(text: &str) -> Self {
        let mut rx = Receiver::default();
        let mut parser = Parser::new_from_str(text);
        // A syntax error is reported by serde_yaml already; a partial index
        // is still useful for whatever parsed.
        let _ = parser.load(&mut rx, false);
        Locations { at: rx.at }
    }

    /// The location of `path`, or of its nearest ancestor that has one.
    pub fn find(&self, path: &str) -> (usize, usize) {
        let mut p = path;
        loop {
            if let Some(pos) = self.at.get(p) {
                return *pos;
            }
            match p.rfind(['.', '[']) {
                Some(i) => p = &p[..i],
                None => return (1, 1),
            }
        }
    }
}

enum Frame {
    Map { key: Option<String> },
    Seq { next: usize },
}

#[derive(Default)]
struct Receiver {
    stack: Vec<(Frame, String)>,
    at: HashMap<String, (usize, usize)>,
}

impl Receiver {
    /// The path of a node about to start in the current container, or None
    /// when the node is a mapping key.
    fn child_path(&mut self) -> Option<String> {
        let (frame, base) = self.stack.last_mut()?;
        match frame {
            Frame::Seq { next } => {
                let p = format!("{base}[{next}]");
                *next += 1;
                Some(p)
            }
            Frame::Map { key } => key
                .take()
                .map(|k| if base.is_empty() { k } else { format!("{base}.{k}") }),
        }
    }

    fn open(&mut self, frame: Frame, mark: Marker) {
        let path = if self.stack.is_empty() {
            Some(String::new())
        } else {
            self.child_path()
        };
        let path = path.unwrap_or_default();
        self.at.insert(path.clone(), (mark.line(), mark.col() + 1));
        self.stack.push((frame, path));
    }
}

impl MarkedEventReceiver for Receiver {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::MappingStart(..) => self.open(Frame::Map { key: None }, mark),
            Event::SequenceStart(..) => self.open(Frame::Seq { next: 0 }, mark),
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            Event::Scalar(value, ..) => {
                let is_key = matches!(self.stack.last(), Some((Frame::Map { key: None }, _)));
                if is_key {
                    if let Some((Frame::Map { key }, path)) = self.stack.last_mut() {
                        *key = Some(value);
                        // yaml-rust2 marks a block mapping at its first `:`,
                        // not at its first key; the earlier of the two is
                        // where the mapping starts (a flow one at its `{`).
                        let here = (mark.line(), mark.col() + 1);
                        if let Some(start) = self.at.get_mut(path.as_str()) {
                            *start = (*start).min(here);
                        }
                    }
                } else if let Some(path) = self.child_path() {
                    self.at.insert(path, (mark.line(), mark.col() + 1));
                }
            }
            Event::Alias(_) => {
                let _ = self.child_path();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nested_paths() {
        let text = "listen: x\nroutes:\n  - name: a\n    match:\n      path: '^/a'\n  - name: b\n";
        let loc = Locations::index(text);
        assert_eq!(loc.find("listen"), (1, 9));
        assert_eq!(loc.find("routes[0].match.path"), (5, 13));
        assert_eq!(loc.find("routes[1].name"), (6, 11));
        // unknown leaf falls back to its parent
        assert_eq!(loc.find("routes[1].match.path").0, 6);
        // a block mapping starts at its first key, a flow one at its `{`
        assert_eq!(loc.find("routes[0]"), (3, 5));
        assert_eq!(loc.find("routes[0].match"), (5, 7));
        let flow = Locations::index(
            "routes:
  - { name: a, match: { path: x } }
",
        );
        assert_eq!(flow.find("routes[0]"), (2, 5));
        assert_eq!(flow.find("routes[0].match"), (2, 23));
    }
}
