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
    /// Commissioning tools for Modbus devices.
    Modbus {
        #[command(subcommand)]
        command: ModbusCommand,
    },
    /// Tag map tools.
    Tags {
        #[command(subcommand)]
        command: TagsCommand,
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

#[derive(Subcommand)]
enum ModbusCommand {
    /// Read registers or bits from a live device, decoded as the gateway would.
    ///
    /// Example: plantgate modbus read tcp://10.0.0.5:502 --unit 1 holding:100 --count 10 --type f32 --order CDAB
    Read {
        /// tcp://HOST:PORT or rtu:///dev/ttyUSB0
        target: String,
        /// holding:N, input:N, coil:N, discrete:N (0-based), or Modicon 40101 (1-based)
        item: String,
        #[arg(long, default_value_t = 1)]
        unit: u8,
        /// Number of values (of --type; registers or bits without one).
        #[arg(long, default_value_t = 1)]
        count: u16,
        /// bool, u16, i16, u32, i32, u64, i64, f32, f64, string
        #[arg(long = "type")]
        data_type: Option<String>,
        /// ABCD, CDAB, BADC or DCBA
        #[arg(long)]
        order: Option<String>,
        /// Registers per string, with --type string.
        #[arg(long, default_value_t = 0)]
        length: u16,
        /// Serial line speed (rtu://).
        #[arg(long, default_value_t = 9600)]
        baud: u32,
        /// none, even or odd (rtu://).
        #[arg(long, default_value = "even")]
        parity: String,
        #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
}

#[derive(Subcommand)]
enum TagsCommand {
    /// Turn a CSV tag list (plantgate's columns or a Kepware export) into [[tags]] entries on stdout.
    Import {
        file: PathBuf,
        /// The [[sources]] name the tags belong to.
        #[arg(long, default_value = "plc1")]
        source: String,
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

async fn modbus_read(cmd: ModbusCommand) -> ExitCode {
    use plantgate::config::modbus::Parity;
    use plantgate::sources::modbus::probe::{self, Probe};
    let ModbusCommand::Read {
        target,
        item,
        unit,
        count,
        data_type,
        order,
        length,
        baud,
        parity,
        timeout,
    } = cmd;
    let Some(parity) = Parity::parse(&parity) else {
        eprintln!("plantgate: parity {parity:?}: use none, even or odd");
        return ExitCode::from(2);
    };
    let p = Probe {
        target,
        unit,
        item,
        count,
        data_type,
        order,
        length,
        baud,
        parity,
        timeout,
    };
    match probe::run(&p).await {
        Ok(lines) => {
            for l in lines {
                println!("{l}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("plantgate modbus read: {e}");
            ExitCode::from(2)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Tags {
        command: TagsCommand::Import { file, source },
    } = &cli.command
    {
        return match plantgate::config::import::import_file(file, source) {
            Ok(toml) => {
                print!("{toml}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(1)
            }
        };
    }
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
            Command::Modbus { command } => modbus_read(command).await,
            Command::Check { .. } | Command::Tags { .. } => ExitCode::SUCCESS,
        }
    })
}
