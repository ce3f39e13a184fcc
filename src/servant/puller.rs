//! The pulling side of a relayed pull: a servant behind a firewall hears everything through
//! one relay.
//!
//! When the manager concludes that this servant cannot be reached (the article's closing
//! section), it names a relay, and the `pull-NAME` thread connects *out* to it (outbound
//! connections pass the firewall), opens with `PULL` and the same handshake as a sending
//! connection (so each side knows the other's key), says the last message it has shown
//! from each writer (`SEEN`), and then reads `MSG` lines through the listener's own
//! receiving path, checking each line's signature: a relay passes lines on, it cannot
//! alter or invent them. Nothing is lost when the relay changes: the new relay first
//! sends, from its history (`hub`), everything newer than what we have seen, and `Seen`
//! drops what was already shown, by writer id and sequence number.

use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use log::{debug, info};

use super::inbound::Inbound;
use super::linking::{open_link, PING_EVERY};
use super::receiving::{servant_lines, Source};
use crate::handshake::Mode;
use crate::identity::PeerKey;
use crate::lines::LineReader;
use crate::protocol::{PeerLine, CHAT_LINE_LIMIT};

const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// The pulling side: a `pull-NAME` thread for as long as this servant is relayed through
/// one relay. Dropping the `Puller` (the manager named another relay, or we are leaving)
/// closes the connection and ends the thread.
pub struct Puller {
    pub relay_label: String,
    pub addr: SocketAddr,
    /// The key the manager lists for the relay: whoever answers at `addr` must prove it.
    pub key: Option<PeerKey>,
    stop: Arc<AtomicBool>,
    socket: Arc<Mutex<Option<TcpStream>>>,
}

impl Drop for Puller {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(s) = self.socket.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

impl Puller {
    /// Starts pulling from `addr`. `joined` is when we joined the network: the relay
    /// catches us up on writers we have not heard yet only from then on.
    pub fn start(
        relay_label: String,
        addr: SocketAddr,
        key: Option<PeerKey>,
        joined: Instant,
        inbound: Arc<Inbound>,
    ) -> std::io::Result<Puller> {
        let stop = Arc::new(AtomicBool::new(false));
        let socket = Arc::new(Mutex::new(None));
        let (st, so, label) = (Arc::clone(&stop), Arc::clone(&socket), relay_label.clone());
        let relay = Relay { label, addr, key };
        thread::Builder::new()
            .name(format!("pull-{relay_label}"))
            .spawn(move || pull_loop(&relay, joined, &inbound, &st, &so))?;
        Ok(Puller {
            relay_label,
            addr,
            key,
            stop,
            socket,
        })
    }
}

/// The relay a `pull-` thread pulls from.
struct Relay {
    label: String,
    addr: SocketAddr,
    key: Option<PeerKey>,
}

fn pull_loop(
    relay: &Relay,
    joined: Instant,
    inbound: &Inbound,
    stop: &AtomicBool,
    socket: &Mutex<Option<TcpStream>>,
) {
    let (label, addr) = (relay.label.as_str(), relay.addr);
    let mut backoff = BACKOFF_FIRST;
    while !stop.load(Ordering::SeqCst) {
        let started = Instant::now();
        let result = (|| -> std::io::Result<String> {
            let stream = crate::dial::connect(&addr, Duration::from_secs(3))?;
            stream.set_nodelay(true)?;
            stream.set_write_timeout(Some(Duration::from_secs(5)))?;
            // The relay pings every PING_EVERY; four missed pings mean it is gone.
            stream.set_read_timeout(Some(PING_EVERY * 4))?;
            *socket.lock().unwrap_or_else(|p| p.into_inner()) = Some(stream.try_clone()?);
            if stop.load(Ordering::SeqCst) {
                return Ok("stopped".into());
            }
            let mut reader = LineReader::new(&stream, CHAT_LINE_LIMIT);
            open_link(
                &stream,
                &mut reader,
                (&inbound.identity, &inbound.name),
                Mode::Pull,
                relay.key.as_ref(),
                inbound.network.as_ref(),
            )?;
            stream.set_read_timeout(Some(PING_EVERY * 4))?;
            let mut seen = String::new();
            for (origin, incarnation, seq) in inbound.seen.snapshot() {
                seen.push_str(
                    &PeerLine::Seen {
                        origin,
                        incarnation,
                        seq,
                    }
                    .to_line(),
                );
            }
            let ms = joined.elapsed().as_millis() as u64;
            seen.push_str(&PeerLine::Since { ms }.to_line());
            seen.push_str(&PeerLine::End.to_line());
            (&stream).write_all(seen.as_bytes())?;
            info!("pulling from relay {label} at {addr}");
            Ok(servant_lines(
                &mut reader,
                addr,
                Source::Relay,
                label,
                inbound,
                None,
            ))
        })();
        if stop.load(Ordering::SeqCst) {
            break;
        }
        match result {
            Ok(why) => {
                info!("relay {label} connection ended: {why}; reconnecting");
                // Only a connection that lasted resets the backoff: one cut at once (the
                // relay refuses us, or we ban it) would otherwise be retried ten times a
                // second, with a log line on each side every time.
                if started.elapsed() >= BACKOFF_MAX {
                    backoff = BACKOFF_FIRST;
                }
            }
            Err(e) => debug!("cannot pull from relay {label} at {addr}: {e}"),
        }
        thread::sleep(backoff);
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
    debug!("stopped pulling from {label}");
}
