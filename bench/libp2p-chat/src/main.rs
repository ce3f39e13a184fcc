//! Baseline chat node for genp2p's benchmarks: libp2p gossipsub over TCP, with noise
//! and yamux, as in rust-libp2p's chat example.
//!
//! Interface (a benchmark driver depends on it):
//! - `libp2p-chat [--dial PORT]...` listens on /ip4/127.0.0.1/tcp/0 and dials
//!   /ip4/127.0.0.1/tcp/PORT for every --dial; every node subscribes to "genp2p-bench".
//! - stdout: first `PORT N`, then the payload of every gossip message received, one a line.
//! - stdin: every line is published as one message (payload = the line without "\n").
//! - stderr: `SUBSCRIBED K` whenever the number of peers subscribed to the topic changes,
//!   plus diagnostics.
//! - Exits ~200 ms after end of input, and in any case after BENCH_MAX_SECS (default 1200).

use std::collections::VecDeque;
use std::io::Write;
use std::time::Duration;

use libp2p::futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic, MessageAuthenticity, PublishError, ValidationMode};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::SwarmEvent;
use libp2p::{noise, tcp, yamux, Multiaddr};
use tokio::io::AsyncBufReadExt;
use tokio::time::{sleep_until, Instant};

type Gossipsub =
    gossipsub::Behaviour<gossipsub::IdentityTransform, gossipsub::AllowAllSubscriptionFilter>;

const TOPIC: &str = "genp2p-bench";
/// Wait between two attempts at publishing a line that could not be published.
const RETRY: Duration = Duration::from_millis(10);
/// Time left for the connection handlers to write out what is queued, after end of input.
const EOF_GRACE: Duration = Duration::from_millis(200);
/// After end of input, how long lines that still cannot be published are retried.
const EOF_DRAIN_LIMIT: Duration = Duration::from_secs(10);
/// Idle connections are kept open this long (longer than any benchmark).
const IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
/// Per-peer send queue of gossipsub (Publish/Forward/IHave/IWant). The default, 5000,
/// silently drops messages to a peer whose queue is full as long as at least one other
/// peer's queue took the message; a burst must never be dropped, so make it effectively
/// unbounded.
const SEND_QUEUE_LEN: usize = 1 << 20;
/// How long a queued message may wait before the connection handler abandons it
/// (defaults: 5 s for published, 1 s for forwarded messages). Large bursts to many peers
/// can take longer than that to be written out.
const QUEUE_DURATION: Duration = Duration::from_secs(3600);

fn usage() -> ! {
    eprintln!("usage: libp2p-chat [--dial PORT]...");
    std::process::exit(2);
}

fn parse_args() -> Vec<u16> {
    let mut ports = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = if arg == "--dial" {
            args.next().unwrap_or_else(|| usage())
        } else if let Some(v) = arg.strip_prefix("--dial=") {
            v.to_owned()
        } else {
            usage()
        };
        match value.parse::<u16>() {
            Ok(p) if p != 0 => ports.push(p),
            _ => {
                eprintln!("libp2p-chat: bad port {value:?}");
                usage()
            }
        }
    }
    ports
}

