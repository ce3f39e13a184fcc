//! The connection manager's configuration file (`<manager>`): its settings and their
//! defaults.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::error::ConfigError;
use super::reader::{parse_file, read_file};

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

#[cfg(test)]
mod tests {
    use super::*;

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
