//! The two configuration files: the manager's `<manager>` and the servant's `config.xml`.
//!
//! The article's servant read `config.xml` with MSXML and queried it with XPath
//! (`./config/bans/ban[target = ...]`). We read the same shape with roxmltree into plain
//! structs once, at start-up, so a mistake in the file is reported before anything listens,
//! with the file, line and column roxmltree gives: `conf/a.xml:3:5: <port> must be ...`.
//! Unknown elements are errors too: a misspelt `<hearbeat>` silently ignored is worse than
//! a refusal to start.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use roxmltree::{Document, Node};

use crate::protocol::check_token;

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

/// The connection manager's settings (`<manager>`).
#[derive(Debug, Clone, PartialEq)]
pub struct ManagerConfig {
    /// `<bind>`: the address to listen on (default 0.0.0.0).
    pub bind: IpAddr,
    /// `<port>`: the port servants connect to (the article's 85; 0 lets the OS choose).
    pub port: u16,
    /// `<firstport>`: the first listen port handed out (the article's 2224).
    pub first_port: u16,
    /// `<timeout>`: seconds of silence after which a listed servant is dropped.
    pub timeout: Duration,
    /// `<idletimeout>`: seconds a client that never listens may stay connected silently.
    pub idle_timeout: Duration,
    /// `<maxconnections>`: connections held at once; newcomers beyond it are refused.
    pub max_connections: usize,
    /// `<maxperaddress>`: connections held at once from one address.
    pub max_per_address: usize,
    /// `<complaints>`: complaints each peer must make before it backs the suspicion that a
    /// servant is unreachable (the article suggests 2 or 3).
    pub complaints: u32,
    /// `<probe>`: connect back to each servant that lists itself, and relay to it at once
    /// if that fails (true or false).
    pub probe: bool,
    /// `<trustafter>`: how long a servant must be listed before its complaints count and
    /// the manager may choose it as a relay (seconds, default 30).
    pub trust_after: Duration,
    /// `<networkkey>`: a file holding the network's shared secret; only servants that
    /// prove it are listed (none: any servant that proves its own key).
    pub network_key: Option<PathBuf>,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        ManagerConfig {
            bind: IpAddr::from([0, 0, 0, 0]),
            port: 8585,
            first_port: 2224,
            timeout: Duration::from_secs(6),
            idle_timeout: Duration::from_secs(60),
            max_connections: 4000,
            max_per_address: 64,
            complaints: 3,
            probe: true,
            trust_after: Duration::from_secs(30),
            network_key: None,
        }
    }
}

/// A servant's settings (`<config>`, the article's config.xml).
#[derive(Debug, Clone, PartialEq)]
pub struct ServantConfig {
    /// `<connectionmgr>`, once or more: the connection managers (host name or address, and
    /// port), tried in this order whenever the servant (re)connects.
    pub managers: Vec<(String, u16)>,
    /// `<port>`: the connection managers' port, unless a `<connectionmgr port="...">` says
    /// otherwise.
    pub manager_port: u16,
    /// `<name>`: shown on this servant's messages (default: `servant-` and a part of its id).
    pub name: Option<String>,
    /// `<listen>`: listen on this port instead of the one the manager assigns (0: any).
    pub listen: Option<u16>,
    /// `<bind>`: the address to listen on (default 0.0.0.0).
    pub bind: IpAddr,
    /// `<publicport>`: the port to tell the manager, when it differs from the one we listen
    /// on (a router forwarding another port to us).
    pub public_port: Option<u16>,
    /// `<heartbeat>`: seconds between heartbeats to the manager.
    pub heartbeat: Duration,
    /// `<queue>`: messages queued per peer before the oldest is dropped.
    pub queue: usize,
    /// `<maxconnections>`: incoming connections held at once.
    pub max_connections: usize,
    /// `<maxperaddress>`: incoming connections held at once from one address.
    pub max_per_address: usize,
    /// `<bans><ban><target>`: addresses and host names whose connections are refused.
    pub bans: Vec<String>,
    /// `<share>`: the folder whose files this servant shares.
    pub share: Option<PathBuf>,
    /// `<downloads>`: where `/get` puts the files it fetches.
    pub downloads: Option<PathBuf>,
    /// `<workers>`: pieces fetched at once by one download.
    pub workers: usize,
    /// `<uploads>`: file connections served at once.
    pub uploads: usize,
    /// `<identity>`: the servant's key file (default: the config file's path with `.key`).
    pub identity: Option<PathBuf>,
    /// `<knownpeers>`: the names and keys this servant has pinned (default: the config
    /// file's path with `.known`).
    pub known_peers: Option<PathBuf>,
    /// `<networkkey>`: a file holding the network's shared secret; only servants that
    /// prove it are accepted (none: any key may join).
    pub network_key: Option<PathBuf>,
    /// `<fullmesh>`: while the network has at most this many servants, each links to
    /// every other, as the article does; past it, the servant joins the overlay.
    pub full_mesh: usize,
    /// `<degree>`: the overlay's active neighbours per servant (its D).
    pub degree: usize,
    /// `<bootstrap>`, once or more: `host:port` of servants to join the overlay through
    /// when no manager answers.
    pub bootstrap: Vec<String>,
}