fn max_secs() -> u64 {
    match std::env::var("BENCH_MAX_SECS") {
        Ok(v) => v.trim().parse().unwrap_or_else(|_| {
            eprintln!("libp2p-chat: bad BENCH_MAX_SECS {v:?}, using 1200");
            1200
        }),
        Err(_) => 1200,
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dial_ports = parse_args();
    let deadline = Instant::now() + Duration::from_secs(max_secs());

    let mut swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )?
        .with_behaviour(|key| {
            let config = gossipsub::ConfigBuilder::default()
                // Strict: every message must carry a signature, a source and a sequence
                // number, and the signature is checked (the default, spelled out).
                .validation_mode(ValidationMode::Strict)
                // Publish to every subscribed peer we are connected to (the default).
                .flood_publish(true)
                .connection_handler_queue_len(SEND_QUEUE_LEN)
                .publish_queue_duration(QUEUE_DURATION)
                .forward_queue_duration(QUEUE_DURATION)
                // Message ids stay the default (source + sequence number), so that two
                // lines with equal text are two messages.
                .build()?;
            Ok(Gossipsub::new(
                MessageAuthenticity::Signed(key.clone()),
                config,
            )?)
        })?
        .with_swarm_config(|c| c.with_idle_connection_timeout(IDLE_TIMEOUT))
        .build();

    let topic = IdentTopic::new(TOPIC);
    let topic_hash = topic.hash();
    swarm.behaviour_mut().subscribe(&topic)?;

    swarm.listen_on("/ip4/127.0.0.1/tcp/0".parse()?)?;
    for port in &dial_ports {
        let addr: Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}").parse()?;
        if let Err(e) = swarm.dial(addr.clone()) {
            eprintln!("dial {addr}: {e}");
        }
    }

    let mut stdin = tokio::io::BufReader::with_capacity(1 << 16, tokio::io::stdin());
    let mut buf: Vec<u8> = Vec::new();
    let mut eof = false;
    let mut eof_at: Option<Instant> = None;
    let mut exit_at: Option<Instant> = None;
    let mut pending: VecDeque<Vec<u8>> = VecDeque::new();
    let mut retry_at = Instant::now();
    let mut last_fail_log: Option<Instant> = None;
    let mut fails: u64 = 0;
    let mut published: u64 = 0;
    let mut received: u64 = 0;
    let mut port_printed = false;
    let mut subscribed: Option<usize> = None;

    loop {
        // Publish queued lines in order; stop at the first one that must be retried.
        let now = Instant::now();
        if now >= retry_at {
            while let Some(line) = pending.pop_front() {
                match swarm
                    .behaviour_mut()
                    .publish(topic_hash.clone(), line.clone())
                {
                    Ok(_) => published += 1,
                    Err(
                        e @ (PublishError::NoPeersSubscribedToTopic
                        | PublishError::AllQueuesFull(_)),
                    ) => {
                        pending.push_front(line);
                        retry_at = now + RETRY;
                        fails += 1;
                        if last_fail_log.is_none_or(|t| now >= t + Duration::from_secs(1)) {
                            eprintln!(
                                "publish: {e}; retrying ({} queued, {fails} failed attempts so far)",
                                pending.len()
                            );
                            last_fail_log = Some(now);
                        }
                        break;
                    }
                    Err(e) => eprintln!("publish: {e}; line of {} bytes dropped", line.len()),
                }
            }
        }
        if eof && exit_at.is_none() {
            let since = eof_at.expect("set with eof");
            if pending.is_empty() {
                exit_at = Some(Instant::now() + EOF_GRACE);
            } else if Instant::now() >= since + EOF_DRAIN_LIMIT {
                eprintln!(
                    "end of input: {} lines could not be published",
                    pending.len()
                );
                exit_at = Some(Instant::now());
            }
        }

        tokio::select! {
            event = swarm.select_next_some() => {
                match event {
                    SwarmEvent::Behaviour(gossipsub::Event::Message { message, .. }) => {
                        received += 1;
                        let mut out = std::io::stdout().lock();
                        out.write_all(&message.data)?;
                        out.write_all(b"\n")?;
                        out.flush()?;
                    }
                    SwarmEvent::NewListenAddr { address, .. } => {
                        let port = address.iter().find_map(|p| match p {
                            Protocol::Tcp(port) => Some(port),
                            _ => None,
                        });
                        if let (Some(port), false) = (port, port_printed) {
                            let mut out = std::io::stdout().lock();
                            writeln!(out, "PORT {port}")?;
                            out.flush()?;
                            port_printed = true;
                        }
                        eprintln!("listening on {address}");
                    }
                    SwarmEvent::Behaviour(gossipsub::Event::SlowPeer { peer_id, failed_messages }) => {
                        eprintln!("slow peer {peer_id}: {failed_messages:?}");
                    }
                    SwarmEvent::ConnectionEstablished { peer_id, endpoint, .. } => {
                        eprintln!("connected {peer_id} at {}", endpoint.get_remote_address());
                    }
                    SwarmEvent::ConnectionClosed { peer_id, cause, .. } => {
                        eprintln!("disconnected {peer_id}: {cause:?}");
                    }
                    SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                        eprintln!("dial error {peer_id:?}: {error}");
                    }
                    SwarmEvent::IncomingConnectionError { send_back_addr, error, .. } => {
                        eprintln!("incoming connection error from {send_back_addr}: {error}");
                    }
                    _ => {}
                }
                let count = swarm
                    .behaviour()
                    .all_peers()
                    .filter(|(_, topics)| topics.contains(&&topic_hash))
                    .count();
                if subscribed != Some(count) && (subscribed.is_some() || count > 0) {
                    eprintln!("SUBSCRIBED {count}");
                }
                subscribed = Some(count);
            }
            read = stdin.read_until(b'\n', &mut buf), if !eof => {
                // read_until is cancel-safe with a buffer kept across calls: partially read
                // bytes stay in `buf` and the next call goes on from there.
                match read {
                    Ok(0) => {
                        if !buf.is_empty() {
                            pending.push_back(std::mem::take(&mut buf));
                        }
                        eof = true;
                        eof_at = Some(Instant::now());
                        eprintln!("end of input");
                    }
                    Ok(_) => {
                        let mut line = std::mem::take(&mut buf);
                        if line.last() == Some(&b'\n') {
                            line.pop();
                        }
                        pending.push_back(line);
                    }
                    Err(e) => {
                        eprintln!("stdin: {e}");
                        eof = true;
                        eof_at = Some(Instant::now());
                    }
                }
            }
            _ = sleep_until(retry_at), if !pending.is_empty() => {}
            _ = sleep_until(exit_at.unwrap_or(deadline)), if exit_at.is_some() => break,
            _ = sleep_until(deadline) => {
                eprintln!("BENCH_MAX_SECS reached");
                break;
            }
        }
    }
    eprintln!(
        "exit: published {published}, received {received}, unpublished {}",
        pending.len()
    );
    Ok(())
}
