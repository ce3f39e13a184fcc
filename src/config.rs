//! The two configuration files: the manager's `<manager>` and the servant's `config.xml`.
//!
//! The article's servant read `config.xml` with MSXML and queried it with XPath
//! (`./config/bans/ban[target = ...]`). We read the same shape with roxmltree into plain
//! structs once, at start-up, so a mistake in the file is reported before anything listens,
//! with the file, line and column roxmltree gives: `conf/a.xml:3:5: <port> must be ...`.
//! Unknown elements are errors too: a misspelt `<hearbeat>` silently ignored is worse than
//! a refusal to start.
//!
//! Split by file and job: `servant` and `manager` are the two files' shapes, `bans` edits
//! a servant's bans in place, `reader` holds the element checks both files share, and
//! `error` the error they all return.

mod bans;
mod error;
mod manager;
mod reader;
mod servant;

pub use self::bans::{edit_bans, BanEdit};
pub use self::error::ConfigError;
pub use self::manager::ManagerConfig;
pub use self::servant::{is_ban_target, ServantConfig};
