//! What both binaries share: the command line, logging and signals.
//!
//! The binaries stay thin (parse flags, load the config, call the library, map errors to
//! an exit code); the little they have in common lives here so they say things the same
//! way.

use std::path::PathBuf;
use std::thread;

use crossbeam_channel::Sender;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// Flags common to both binaries.
#[derive(Debug, Default)]
pub struct Args {
    pub config: Option<PathBuf>,
    /// Servant only: do not read standard input; run until signalled.
    pub no_input: bool,
    /// Servant only: print the servant's id and public key, and exit.
    pub identity: bool,
    /// Servant only: write a fresh network key to this file, and exit.
    pub new_network_key: Option<PathBuf>,
}

/// What the command line asked for.
pub enum Command {
    Run(Args),
    /// `--help` or `--version`: print this and exit 0.
    Print(String),
}

/// Parses `--config FILE` (and the servant's `--no-input` and `--identity` where
/// `servant`), `--help`, `--version`.
pub fn parse_args(program: &str, usage: &str, servant: bool) -> Result<Command, String> {
    use lexopt::prelude::*;
    let mut args = Args::default();
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next().map_err(|e| format!("{program}: {e}"))? {
        match arg {
            Short('c') | Long("config") => {
                args.config = Some(
                    parser
                        .value()
                        .map_err(|e| format!("{program}: {e}"))?
                        .into(),
                )
            }
            Long("no-input") if servant => args.no_input = true,
            Long("identity") if servant => args.identity = true,
            Long("new-network-key") if servant => {
                args.new_network_key = Some(
                    parser
                        .value()
                        .map_err(|e| format!("{program}: {e}"))?
                        .into(),
                )
            }
            Short('h') | Long("help") => return Ok(Command::Print(usage.to_owned())),
            Short('V') | Long("version") => {
                return Ok(Command::Print(format!(
                    "{program} {}\n",
                    env!("CARGO_PKG_VERSION")
                )))
            }
            _ => return Err(format!("{program}: {}; try --help", arg.unexpected())),
        }
    }
    Ok(Command::Run(args))
}

/// Logs to standard error at `info` unless `RUST_LOG` says otherwise, as
/// `[2026-12-06T20:01:02Z INFO ] message`; the level is coloured when standard error is a
/// terminal and `NO_COLOR` is unset.
pub fn init_logging() {
    use std::io::{IsTerminal, Write};
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format(move |out, record| {
            let level = record.level();
            let (on, off) = match (colour, level) {
                (false, _) => ("", ""),
                (true, log::Level::Error) => ("\x1b[31m", "\x1b[0m"),
                (true, log::Level::Warn) => ("\x1b[33m", "\x1b[0m"),
                (true, log::Level::Info) => ("\x1b[32m", "\x1b[0m"),
                (true, _) => ("\x1b[2m", "\x1b[0m"),
            };
            let stamp = crate::clock::now_rfc3339();
            writeln!(out, "[{stamp} {on}{level:<5}{off}] {}", record.args())
        })
        .target(env_logger::Target::Pipe(Box::new(LogOut)))
        .init();
}

/// Where a log record goes instead of standard error, while one is set (see `route_log`).
pub type LogSink = fn(&[u8]) -> std::io::Result<()>;

/// Written by `route_log`; read, and copied out, for every record.
static LOG_SINK: std::sync::RwLock<Option<LogSink>> = std::sync::RwLock::new(None);

/// Sends every log record (one whole record a call, its line end included) to `sink`
/// instead of standard error; `None`: standard error again. The servant's line editor
/// prints them above the line being typed, when standard error is that terminal.
pub fn route_log(sink: Option<LogSink>) {
    *LOG_SINK.write().unwrap_or_else(|p| p.into_inner()) = sink;
}

/// The log's writer: standard error, written as env_logger itself would (one record, one
/// `write_all`, then a flush), unless a sink is set.
struct LogOut;

impl std::io::Write for LogOut {
    fn write(&mut self, record: &[u8]) -> std::io::Result<usize> {
        let sink = *LOG_SINK.read().unwrap_or_else(|p| p.into_inner());
        match sink {
            Some(sink) => sink(record)?,
            None => std::io::stderr().lock().write_all(record)?,
        }
        Ok(record.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Sends the name of each SIGINT or SIGTERM received to `tx`, from a thread named
/// `signals`. Signals become ordinary messages, so shutdown takes the same path as
/// `/quit` and end of input.
pub fn forward_signals<T: Send + 'static>(
    tx: Sender<T>,
    wrap: fn(&'static str) -> T,
) -> std::io::Result<()> {
    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                let name = if sig == SIGINT { "SIGINT" } else { "SIGTERM" };
                if tx.send(wrap(name)).is_err() {
                    break;
                }
            }
        })?;
    Ok(())
}
