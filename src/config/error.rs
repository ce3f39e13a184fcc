//! Why a configuration file cannot be used: the one error both files share.
//!
//! Every message names the file and, where the XML says something wrong, the line and
//! column roxmltree gives. It is the lowest file of `config`: the readers and the ban
//! editor all return it.

use std::fmt;
use std::path::PathBuf;

/// A configuration file that cannot be used.
#[derive(Debug)]
pub enum ConfigError {
    /// The file could not be read.
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not well-formed XML.
    Xml {
        path: PathBuf,
        source: roxmltree::Error,
    },
    /// The file could not be written back (after `/ban` or `/unban`).
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The XML is well formed but says something wrong, at `row:col`.
    Invalid {
        path: PathBuf,
        row: u32,
        col: u32,
        message: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { path, source } => {
                write!(f, "{}: cannot read: {source}", path.display())
            }
            ConfigError::Write { path, source } => {
                write!(f, "{}: cannot write: {source}", path.display())
            }
            ConfigError::Xml { path, source } => {
                let pos = source.pos();
                // roxmltree's message ends with "at row:col"; say the position our way.
                let msg = source.to_string();
                let msg = msg.rsplit_once(" at ").map_or(msg.as_str(), |(m, _)| m);
                write!(
                    f,
                    "{}:{}:{}: malformed XML: {msg}",
                    path.display(),
                    pos.row,
                    pos.col
                )
            }
            ConfigError::Invalid {
                path,
                row,
                col,
                message,
            } => {
                write!(f, "{}:{row}:{col}: {message}", path.display())
            }
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::Read { source, .. } | ConfigError::Write { source, .. } => Some(source),
            ConfigError::Xml { source, .. } => Some(source),
            ConfigError::Invalid { .. } => None,
        }
    }
}
