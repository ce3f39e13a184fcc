//! `connection-manager --config FILE`: the article's connection manager.

#[path = "shared/heap.rs"]
mod heap;

use std::io::BufRead;
use std::process::ExitCode;
use std::thread;

use genp2p::cli::{self, Command};
use genp2p::config::ManagerConfig;
use genp2p::manager::Manager;
use log::{error, info};

const USAGE: &str = "\
Usage: connection-manager --config FILE

Tells servants where each other are. FILE is <manager><port>N</port>...</manager>
(see conf/manager.xml). Type `peers` (or press Enter) on its terminal for the list of
servants; `quit` or Ctrl-C stops it. RUST_LOG=debug shows every connection.

Options:
  -c, --config FILE   the configuration file (default conf/manager.xml)
  -h, --help          this text
  -V, --version       the version
";

enum Event {
    Signal(&'static str),
    Quit,
}

fn main() -> ExitCode {
    let args = match cli::parse_args("connection-manager", USAGE, false) {
        Ok(Command::Run(args)) => args,
        Ok(Command::Print(text)) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    heap::small_heap();
    cli::init_logging();
    let path = args.config.unwrap_or_else(|| "conf/manager.xml".into());
    let config = match ManagerConfig::load(&path) {
        Ok(c) => c,
        Err(e) => {
            error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let manager = match Manager::bind(config) {
        Ok(m) => m,
        Err(e) => {
            error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    match manager.local_addr() {
        Ok(addr) => info!("connection manager listening on {addr}"),
        Err(e) => {
            error!("cannot read the listening address: {e}");
            return ExitCode::FAILURE;
        }
    }

    let (tx, rx) = crossbeam_channel::unbounded();
    if let Err(e) = cli::forward_signals(tx.clone(), Event::Signal) {
        error!("cannot watch for signals: {e}");
        return ExitCode::FAILURE;
    }
    let console = manager.console();
    let spawned = thread::Builder::new()
        .name("console".into())
        .spawn(move || {
            // The article's manager form showed its peers; here the list is printed on request.
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                match line.trim() {
                    "" | "peers" | "list" | "/peers" => print!("{}", console.table()),
                    "quit" | "/quit" => {
                        let _ = tx.send(Event::Quit);
                        break;
                    }
                    "help" | "/help" => println!("commands: peers (or Enter), quit, help"),
                    other => println!("unknown command {other:?}; commands: peers, quit, help"),
                }
            }
            // End of input is not a reason to stop: a manager usually runs without a terminal.
        });
    if let Err(e) = spawned {
        error!("cannot start the console thread: {e}");
        return ExitCode::FAILURE;
    }
    let accept = thread::Builder::new()
        .name("accept".into())
        .spawn(move || manager.run());
    if let Err(e) = accept {
        error!("cannot start the accept thread: {e}");
        return ExitCode::FAILURE;
    }
    match rx.recv() {
        Ok(Event::Signal(name)) => info!("{name}: stopping"),
        Ok(Event::Quit) | Err(_) => info!("stopping"),
    }
    // Connections close with the process; servants notice at once and retry with backoff.
    ExitCode::SUCCESS
}
