//! The `chatgate` binary: parses settings, sets up logging, binds, runs;
//! or, as `chatgate load ...`, runs the load generator against a server.

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use chatgate::config::{Config, LogFormat};
use chatgate::health::HealthArgs;
use chatgate::load::LoadCommand;
use chatgate::server::{shutdown_signal, Server};

#[derive(Parser)]
#[command(
    name = "chatgate",
    version,
    about = "WebSocket notification gateway for contact-center chat",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    /// Without a command, chatgate serves.
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: Config,
}

#[derive(Subcommand)]
enum Command {
    /// Load generator: drives a running chatgate (or chatgate-bare) over real sockets.
    #[command(subcommand)]
    Load(LoadCommand),
    /// Exits 0 when the chatgate on this host answers /healthz (the
    /// container's health check).
    Health(HealthArgs),
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Health(args)) = &cli.command {
        return match chatgate::health::check(args).await {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("chatgate health: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    if let Some(Command::Load(load)) = cli.command {
        return match chatgate::load::run(load).await {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("chatgate load: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    init_tracing(cli.config.log_format);
    match serve(cli.config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("chatgate: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> Result<(), String> {
    config.validate()?;
    let listener = chatgate::listen::bind(config.listen, config.listen_backlog)
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let dev = config.dev_mode();
    let server = Server::build(config, listener).await?;
    tracing::info!(%addr, dev_mode = dev, "chatgate listening");
    server
        .run(shutdown_signal())
        .await
        .map_err(|e| e.to_string())
}

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Human => builder.init(),
    }
}
