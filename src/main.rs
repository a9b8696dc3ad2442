//! The `chatgate` binary: parses settings, sets up logging, binds, runs;
//! or, as `chatgate health`, asks a running one whether it serves. (The
//! load generator is `chatgate-load`, in tools/.)

use clap::{Parser, Subcommand};

/// jemalloc by default (see Cargo.toml's features: it was measured against
/// glibc's malloc and mimalloc, BENCHMARKS.md).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[cfg(all(feature = "mimalloc", not(feature = "jemalloc")))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use tracing_subscriber::EnvFilter;

use chatgate::config::{Config, LogFormat};
use chatgate::error::StartError;
use chatgate::health::HealthArgs;
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

async fn serve(config: Config) -> Result<(), StartError> {
    config.validate()?;
    let listener =
        chatgate::listen::bind(config.listen, config.listen_backlog).map_err(|source| {
            StartError::Listen {
                addr: config.listen,
                source,
            }
        })?;
    let addr = listener.local_addr().map_err(StartError::LocalAddr)?;
    let dev = config.dev_mode();
    let server = Server::build(config, listener).await?;
    tracing::info!(%addr, dev_mode = dev, "chatgate listening");
    server
        .run(shutdown_signal())
        .await
        .map_err(StartError::Serve)
}

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Json => builder.json().init(),
        // Colour only for a person at a terminal: a pipe, a file or a
        // container's log collector would store the escape sequences.
        LogFormat::Human => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .init(),
    }
}
