//! Getting listed by a connection manager: connect to the first manager that answers,
//! ask for the list and read our assigned port from its `<me>TRUE</me>` entry (the first
//! half of the article's `Winsock1_DataArrival`), then say `listening`, sign the manager's
//! `<challenge>` and read the whole list that answers it.
//!
//! Both the first start and every reconnection of the `manager-link` thread (`link`) go
//! through these steps.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use crate::identity::{Identity, NetworkKey};
use crate::lines::{LineError, LineReader};
use crate::protocol::{
    listen_proof, ManagerCommand, ManagerMessage, PeerList, PEER_DOC_LINE_LIMIT,
};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Who we are, as the manager should list us, and what proves it.
#[derive(Debug, Clone)]
pub struct Registration {
    pub identity: Arc<Identity>,
    pub name: String,
    pub port: u16,
    pub network: Option<NetworkKey>,
}

/// The managers a config names, in its order; each with the addresses its name resolved to.
pub type Managers = Vec<Vec<SocketAddr>>;

/// Connects to each manager's addresses in turn and runs `talk` on the connection: the
/// first that accepts and answers wins, with the index of its manager. A manager that
/// accepts but does not answer (full, hung, not a manager) is passed over like one that
/// refuses.
pub fn connect_first<T>(
    managers: &[Vec<SocketAddr>],
    mut talk: impl FnMut(TcpStream) -> io::Result<T>,
) -> io::Result<(T, usize)> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
    for (i, addrs) in managers.iter().enumerate() {
        for a in addrs {
            let attempt = crate::dial::connect(a, CONNECT_TIMEOUT).and_then(|s| {
                s.set_nodelay(true)?;
                s.set_write_timeout(Some(WRITE_TIMEOUT))?;
                s.set_read_timeout(Some(ANSWER_TIMEOUT))?;
                talk(s)
            });
            match attempt {
                Ok(t) => return Ok((t, i)),
                Err(e) => last = io::Error::new(e.kind(), format!("{a}: {e}")),
            }
        }
    }
    Err(last)
}

/// Reads lines until one is a whole `<peers>` list (pushes before it are stale).
fn read_list(reader: &mut LineReader<TcpStream>) -> io::Result<PeerList> {
    match read_answer(reader)? {
        Answer::List(list) => Ok(list),
        Answer::Challenge(_) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the manager sent a <challenge> where a list was due",
        )),
    }
}

/// What answers a command: the whole list, or a challenge to sign.
enum Answer {
    List(PeerList),
    Challenge([u8; 32]),
}

/// Reads lines until one is a whole `<peers>` list or a `<challenge>`.
fn read_answer(reader: &mut LineReader<TcpStream>) -> io::Result<Answer> {
    loop {
        let line = match reader.read_line() {
            Ok(Some(l)) => l,
            Ok(None) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the manager closed the connection",
                ))
            }
            Err(LineError::Idle) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no answer from the manager",
                ))
            }
            Err(LineError::Io(e)) => return Err(e),
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
        };
        match ManagerMessage::parse(&line) {
            Ok(ManagerMessage::Peers(list)) => return Ok(Answer::List(list)),
            Ok(ManagerMessage::Challenge { nonce }) => return Ok(Answer::Challenge(nonce)),
            Ok(ManagerMessage::Error(e)) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("the manager says: {}", crate::escape::Shown(&e)),
                ))
            }
            Ok(_) => continue,
            Err(e) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("from the manager: {e}"),
                ))
            }
        }
    }
}

/// The first half of the article's `Winsock1_DataArrival`: ask for the list and read our
/// assigned port from the `<me>TRUE</me>` entry.
pub fn ask_assigned_port(stream: &TcpStream) -> io::Result<(LineReader<TcpStream>, u16)> {
    (&*stream).write_all(b"needs peer list\n")?;
    let mut reader = LineReader::new(stream.try_clone()?, PEER_DOC_LINE_LIMIT);
    let list = read_list(&mut reader)?;
    match list.me() {
        Some(me) => Ok((reader, me.port)),
        None => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the manager's list has no <me>TRUE</me> entry",
        )),
    }
}

/// Says `listening PORT ID NAME KEY`, signs the `<challenge>` that answers it (`prove`),
/// and reads the whole list that answers that.
pub fn register(
    stream: &TcpStream,
    reader: &mut LineReader<TcpStream>,
    me: &Registration,
) -> io::Result<PeerList> {
    let listening = ManagerCommand::Listening {
        port: me.port,
        id: me.identity.id.clone(),
        name: me.name.clone(),
        key: me.identity.key.hex(),
    }
    .to_line();
    (&*stream).write_all(format!("{listening}\n").as_bytes())?;
    let nonce = match read_answer(reader)? {
        Answer::Challenge(nonce) => nonce,
        Answer::List(_) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the manager answered listening without a <challenge> (a manager older than this servant?)",
            ))
        }
    };
    let signed = listen_proof(&nonce, &listening);
    let prove = ManagerCommand::Prove {
        sig: me.identity.sign(&signed),
        net: me.network.as_ref().map(|k| k.prove("listen", &signed)),
    };
    (&*stream).write_all(format!("{}\n", prove.to_line()).as_bytes())?;
    read_list(reader)
}
