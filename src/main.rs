//! The `plantgate` command: parse arguments, load the config, run, and map
//! failures to exit codes (1: invalid config, 2: cannot start or run).

use clap::{Parser, Subcommand};
use plantgate::config::{self, ConfigError};
use plantgate::pipeline::Gateway;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "plantgate",
    version,
    about = "Edge gateway: machine signals to Odoo business events, with store-and-forward"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway with a config file.
    Run {
        /// The TOML config (tag map).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a config file: exit 0 when valid, else print FILE:LINE:COL: message per problem and exit 1.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run a simulated press through the whole pipeline, printing the Odoo calls it would make.
    Demo {
        /// Status listener address (default 127.0.0.1:9811; a free port if that is taken).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Stop after this long (e.g. "30s"); default: until Ctrl-C.
        #[arg(long, value_parser = humantime::parse_duration)]
        duration: Option<Duration>,
    },
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PLANTGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn report_config_error(e: &ConfigError) -> ExitCode {
    eprintln!("{e}");
    match e {
        ConfigError::Invalid { .. } => ExitCode::from(1),
        ConfigError::Read { .. } => ExitCode::from(1),
    }
}

async fn wait_for_stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

async fn run(config_path: PathBuf) -> ExitCode {
    let cfg = match config::load(&config_path) {
        Ok(c) => c,
        Err(e) => return report_config_error(&e),
    };
    let gateway = match Gateway::start(cfg).await {
        Ok(g) => g,
        Err(e) => {
            eprintln!("plantgate: cannot start: {e}");
            return ExitCode::from(2);
        }
    };
    wait_for_stop_signal().await;
    gateway.stop().await;
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Check { config: path } = &cli.command {
        return match config::load(path) {
            Ok(c) => {
                println!(
                    "{}: valid: {} sources, {} tags, {} event rules, Odoo {}",
                    path.display(),
                    c.sources.len(),
                    c.tags.len(),
                    c.events.len(),
                    if c.odoo.dry_run {
                        "dry run".to_string()
                    } else {
                        c.odoo.url.clone()
                    }
                );
                ExitCode::SUCCESS
            }
            Err(e) => report_config_error(&e),
        };
    }
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("plantgate: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(async move {
        match cli.command {
            Command::Run { config } => run(config).await,
            Command::Demo { listen, duration } => {
                match plantgate::demo::run(listen, duration).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("plantgate demo: {e}");
                        ExitCode::from(2)
                    }
                }
            }
            Command::Check { .. } => ExitCode::SUCCESS,
        }
    })
}
