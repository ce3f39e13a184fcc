//! `servant --config FILE`: the article's servant, a peer of the chat network.

#[path = "shared/heap.rs"]
mod heap;

use std::process::ExitCode;

use genp2p::cli::{self, Command};
use genp2p::config::ServantConfig;
use genp2p::servant::{self, Options};
use log::error;

const USAGE: &str = "\
Usage: servant --config FILE [--no-input]
       servant --config FILE --identity
       servant --new-network-key FILE

Joins the network of the connection manager named in FILE (the article's config.xml:
<config><connectionmgr>HOST</connectionmgr><port>N</port>...</config>, see conf/config.xml)
and chats: each line typed is sent to every other servant; each message received is
printed as `<name> text`. Type /help for commands. RUST_LOG=debug shows more.

Options:
  -c, --config FILE   the configuration file (default conf/config.xml)
      --no-input      do not read standard input; run until SIGINT or SIGTERM
      --identity      print this servant's id and public key (creating its key file,
                      FILE with .key for .xml, if there is none yet) and exit
      --new-network-key FILE
                      write a fresh network key to FILE (mode 0600) for <networkkey>
                      in the configs of every servant and manager of a closed network
  -h, --help          this text
  -V, --version       the version
";

fn main() -> ExitCode {
    let args = match cli::parse_args("servant", USAGE, true) {
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
    if let Some(file) = args.new_network_key {
        return match genp2p::identity::NetworkKey::create(&file) {
            Ok(()) => {
                println!("wrote a new network key to {}", file.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                error!("{e}");
                ExitCode::FAILURE
            }
        };
    }
    let path = args.config.unwrap_or_else(|| "conf/config.xml".into());
    let config = match ServantConfig::load(&path) {
        Ok(c) => c,
        Err(e) => {
            error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let options = Options {
        no_input: args.no_input,
        config_path: Some(path),
    };
    if args.identity {
        return match servant::identity(&config, &options, true) {
            Ok(me) => {
                let file = me
                    .path
                    .as_ref()
                    .map_or("(none)".into(), |p| p.display().to_string());
                println!(
                    "id          {}\npublic key  {}\nkey file    {file}",
                    me.id,
                    me.key.hex()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                error!("{e}");
                ExitCode::FAILURE
            }
        };
    }
    match servant::run(config, options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e}");
            ExitCode::FAILURE
        }
    }
}
