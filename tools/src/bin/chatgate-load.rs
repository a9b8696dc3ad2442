//! `chatgate-load`: the load generator's command line (`idle`, `fanout`);
//! the scenarios are in the library.

use clap::Parser;

use chatgate_tools::LoadCommand;

#[derive(Parser)]
#[command(
    name = "chatgate-load",
    version,
    about = "Load generator: drives a running chatgate (or chatgate-bare) over real sockets"
)]
struct Cli {
    #[command(subcommand)]
    command: LoadCommand,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match chatgate_tools::run(cli.command).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chatgate-load: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
