//! The servant's configuration file (the article's `config.xml`): its settings, their
//! defaults, and where its key and known-peers files are.
//!
//! What a ban's target may be is said here, where `<bans>` is read; changing the bans in
//! the file is `bans`'s job.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::error::ConfigError;
use super::reader::{parse_file, read_file};
use crate::protocol::check_token;

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
}
