//! Reading a configuration file's XML: the checks both files' elements go through.
//!
//! Text, numbers in a range, seconds, booleans, addresses, paths relative to the file, and
//! the rule that an element may not repeat or hold stray text, each turned into a
//! `ConfigError` at the element's position. Kept apart from the two files' shapes
//! (`manager`, `servant`) so both read their elements the same way.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use roxmltree::{Document, Node};

use super::error::ConfigError;

/// Reads one file and walks its elements, turning every problem into a `ConfigError`
/// that names the file and the position.
pub(super) struct Reader<'a, 'input> {
    path: &'a Path,
    doc: &'a Document<'input>,
}

impl<'a, 'input> Reader<'a, 'input> {
    pub(super) fn invalid(&self, node: Node, message: String) -> ConfigError {
        let mut start = node.range().start;
        if node.is_text() {
            // Point at the text itself, not at the end of the line before it.
            let raw = &self.doc.input_text()[node.range()];
            start += raw.len() - raw.trim_start().len();
        }
        let pos = self.doc.text_pos_at(start);
        ConfigError::Invalid {
            path: self.path.to_owned(),
            row: pos.row,
            col: pos.col,
            message,
        }
    }

    pub(super) fn text<'n>(&self, node: Node<'n, 'input>) -> Result<&'n str, ConfigError> {
        if let Some(child) = node.children().find(|c| c.is_element()) {
            return Err(self.invalid(
                child,
                format!(
                    "<{}> may hold only text, found <{}>",
                    node.tag_name().name(),
                    child.tag_name().name()
                ),
            ));
        }
        Ok(node.text().unwrap_or("").trim())
    }

    pub(super) fn number<T>(&self, node: Node, what: &str, lo: T, hi: T) -> Result<T, ConfigError>
    where
        T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
    {
        let text = self.text(node)?;
        match text.parse::<T>() {
            Ok(v) if v >= lo && v <= hi => Ok(v),
            _ => Err(self.invalid(
                node,
                format!("<{what}> must be a number from {lo} to {hi}, found {text:?}"),
            )),
        }
    }

    pub(super) fn seconds(&self, node: Node, what: &str) -> Result<Duration, ConfigError> {
        let text = self.text(node)?;
        match text.parse::<f64>() {
            Ok(s) if s > 0.0 && s <= 86_400.0 => Ok(Duration::from_secs_f64(s)),
            _ => Err(self.invalid(
                node,
                format!(
                    "<{what}> must be a number of seconds above 0 (0.5 is fine), found {text:?}"
                ),
            )),
        }
    }

    /// A folder, relative to the configuration file's own folder unless absolute.
    pub(super) fn folder(
        &self,
        node: Node,
        what: &str,
        config: &Path,
    ) -> Result<PathBuf, ConfigError> {
        self.path_in(node, what, "a folder", config)
    }

    /// A file, relative to the configuration file's own folder unless absolute.
    pub(super) fn file(
        &self,
        node: Node,
        what: &str,
        config: &Path,
    ) -> Result<PathBuf, ConfigError> {
        self.path_in(node, what, "a file", config)
    }

    pub(super) fn path_in(
        &self,
        node: Node,
        what: &str,
        kind: &str,
        config: &Path,
    ) -> Result<PathBuf, ConfigError> {
        let text = self.text(node)?;
        if text.is_empty() {
            return Err(self.invalid(node, format!("<{what}> must name {kind}")));
        }
        let p = Path::new(text);
        Ok(if p.is_absolute() {
            p.to_owned()
        } else {
            config.parent().unwrap_or(Path::new(".")).join(p)
        })
    }

    pub(super) fn boolean(&self, node: Node, what: &str) -> Result<bool, ConfigError> {
        let text = self.text(node)?;
        match text.to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" => Ok(true),
            "false" | "no" | "0" => Ok(false),
            _ => Err(self.invalid(
                node,
                format!("<{what}> must be true or false, found {text:?}"),
            )),
        }
    }

    pub(super) fn ip(&self, node: Node, what: &str) -> Result<IpAddr, ConfigError> {
        let text = self.text(node)?;
        text.parse().map_err(|_| {
            self.invalid(
                node,
                format!("<{what}> must be an IP address, found {text:?}"),
            )
        })
    }

    /// Children that are elements; rejects text outside them.
    ///
    /// A second element of the same name is refused too (only `<ban>`, `<connectionmgr>`
    /// and `<bootstrap>` may repeat): a file that says a thing twice must not silently mean the last.
    pub(super) fn elements<'n>(
        &self,
        node: Node<'n, 'input>,
    ) -> Result<Vec<Node<'n, 'input>>, ConfigError> {
        let mut out: Vec<Node<'n, 'input>> = Vec::new();
        for c in node.children() {
            if c.is_element() {
                let name = c.tag_name().name();
                let repeats = name == "ban" || name == "connectionmgr" || name == "bootstrap";
                if !repeats && out.iter().any(|o| o.tag_name().name() == name) {
                    let parent = node.tag_name().name();
                    return Err(self.invalid(c, format!("<{name}> appears twice in <{parent}>")));
                }
                out.push(c);
            } else if c.is_text() && !c.text().unwrap_or("").trim().is_empty() {
                return Err(self.invalid(
                    c,
                    format!(
                        "unexpected text {:?} in <{}>",
                        c.text().unwrap_or("").trim(),
                        node.tag_name().name()
                    ),
                ));
            }
        }
        Ok(out)
    }

    pub(super) fn unknown(&self, node: Node, parent: &str, known: &str) -> ConfigError {
        self.invalid(
            node,
            format!(
                "unknown element <{}> in <{parent}> (known: {known})",
                node.tag_name().name()
            ),
        )
    }
}

pub(super) fn parse_file<T>(
    path: &Path,
    text: &str,
    root_name: &str,
    read: impl FnOnce(&Reader, Node) -> Result<T, ConfigError>,
) -> Result<T, ConfigError> {
    let doc = Document::parse(text).map_err(|source| ConfigError::Xml {
        path: path.to_owned(),
        source,
    })?;
    let reader = Reader { path, doc: &doc };
    let root = doc.root_element();
    if root.tag_name().name() != root_name {
        return Err(reader.invalid(
            root,
            format!(
                "the root element must be <{root_name}>, found <{}>",
                root.tag_name().name()
            ),
        ));
    }
    read(&reader, root)
}

pub(super) fn read_file(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })
}