impl Default for ServantConfig {
    fn default() -> Self {
        ServantConfig {
            managers: Vec::new(),
            manager_port: 8585,
            name: None,
            listen: None,
            bind: IpAddr::from([0, 0, 0, 0]),
            public_port: None,
            heartbeat: Duration::from_secs(2),
            queue: 4096,
            max_connections: 512,
            max_per_address: 64,
            share: None,
            downloads: None,
            workers: 4,
            uploads: 8,
            bans: Vec::new(),
            identity: None,
            known_peers: None,
            network_key: None,
            full_mesh: 8,
            degree: 6,
            bootstrap: Vec::new(),
        }
    }
}

/// Reads one file and walks its elements, turning every problem into a `ConfigError`
/// that names the file and the position.
struct Reader<'a, 'input> {
    path: &'a Path,
    doc: &'a Document<'input>,
}

impl<'a, 'input> Reader<'a, 'input> {
    fn invalid(&self, node: Node, message: String) -> ConfigError {
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

    fn text<'n>(&self, node: Node<'n, 'input>) -> Result<&'n str, ConfigError> {
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

    fn number<T>(&self, node: Node, what: &str, lo: T, hi: T) -> Result<T, ConfigError>
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

    fn seconds(&self, node: Node, what: &str) -> Result<Duration, ConfigError> {
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
    fn folder(&self, node: Node, what: &str, config: &Path) -> Result<PathBuf, ConfigError> {
        self.path_in(node, what, "a folder", config)
    }

    /// A file, relative to the configuration file's own folder unless absolute.
    fn file(&self, node: Node, what: &str, config: &Path) -> Result<PathBuf, ConfigError> {
        self.path_in(node, what, "a file", config)
    }

    fn path_in(
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

    fn boolean(&self, node: Node, what: &str) -> Result<bool, ConfigError> {
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

    fn ip(&self, node: Node, what: &str) -> Result<IpAddr, ConfigError> {
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
    fn elements<'n>(&self, node: Node<'n, 'input>) -> Result<Vec<Node<'n, 'input>>, ConfigError> {
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

    fn unknown(&self, node: Node, parent: &str, known: &str) -> ConfigError {
        self.invalid(
            node,
            format!(
                "unknown element <{}> in <{parent}> (known: {known})",
                node.tag_name().name()
            ),
        )
    }
}

fn parse_file<T>(
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

fn read_file(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })
}

impl ManagerConfig {
    pub fn load(path: &Path) -> Result<ManagerConfig, ConfigError> {
        Self::parse(path, &read_file(path)?)
    }

    /// Parses the text of a manager configuration; `path` is used in messages only.
    pub fn parse(path: &Path, text: &str) -> Result<ManagerConfig, ConfigError> {
        parse_file(path, text, "manager", |r, root| {
            let mut c = ManagerConfig::default();
            let mut saw_port = false;
            for el in r.elements(root)? {
                match el.tag_name().name() {
                    "port" => {
                        c.port = r.number(el, "port", 0, u16::MAX)?;
                        saw_port = true;
                    }
                    "bind" => c.bind = r.ip(el, "bind")?,
                    "firstport" => c.first_port = r.number(el, "firstport", 1, u16::MAX)?,
                    "timeout" => c.timeout = r.seconds(el, "timeout")?,
                    "idletimeout" => c.idle_timeout = r.seconds(el, "idletimeout")?,
                    "complaints" => c.complaints = r.number(el, "complaints", 1, 1000)?,
                    "maxperaddress" => {
                        c.max_per_address = r.number(el, "maxperaddress", 1, 1_000_000)?
                    }
                    "probe" => c.probe = r.boolean(el, "probe")?,
                    "trustafter" => c.trust_after = r.seconds(el, "trustafter")?,
                    "networkkey" => c.network_key = Some(r.file(el, "networkkey", path)?),
                    "maxconnections" => {
                        c.max_connections = r.number(el, "maxconnections", 1, 1_000_000)?
                    }
                    _ => {
                        return Err(r.unknown(
                            el,
                            "manager",
                            "port, bind, firstport, timeout, idletimeout, maxconnections, maxperaddress, complaints, probe, trustafter, networkkey",
                        ))
                    }
                }
            }
            if !saw_port {
                return Err(r.invalid(root, "missing <port> in <manager>".into()));
            }
            Ok(c)
        })
    }
}

impl ServantConfig {
    pub fn load(path: &Path) -> Result<ServantConfig, ConfigError> {
        Self::parse(path, &read_file(path)?)
    }

    /// Parses the text of a servant configuration; `path` is used in messages only.
    pub fn parse(path: &Path, text: &str) -> Result<ServantConfig, ConfigError> {
        parse_file(path, text, "config", |r, root| {
            let mut c = ServantConfig::default();
            // Each manager's host, and its own port if it names one.
            let mut managers: Vec<(String, Option<u16>)> = Vec::new();
            for el in r.elements(root)? {
                match el.tag_name().name() {
                    "connectionmgr" => {
                        let host = r.text(el)?;
                        if host.is_empty() || host.contains(char::is_whitespace) {
                            return Err(r.invalid(el, format!("<connectionmgr> must be a host name or address, found {host:?}")));
                        }
                        let mut port = None;
                        for a in el.attributes() {
                            if a.name() != "port" {
                                return Err(r.invalid(el, format!("<connectionmgr> has no attribute {:?} (known: port)", a.name())));
                            }
                            match a.value().trim().parse::<u16>() {
                                Ok(p) if p >= 1 => port = Some(p),
                                _ => return Err(r.invalid(el, format!("the port of <connectionmgr> must be a number from 1 to 65535, found {:?}", a.value()))),
                            }
                        }
                        managers.push((host.to_owned(), port));
                    }
                    "port" => c.manager_port = r.number(el, "port", 1, u16::MAX)?,
                    "name" => {
                        let name = r.text(el)?;
                        check_token("<name>", name).map_err(|e| r.invalid(el, e.to_string()))?;
                        c.name = Some(name.to_owned());
                    }
                    "listen" => c.listen = Some(r.number(el, "listen", 0, u16::MAX)?),
                    "bind" => c.bind = r.ip(el, "bind")?,
                    "heartbeat" => c.heartbeat = r.seconds(el, "heartbeat")?,
                    "publicport" => {
                        c.public_port = Some(r.number(el, "publicport", 1, u16::MAX)?)
                    }
                    "queue" => c.queue = r.number(el, "queue", 1, 1_000_000)?,
                    "share" => c.share = Some(r.folder(el, "share", path)?),
                    "downloads" => c.downloads = Some(r.folder(el, "downloads", path)?),
                    "identity" => c.identity = Some(r.file(el, "identity", path)?),
                    "knownpeers" => c.known_peers = Some(r.file(el, "knownpeers", path)?),
                    "networkkey" => c.network_key = Some(r.file(el, "networkkey", path)?),
                    "workers" => c.workers = r.number(el, "workers", 1, 32)?,
                    "fullmesh" => c.full_mesh = r.number(el, "fullmesh", 0, 1_000_000)?,
                    "degree" => c.degree = r.number(el, "degree", 1, 12)?,
                    "bootstrap" => {
                        let addr = r.text(el)?;
                        if addr.rsplit_once(':').is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err()) {
                            return Err(r.invalid(el, format!("<bootstrap> must be host:port, found {addr:?}")));
                        }
                        c.bootstrap.push(addr.to_owned());
                    }
                    "uploads" => c.uploads = r.number(el, "uploads", 1, 1000)?,
                    "maxconnections" => {
                        c.max_connections = r.number(el, "maxconnections", 1, 1_000_000)?
                    }
                    "maxperaddress" => {
                        c.max_per_address = r.number(el, "maxperaddress", 1, 1_000_000)?
                    }
                    "bans" => {
                        for ban in r.elements(el)? {
                            if ban.tag_name().name() != "ban" {
                                return Err(r.unknown(ban, "bans", "ban"));
                            }
                            let mut target = None;
                            for t in r.elements(ban)? {
                                if t.tag_name().name() != "target" {
                                    return Err(r.unknown(t, "ban", "target"));
                                }
                                let text = r.text(t)?;
                                if !is_ban_target(text) {
                                    return Err(r.invalid(t, format!("<target> must be an IP address or host name, found {text:?}")));
                                }
                                target = Some(text.to_owned());
                            }
                            match target {
                                Some(t) => c.bans.push(t),
                                None => {
                                    return Err(r.invalid(ban, "missing <target> in <ban>".into()))
                                }
                            }
                        }
                    }
                    _ => {
                        return Err(r.unknown(
                            el,
                            "config",
                            "connectionmgr, port, name, listen, bind, publicport, heartbeat, queue, maxconnections, maxperaddress, share, downloads, workers, uploads, bans, identity, knownpeers, networkkey, fullmesh, degree, bootstrap",
                        ))
                    }
                }
            }
            if managers.is_empty() {
                return Err(r.invalid(root, "missing <connectionmgr> in <config>".into()));
            }
            c.managers = managers
                .into_iter()
                .map(|(host, port)| (host, port.unwrap_or(c.manager_port)))
                .collect();
            Ok(c)
        })
    }
}

impl ServantConfig {
    /// The key file of the servant whose configuration is at `config_path`: `<identity>`,
    /// or the configuration's own path with `.key` in place of its extension
    /// (`alice.xml` → `alice.key`), so servants with different configurations never
    /// share a key.
    pub fn key_path(&self, config_path: &Path) -> PathBuf {
        self.identity
            .clone()
            .unwrap_or_else(|| config_path.with_extension("key"))
    }

    /// The known-peers file: `<knownpeers>`, or the configuration's path with `.known`.
    pub fn known_path(&self, config_path: &Path) -> PathBuf {
        self.known_peers
            .clone()
            .unwrap_or_else(|| config_path.with_extension("known"))
    }
}

/// An IP address or a host name: letters, digits and `.-_:%` (IPv6 and its zone), at most
/// 253 bytes.
pub fn is_ban_target(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 253
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-_:%".contains(c))
}

/// A change to a servant's `<bans>`.
#[derive(Debug, Clone, Copy)]
pub enum BanEdit<'a> {
    Add(&'a str),
    Remove(&'a str),
}

/// Applies `edit` to the `<bans>` of the servant configuration at `path` and writes the
/// file back atomically (a temporary file beside it, then a rename), changing nothing
/// else in it: comments, order and layout stay as the user wrote them. Returns the new
/// list of targets.
pub fn edit_bans(path: &Path, edit: BanEdit) -> Result<Vec<String>, ConfigError> {
    let text = read_file(path)?;
    let before = ServantConfig::parse(path, &text)?;
    let new_text = splice_bans(&text, edit).map_err(|message| ConfigError::Invalid {
        path: path.to_owned(),
        row: 1,
        col: 1,
        message,
    })?;
    if new_text == text {
        return Ok(before.bans);
    }
    let after = ServantConfig::parse(path, &new_text)?;
    crate::files::write_atomically(path, new_text.as_bytes(), crate::files::Access::AsBefore)
        .map_err(|source| ConfigError::Write {
            path: path.to_owned(),
            source,
        })?;
    Ok(after.bans)
}

/// The text of a servant configuration with `edit` applied to its `<bans>`.
fn splice_bans(text: &str, edit: BanEdit) -> Result<String, String> {
    let doc = Document::parse(text).map_err(|e| e.to_string())?;
    let root = doc.root_element();
    let bans = root
        .children()
        .find(|c| c.is_element() && c.tag_name().name() == "bans");
    let targets_of = |ban: Node| {
        ban.children()
            .find(|c| c.has_tag_name("target"))
            .and_then(|t| t.text())
            .map(str::trim)
            .unwrap_or("")
            .to_owned()
    };
    let indent_at = |pos: usize| -> String {
        let line_start = text[..pos].rfind('\n').map_or(0, |i| i + 1);
        text[line_start..pos]
            .chars()
            .take_while(|c| c.is_whitespace())
            .collect()
    };
    match edit {
        BanEdit::Add(target) => {
            if !is_ban_target(target) {
                return Err(format!("{target:?} is not an IP address or host name"));
            }
            if let Some(bans) = bans {
                if bans
                    .children()
                    .filter(|c| c.has_tag_name("ban"))
                    .any(|b| targets_of(b) == target)
                {
                    return Ok(text.to_owned());
                }
                let range = bans.range();
                let indent = indent_at(range.start);
                let ban = format!("<ban><target>{target}</target></ban>");
                if text[range.clone()].ends_with("/>") {
                    let whole = format!("<bans>\n{indent}  {ban}\n{indent}</bans>");
                    return Ok(format!(
                        "{}{whole}{}",
                        &text[..range.start],
                        &text[range.end..]
                    ));
                }
                let close = range.end - "</bans>".len();
                // Inserted just before `</bans>`, which keeps its own indentation.
                let insert = if text[..close].ends_with(&format!("\n{indent}")) {
                    format!("  {ban}\n{indent}")
                } else {
                    ban
                };
                Ok(format!("{}{insert}{}", &text[..close], &text[close..]))
            } else {
                let range = root.range();
                let close = range.end - "</config>".len();
                let indent = format!("{}  ", indent_at(range.start));
                let block = format!(
                    "<bans>\n{indent}  <ban><target>{target}</target></ban>\n{indent}</bans>"
                );
                let insert = if text[..close].ends_with('\n') {
                    format!("{indent}{block}\n")
                } else {
                    format!("{block}\n")
                };
                Ok(format!("{}{insert}{}", &text[..close], &text[close..]))
            }
        }
        BanEdit::Remove(target) => {
            let Some(bans) = bans else {
                return Ok(text.to_owned());
            };
            let mut out = String::with_capacity(text.len());
            let mut from = 0;
            for ban in bans
                .children()
                .filter(|c| c.has_tag_name("ban") && targets_of(*c) == target)
            {
                let range = ban.range();
                // Take the line with it when the ban stood on a line of its own.
                let line_start = text[..range.start].rfind('\n').map_or(0, |i| i + 1);
                let start = if text[line_start..range.start].trim().is_empty() {
                    line_start.max(from)
                } else {
                    range.start
                };
                let mut end = range.end;
                if start == line_start && text[end..].starts_with('\n') {
                    end += 1;
                }
                out.push_str(&text[from..start]);
                from = end;
            }
            out.push_str(&text[from..]);
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn servant(text: &str) -> Result<ServantConfig, String> {
        ServantConfig::parse(Path::new("config.xml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn the_articles_config_reads() {
        let c = servant(
            "<config>\n <connectionmgr>127.0.0.1</connectionmgr>\n <port>85</port>\n <bans>\n  <ban><target>1.1.1.1</target></ban>\n  <ban><target>fooUser234.fooISP23423.com</target></ban>\n </bans>\n</config>",
        )
        .unwrap();
        assert_eq!(c.managers, vec![("127.0.0.1".to_owned(), 85)]);
        assert_eq!(c.bans, vec!["1.1.1.1", "fooUser234.fooISP23423.com"]);
    }

    #[test]
    fn several_managers_are_kept_in_order_with_their_ports() {
        let c = servant(
            "<config>\n <connectionmgr>a.lan</connectionmgr>\n <connectionmgr port=\"9000\">b.lan</connectionmgr>\n <port>8600</port>\n</config>",
        )
        .unwrap();
        assert_eq!(
            c.managers,
            vec![("a.lan".to_owned(), 8600), ("b.lan".to_owned(), 9000)]
        );
        assert_eq!(
            servant("<config>\n <connectionmgr port=\"0\">a</connectionmgr>\n</config>").unwrap_err(),
            "config.xml:2:2: the port of <connectionmgr> must be a number from 1 to 65535, found \"0\""
        );
        assert_eq!(
            servant("<config>\n <connectionmgr host=\"b\">a</connectionmgr>\n</config>")
                .unwrap_err(),
            "config.xml:2:2: <connectionmgr> has no attribute \"host\" (known: port)"
        );
        // Other elements still may not repeat.
        assert_eq!(
            servant("<config>\n <connectionmgr>a</connectionmgr>\n <port>1</port>\n <port>2</port>\n</config>").unwrap_err(),
            "config.xml:4:2: <port> appears twice in <config>"
        );
    }

    #[test]
    fn errors_name_file_line_and_element() {
        assert_eq!(
            servant("<config>\n  <port>85</port>\n</config>").unwrap_err(),
            "config.xml:1:1: missing <connectionmgr> in <config>"
        );
        assert_eq!(
            servant(
                "<config>\n <connectionmgr>h</connectionmgr>\n  <port>eighty</port>\n</config>"
            )
            .unwrap_err(),
            "config.xml:3:3: <port> must be a number from 1 to 65535, found \"eighty\""
        );
        assert_eq!(
            servant("<config><connectionmgr>h</connectionmgr><hearbeat>1</hearbeat></config>").unwrap_err(),
            "config.xml:1:41: unknown element <hearbeat> in <config> (known: connectionmgr, port, name, listen, bind, publicport, heartbeat, queue, maxconnections, maxperaddress, share, downloads, workers, uploads, bans, identity, knownpeers, networkkey, fullmesh, degree, bootstrap)"
        );
        let e = servant("<config><connectionmgr>h</connectionmgr>\n<port>85</config>").unwrap_err();
        assert!(e.starts_with("config.xml:2:"), "{e}");
        assert!(e.contains("malformed XML: "), "{e}");
        assert!(!e.contains(" at 2:"), "the position is said once: {e}");
        assert_eq!(
            servant("<config><connectionmgr>h</connectionmgr><name>a b</name></config>")
                .unwrap_err(),
            "config.xml:1:41: <name> \"a b\" contains ' '"
        );
    }

    #[test]
    fn repeated_elements_are_refused_but_bans_repeat() {
        assert_eq!(
            servant(
                "<config><connectionmgr>h</connectionmgr><port>1</port><port>2</port></config>"
            )
            .unwrap_err(),
            "config.xml:1:55: <port> appears twice in <config>"
        );
        assert_eq!(
            servant("<config><connectionmgr>h</connectionmgr><bans><ban><target>a</target><target>b</target></ban></bans></config>")
                .unwrap_err(),
            "config.xml:1:70: <target> appears twice in <ban>"
        );
        let c = servant("<config><connectionmgr>h</connectionmgr><bans><ban><target>a</target></ban><ban><target>b</target></ban></bans></config>").unwrap();
        assert_eq!(c.bans, vec!["a", "b"]);
    }

    #[test]
    fn bans_are_added_and_removed_keeping_the_rest_of_the_file() {
        let original = "<?xml version=\"1.0\"?>\n<!-- mine -->\n<config>\n  <connectionmgr>h</connectionmgr> <!-- the manager -->\n  <bans>\n    <ban><target>1.1.1.1</target></ban>\n  </bans>\n</config>\n";
        let added = splice_bans(original, BanEdit::Add("bob.lan")).unwrap();
        assert_eq!(
            added,
            "<?xml version=\"1.0\"?>\n<!-- mine -->\n<config>\n  <connectionmgr>h</connectionmgr> <!-- the manager -->\n  <bans>\n    <ban><target>1.1.1.1</target></ban>\n    <ban><target>bob.lan</target></ban>\n  </bans>\n</config>\n"
        );
        assert_eq!(
            splice_bans(&added, BanEdit::Add("bob.lan")).unwrap(),
            added,
            "no duplicates"
        );
        let removed = splice_bans(&added, BanEdit::Remove("1.1.1.1")).unwrap();
        assert_eq!(
            removed,
            "<?xml version=\"1.0\"?>\n<!-- mine -->\n<config>\n  <connectionmgr>h</connectionmgr> <!-- the manager -->\n  <bans>\n    <ban><target>bob.lan</target></ban>\n  </bans>\n</config>\n"
        );
        let none = "<config>\n  <connectionmgr>h</connectionmgr>\n</config>\n";
        let with = splice_bans(none, BanEdit::Add("::1")).unwrap();
        assert_eq!(
            with,
            "<config>\n  <connectionmgr>h</connectionmgr>\n  <bans>\n    <ban><target>::1</target></ban>\n  </bans>\n</config>\n"
        );
        assert_eq!(servant(&with).unwrap().bans, vec!["::1"]);
        assert!(splice_bans(none, BanEdit::Add("<evil>")).is_err());
    }

    #[test]
    fn edit_bans_writes_the_file_atomically() {
        let dir = std::env::temp_dir().join(format!("genp2p-bans-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config.xml");
        std::fs::write(&path, "<config><connectionmgr>h</connectionmgr></config>").unwrap();
        assert_eq!(
            edit_bans(&path, BanEdit::Add("10.0.0.9")).unwrap(),
            vec!["10.0.0.9"]
        );
        assert_eq!(
            edit_bans(&path, BanEdit::Remove("10.0.0.9")).unwrap(),
            Vec::<String>::new()
        );
        let left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            left,
            vec![std::ffi::OsString::from("config.xml")],
            "no temporary file is left"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn manager_config_defaults_and_limits() {
        let m = ManagerConfig::parse(
            Path::new("m.xml"),
            "<manager><port>0</port><timeout>1.5</timeout></manager>",
        )
        .unwrap();
        assert_eq!(m.port, 0);
        assert_eq!(m.timeout, Duration::from_millis(1500));
        assert_eq!(m.first_port, 2224);
        let e = ManagerConfig::parse(
            Path::new("m.xml"),
            "<manager><port>85</port><timeout>0</timeout></manager>",
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "m.xml:1:25: <timeout> must be a number of seconds above 0 (0.5 is fine), found \"0\""
        );
    }
}
