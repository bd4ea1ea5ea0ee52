//! A small spanned YAML tree built from saphyr-parser's event stream.
//!
//! serde-based YAML loaders lose positions and expand aliases without limit;
//! building the tree by hand lets every later error point at a line and column
//! and lets hostile input (alias bombs, deep nesting) be refused cheaply.

use std::collections::HashMap;

use saphyr_parser::{Event, Marker, Parser, ScalarStyle, Tag};

use super::model::Pos;

/// Deepest nesting of lists and mappings accepted. A BunnyFile needs 4.
pub const MAX_DEPTH: usize = 64;
/// Most nodes a document may hold once aliases are expanded.
pub const MAX_NODES: usize = 100_000;
/// Most scalar bytes a document may hold once aliases are expanded.
pub const MAX_EXPANDED_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, Clone)]
pub enum Value {
    /// Every scalar is kept as its text; `plain` is false when quoted or
    /// tagged `!!str`, so `"null"` stays a string.
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    /// Entries in source order; duplicates are kept for the mapper to report.
    Map(Vec<(Node, Node)>),
}

#[derive(Debug, Clone)]
pub struct Node {
    pub value: Value,
    pub pos: Pos,
}

impl Node {
    /// True for YAML's null spellings and an empty plain scalar (`key:`).
    pub fn is_null(&self) -> bool {
        matches!(&self.value, Value::Scalar { text, plain: true }
            if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// What the node is, for "expected X, found Y" messages.
    pub fn kind(&self) -> &'static str {
        match &self.value {
            _ if self.is_null() => "nothing",
            Value::Scalar { .. } => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    pub pos: Pos,
    pub message: String,
    pub help: Option<String>,
}

fn pos_of(m: Marker) -> Pos {
    Pos {
        line: m.line().max(1),
        col: m.col() + 1,
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Cost {
    nodes: usize,
    bytes: usize,
}

impl Cost {
    fn add(&mut self, other: Cost) {
        self.nodes = self.nodes.saturating_add(other.nodes);
        self.bytes = self.bytes.saturating_add(other.bytes);
    }
}

enum Frame {
    Seq {
        pos: Pos,
        anchor: usize,
        items: Vec<Node>,
        cost: Cost,
    },
    Map {
        pos: Pos,
        anchor: usize,
        entries: Vec<(Node, Node)>,
        key: Option<Node>,
        cost: Cost,
    },
}

struct Builder {
    stack: Vec<Frame>,
    anchors: HashMap<usize, (Node, Cost)>,
    total: Cost,
    root: Option<Node>,
}

fn err(pos: Pos, message: impl Into<String>, help: impl Into<String>) -> YamlError {
    YamlError {
        pos,
        message: message.into(),
        help: Some(help.into()),
    }
}

fn check_tag(tag: Option<&Tag>, expected: &str, pos: Pos) -> Result<bool, YamlError> {
    let Some(tag) = tag else {
        return Ok(false);
    };
    if tag.is_yaml_core_schema() && tag.suffix == expected {
        return Ok(true);
    }
    Err(err(
        pos,
        format!("unsupported YAML tag `{tag}`"),
        "remove the tag: BunnyFile values are plain strings, lists and mappings",
    ))
}

impl Builder {
    fn charge(&mut self, cost: Cost, pos: Pos) -> Result<(), YamlError> {
        self.total.add(cost);
        if self.total.nodes > MAX_NODES {
            return Err(err(
                pos,
                format!("the document expands to more than {MAX_NODES} YAML nodes (alias bomb?)"),
                "write the values out instead of nesting anchors and aliases (`&a` / `*a`)",
            ));
        }
        if self.total.bytes > MAX_EXPANDED_BYTES {
            return Err(err(
                pos,
                format!(
                    "the document expands to more than {} MiB of text through aliases",
                    MAX_EXPANDED_BYTES / (1024 * 1024)
                ),
                "write the values out instead of repeating large anchors with aliases (`*a`)",
            ));
        }
        Ok(())
    }

    /// Hangs a finished node under its parent (or makes it the root).
    fn finish(&mut self, node: Node, anchor: usize, cost: Cost) -> Result<(), YamlError> {
        if anchor != 0 {
            self.anchors.insert(anchor, (node.clone(), cost));
        }
        match self.stack.last_mut() {
            None => {
                if self.root.is_some() {
                    return Err(err(
                        node.pos,
                        "a BunnyFile holds one YAML document, found a second",
                        "remove the `---` separator and everything after it",
                    ));
                }
                self.root = Some(node);
            }
            Some(Frame::Seq { items, cost: c, .. }) => {
                c.add(cost);
                items.push(node);
            }
            Some(Frame::Map {
                entries,
                key,
                cost: c,
                ..
            }) => {
                c.add(cost);
                match key.take() {
                    None => *key = Some(node),
                    Some(k) => entries.push((k, node)),
                }
            }
        }
        Ok(())
    }

    fn open(&mut self, pos: Pos) -> Result<(), YamlError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(err(
                pos,
                format!("YAML nesting deeper than {MAX_DEPTH} levels"),
                "a BunnyFile nests at most a few levels; flatten the structure",
            ));
        }
        self.charge(Cost { nodes: 1, bytes: 0 }, pos)
    }
}

/// Parses one YAML document into a spanned tree; `None` for an empty one.
pub fn parse_tree(text: &str) -> Result<Option<Node>, YamlError> {
    let mut parser = Parser::new_from_str(text);
    let mut b = Builder {
        stack: Vec::new(),
        anchors: HashMap::new(),
        total: Cost::default(),
        root: None,
    };
    let mut documents = 0usize;
    while let Some(next) = parser.next_event() {
        let (event, span) = next.map_err(|e| {
            // The scanner has its own nesting limit for flow collections and
            // may hit it before the builder sees the depth; say it the same way.
            if e.info().contains("recursion limit") {
                return err(
                    pos_of(*e.marker()),
                    format!("YAML nesting deeper than {MAX_DEPTH} levels"),
                    "a BunnyFile nests at most a few levels; flatten the structure",
                );
            }
            err(
                pos_of(*e.marker()),
                format!("invalid YAML: {}", e.info()),
                "check the indentation, the `key: value` colons and the quoting near here",
            )
        })?;
        let pos = pos_of(span.start);
        match event {
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(err(
                        pos,
                        "a BunnyFile holds one YAML document, found a second",
                        "remove the `---` separator and everything after it",
                    ));
                }
            }
            Event::Scalar(text, style, anchor, tag) => {
                let tagged = check_tag(tag.as_deref(), "str", pos)?;
                let cost = Cost {
                    nodes: 1,
                    bytes: text.len(),
                };
                b.charge(cost, pos)?;
                let node = Node {
                    value: Value::Scalar {
                        plain: style == ScalarStyle::Plain && !tagged,
                        text: text.into_owned(),
                    },
                    pos,
                };
                b.finish(node, anchor, cost)?;
            }
            Event::SequenceStart(anchor, tag) => {
                check_tag(tag.as_deref(), "seq", pos)?;
                b.open(pos)?;
                b.stack.push(Frame::Seq {
                    pos,
                    anchor,
                    items: Vec::new(),
                    cost: Cost { nodes: 1, bytes: 0 },
                });
            }
            Event::MappingStart(anchor, tag) => {
                check_tag(tag.as_deref(), "map", pos)?;
                b.open(pos)?;
                b.stack.push(Frame::Map {
                    pos,
                    anchor,
                    entries: Vec::new(),
                    key: None,
                    cost: Cost { nodes: 1, bytes: 0 },
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor, cost) = match b.stack.pop() {
                    Some(Frame::Seq {
                        pos,
                        anchor,
                        items,
                        cost,
                    }) => (
                        Node {
                            value: Value::Seq(items),
                            pos,
                        },
                        anchor,
                        cost,
                    ),
                    Some(Frame::Map {
                        pos,
                        anchor,
                        entries,
                        cost,
                        ..
                    }) => (
                        Node {
                            value: Value::Map(entries),
                            pos,
                        },
                        anchor,
                        cost,
                    ),
                    None => {
                        return Err(err(
                            pos,
                            "invalid YAML: unbalanced end of a list or mapping",
                            "check the brackets and indentation near here",
                        ))
                    }
                };
                b.finish(node, anchor, cost)?;
            }
            Event::Alias(id) => {
                let Some((node, cost)) = b.anchors.get(&id).cloned() else {
                    return Err(err(
                        pos,
                        "alias refers to an unknown anchor",
                        "define the anchor (`&name`) before using it (`*name`)",
                    ));
                };
                b.charge(cost, pos)?;
                let node = Node {
                    value: node.value,
                    pos,
                };
                b.finish(node, 0, cost)?;
            }
        }
    }
    Ok(b.root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based() {
        let root = parse_tree("a: b\nc:\n  - d\n").unwrap().unwrap();
        let Value::Map(entries) = &root.value else {
            panic!("not a map")
        };
        assert_eq!(entries[0].0.pos, Pos { line: 1, col: 1 });
        assert_eq!(entries[0].1.pos, Pos { line: 1, col: 4 });
        let Value::Seq(items) = &entries[1].1.value else {
            panic!("not a seq")
        };
        assert_eq!(items[0].pos, Pos { line: 3, col: 5 });
    }

    #[test]
    fn alias_bomb_is_refused() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let e = parse_tree(&text).unwrap_err();
        assert!(e.message.contains("alias bomb"), "{e:?}");
    }

    #[test]
    fn deep_nesting_is_refused() {
        let text = "[".repeat(10_000);
        let e = parse_tree(&text).unwrap_err();
        assert!(e.message.contains("nesting"), "{e:?}");
    }

    #[test]
    fn quoted_null_is_a_string() {
        let root = parse_tree("a: 'null'\nb: null\nc:\n").unwrap().unwrap();
        let Value::Map(entries) = &root.value else {
            panic!("not a map")
        };
        assert!(!entries[0].1.is_null());
        assert!(entries[1].1.is_null());
        assert!(entries[2].1.is_null());
    }
}
