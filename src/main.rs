//! The `plantgate` command: parse arguments, load the config, run, and map
//! failures to exit codes (1: invalid config, 2: cannot start or run).

use clap::{Parser, Subcommand};
use plantgate::admin;
use plantgate::config::{self, ConfigError, LogFormat};
use plantgate::pipeline::Gateway;
use plantgate::systemd;
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
    /// Validate a config file and the files it names (readable by this user; data dir writable): exit 0 when valid, else print FILE:LINE:COL: message per problem and exit 1.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Change control for configs.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
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
    /// OPC UA commissioning: browse a server's address space, trust its certificate.
    #[cfg(feature = "opcua")]
    Opcua {
        #[command(subcommand)]
        command: opcua_cli::OpcuaCommand,
    },
    /// Dead letters: events a destination refused for good. Works on a stopped or a running gateway.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// The event queue: depth, bytes and oldest age per sink and lane.
    Queue {
        #[command(subcommand)]
        command: QueueCommand,
    },
    /// Release updates from signed bundles: check the channel, apply, roll back, show what is installed.
    Update {
        #[command(subcommand)]
        command: UpdateCommand,
    },
    /// Build release and config bundles (for release engineers; sign them with `minisign -S -m FILE`).
    Bundle {
        #[command(subcommand)]
        command: BundleCommand,
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

/// The config file of the gateway whose store the command works on.
#[derive(clap::Args)]
struct StoreArgs {
    #[arg(long, short, default_value = DEFAULT_CONFIG)]
    config: PathBuf,
}

const DEFAULT_CONFIG: &str = "/etc/plantgate/gateway.toml";

#[derive(Subcommand)]
enum DlqCommand {
    /// One line per dead letter: id, sink, lane, kind, key, event time, attempts, reason.
    List {
        #[arg(long)]
        sink: Option<String>,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Everything about one dead letter, with the event, as JSON.
    Show {
        id: u64,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Put dead letters back into their lane, to be delivered again once the cause is fixed.
    Replay {
        /// The dead letter's id (see `dlq list`).
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<u64>,
        /// Every dead letter (of --sink, if given).
        #[arg(long)]
        all: bool,
        #[arg(long, requires = "all")]
        sink: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Delete a dead letter for good.
    Drop {
        id: u64,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// What a change does, in words: sources, tags and rules added, removed or changed, and the Odoo records each affected rule writes. Both files must be valid.
    Diff { old: PathBuf, new: PathBuf },
    /// Shadow run: the candidate config's rules beside the current config's, on the same live samples, sending nothing; then per rule the events each would have sent and where they differ. Exit 0 when the same, 1 when they differ, 2 on an error (an invalid config too).
    Try {
        /// The candidate config.
        new: PathBuf,
        /// The current config (the running gateway's).
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// How long to watch (Ctrl-C ends it early, with the report).
        #[arg(long = "for", default_value = "10m", value_parser = humantime::parse_duration)]
        duration: Duration,
    },
    /// Apply a signed config bundle: verify it, validate it as `check` does, switch, reload, and check the gateway runs it; on any failure the old config stays.
    Apply {
        bundle: PathBuf,
        #[command(flatten)]
        at: UpdateArgs,
    },
}

/// Which gateway an update command works on.
#[derive(clap::Args)]
struct UpdateArgs {
    /// The gateway's config (default ROOT/etc/plantgate/gateway.toml); its [update] section applies.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Install root: releases in ROOT/opt/plantgate, configs in ROOT/etc/plantgate (default: [update] root, else /).
    #[arg(long)]
    root: Option<PathBuf>,
}

#[derive(Subcommand)]
enum UpdateCommand {
    /// Ask the channel whether a newer release exists for this target.
    Check {
        #[command(flatten)]
        at: UpdateArgs,
    },
    /// Verify and install a release bundle, switch to it, and keep it only if the gateway comes up healthy (else the previous release is restored).
    Apply {
        /// The bundle (its signature is BUNDLE.minisig).
        #[arg(
            required_unless_present = "from_channel",
            conflicts_with = "from_channel"
        )]
        bundle: Option<PathBuf>,
        /// Download the newest release for this target from the channel.
        #[arg(long)]
        from_channel: bool,
        /// Accept a release older than the installed one.
        #[arg(long)]
        allow_downgrade: bool,
        #[command(flatten)]
        at: UpdateArgs,
    },
    /// Switch back to the previous release (health-checked like an update).
    Rollback {
        #[command(flatten)]
        at: UpdateArgs,
    },
    /// The current and previous release and config, and the channel.
    Status {
        #[command(flatten)]
        at: UpdateArgs,
    },
}

#[derive(Subcommand)]
enum BundleCommand {
    /// A release bundle: the binary and its manifest.
    Release {
        /// The release's version (semver), e.g. 1.4.0.
        #[arg(long)]
        version: String,
        /// The plantgate binary for the target.
        #[arg(long)]
        binary: PathBuf,
        /// The binary's target triple (default: this binary's).
        #[arg(long, default_value = plantgate::update::TARGET)]
        target: String,
        /// The store format the release writes (default: this binary's).
        #[arg(long, default_value_t = plantgate::store::format::FORMAT)]
        store_format: u32,
        /// The oldest store format it reads (default: this binary's).
        #[arg(long, default_value_t = plantgate::store::migrate::OLDEST_FORMAT)]
        min_store_format: u32,
        #[arg(long, short)]
        output: PathBuf,
    },
    /// A config bundle: gateway.toml and the files beside it that it names (tag maps).
    Config {
        /// A label for this config, e.g. 2026-12-01-line3.
        #[arg(long)]
        version: String,
        /// gateway.toml first, then any other files (stored under their file names).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[arg(long, short)]
        output: PathBuf,
    },
}

#[derive(Subcommand)]
enum QueueCommand {
    /// Per sink and lane: depth, bytes, oldest age against the lane's target, and dead letters.
    Stats {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
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

/// `plantgate opcua …`: commissioning against a live OPC UA server.
#[cfg(feature = "opcua")]
mod opcua_cli {
    use super::*;
    use plantgate::config::opcua::{Identity, OpcUaSource, SecurityMode, SecurityPolicy};
    use plantgate::sources::opcua::{browse, commission, security};

    #[derive(Subcommand)]
    pub(super) enum OpcuaCommand {
        /// Print the address space as a tree with node ids, data types and current values.
        Browse {
            /// The server, e.g. opc.tcp://192.168.10.30:4840
            endpoint: String,
            /// Start here instead of the Objects folder, e.g. "ns=2;s=Press".
            #[arg(long)]
            node: Option<String>,
            /// How many levels below the start node.
            #[arg(long, default_value_t = 3)]
            depth: usize,
            /// Print [[tags]] entries ready to paste into a tag map instead of a tree.
            #[arg(long)]
            toml: bool,
            /// With --toml: also the server's own nodes (namespace 0: status, diagnostics).
            #[arg(long, requires = "toml")]
            all: bool,
            /// The source name written into the --toml entries.
            #[arg(long, default_value = "opcua1")]
            source: String,
            #[command(flatten)]
            conn: ConnArgs,
        },
        /// Fetch a server's certificate, show its thumbprint and subject, and trust it on confirmation.
        Trust {
            /// The server, e.g. opc.tcp://192.168.10.30:4840
            endpoint: String,
            /// Trust without asking (for scripts).
            #[arg(long)]
            yes: bool,
            /// The gateway's data directory (the trust directory is DATA_DIR/opcua/trusted).
            #[arg(long, default_value = config::DEFAULT_DATA_DIR)]
            data_dir: PathBuf,
            /// Store into this directory instead (a source's `trust_dir`).
            #[arg(long)]
            trust_dir: Option<PathBuf>,
            /// Per request.
            #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
            timeout: Duration,
        },
    }

    /// How the commissioning commands connect, as a source's config would.
    #[derive(clap::Args)]
    pub(super) struct ConnArgs {
        /// None, Basic256Sha256, Aes128_Sha256_RsaOaep or Aes256_Sha256_RsaPss.
        #[arg(long, default_value = "None")]
        security_policy: String,
        /// None, Sign or SignAndEncrypt (default: SignAndEncrypt unless the policy is None).
        #[arg(long)]
        security_mode: Option<String>,
        /// Log in as this user (with --password-file).
        #[arg(long, requires = "password_file")]
        user: Option<String>,
        /// A file holding only the password.
        #[arg(long)]
        password_file: Option<PathBuf>,
        /// The gateway's data directory: its application certificate and trust directory live under it.
        #[arg(long, default_value = config::DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
        /// Trusted server certificates (default DATA_DIR/opcua/trusted).
        #[arg(long)]
        trust_dir: Option<PathBuf>,
        /// Per request.
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    }

    impl ConnArgs {
        fn source(&self, endpoint: &str) -> Result<OpcUaSource, String> {
            let policy = SecurityPolicy::parse(&self.security_policy).ok_or_else(|| {
                format!(
                    "unknown --security-policy {:?}: use {}",
                    self.security_policy,
                    SecurityPolicy::NAMES
                )
            })?;
            let mode = match &self.security_mode {
                Some(m) => SecurityMode::parse(m).ok_or_else(|| {
                    format!("unknown --security-mode {m:?}: use None, Sign or SignAndEncrypt")
                })?,
                None if policy == SecurityPolicy::None => SecurityMode::None,
                None => SecurityMode::SignAndEncrypt,
            };
            let identity = match (&self.user, &self.password_file) {
                (Some(user), Some(pw)) => Identity::UserName {
                    user: user.clone(),
                    password: pw.clone(),
                },
                _ => Identity::Anonymous,
            };
            Ok(OpcUaSource::for_commissioning(
                endpoint,
                policy,
                mode,
                identity,
                &self.data_dir,
                self.trust_dir.clone(),
                self.timeout,
            ))
        }
    }

    pub(super) async fn opcua_command(command: OpcuaCommand) -> ExitCode {
        match command {
            OpcuaCommand::Browse {
                endpoint,
                node,
                depth,
                toml,
                all,
                source,
                conn,
            } => {
                let cfg = match conn.source(&endpoint) {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("plantgate opcua browse: {e}");
                        return ExitCode::from(1);
                    }
                };
                match commission::browse(&cfg, node.as_deref(), depth).await {
                    Ok(entries) if toml => {
                        print!("{}", browse::render_toml(&entries, &source, all));
                        ExitCode::SUCCESS
                    }
                    Ok(entries) => {
                        print!("{}", browse::render_tree(&entries));
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("plantgate opcua browse: {e}");
                        ExitCode::from(2)
                    }
                }
            }
            OpcuaCommand::Trust {
                endpoint,
                yes,
                data_dir,
                trust_dir,
                timeout,
            } => {
                let cfg = OpcUaSource::for_commissioning(
                    &endpoint,
                    SecurityPolicy::None,
                    SecurityMode::None,
                    Identity::Anonymous,
                    &data_dir,
                    trust_dir,
                    timeout,
                );
                let certs = match commission::server_certificates(&cfg).await {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("plantgate opcua trust: {e}");
                        return ExitCode::from(2);
                    }
                };
                for (cert, info) in certs {
                    println!("server certificate of {endpoint}");
                    println!("  subject:    {}", info.subject);
                    println!("  thumbprint: {} (SHA-1)", info.thumbprint);
                    println!("  valid until {}", info.not_after);
                    if security::is_trusted(&cfg.trust_dir, &cert) {
                        println!("already trusted (in {})", cfg.trust_dir.display());
                        continue;
                    }
                    if !yes && !confirm("Trust this certificate? [y/N] ") {
                        println!("not trusted");
                        return ExitCode::from(1);
                    }
                    match security::trust(&cfg.trust_dir, &cert) {
                        Ok(path) => println!("trusted: stored {}", path.display()),
                        Err(e) => {
                            eprintln!("plantgate opcua trust: {e}");
                            return ExitCode::from(2);
                        }
                    }
                }
                ExitCode::SUCCESS
            }
        }
    }

    /// Ask on stdin; anything but y/yes (or no stdin at all) is a no.
    fn confirm(question: &str) -> bool {
        use std::io::Write as _;
        print!("{question}");
        let _ = std::io::stdout().flush();
        let mut answer = String::new();
        match std::io::stdin().read_line(&mut answer) {
            Ok(n) if n > 0 => matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes"),
            _ => false,
        }
    }
}

/// Log to stderr (journald under systemd): colour only on a terminal, so
/// the journal holds no escape codes; JSON lines when `[log] format`
/// asks for them. `commissioning`: a command a person runs at a terminal,
/// where the OPC UA stack's own warnings ("Endpoint config contains no
/// endpoints", "Transport disconnected: Good" on a polite close) are noise:
/// the command reports what went wrong itself, so the stack says only its
/// errors. PLANTGATE_LOG overrides either default: a level, or
/// comma-separated `target=level` directives (`info,plantgate::sinks=debug`).
/// Filtering by target only (not by span or field, as `EnvFilter` can)
/// keeps the regex engine out of the binary.
fn init_logging(format: LogFormat, commissioning: bool) {
    use std::io::IsTerminal as _;
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    // A target directive matches by prefix: `opcua` covers every opcua_* crate.
    let default = if commissioning {
        "info,opcua=error"
    } else {
        "info"
    };
    let wanted = std::env::var("PLANTGATE_LOG").ok();
    // Unset, empty or unreadable: the default, so a typo never silences the log.
    let filter = wanted
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .and_then(|s| s.parse::<Targets>().ok())
        .or_else(|| default.parse().ok())
        .unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO));
    // The formatter alone would stop at info; the target filter decides.
    let builder = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().with_ansi(false).finish().with(filter).init(),
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .finish()
            .with(filter)
            .init(),
    }
}

/// A graceful stop must end before systemd's TimeoutStopSec (30 s) kills us.
const STOP_GRACE: Duration = Duration::from_secs(25);

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
    let mut running = match Running::load(&config_path) {
        Ok(r) => r,
        Err(e) => return report_config_error(&e),
    };
    let cfg = match running.config(&config_path).await {
        Ok(c) => c,
        Err(e) => return report_config_error(&e),
    };
    init_logging(cfg.log.format, false);
    let sources = cfg.sources.len();
    let mut gateway = match Gateway::start(cfg).await {
        Ok(g) => g,
        Err(e) => {
            eprintln!("plantgate: cannot start: {e}");
            return ExitCode::from(2);
        }
    };
    plantgate::heap::release_free_pages();
    // The store is open and the sources are started.
    systemd::ready(&format!("started: {sources} sources"));
    let mut hangup = Hangup::new();
    // One stop-signal future for the whole run, so a SIGTERM that comes
    // during a reload is still seen.
    let mut stop = std::pin::pin!(wait_for_stop_signal());
    let failure = loop {
        let reporter = systemd::Reporter {
            health: gateway.health.clone(),
            telemetry: gateway.telemetry.clone(),
            store: gateway.store.clone(),
        };
        tokio::select! {
            _ = &mut stop => break None,
            f = gateway.failed() => break Some(f),
            _ = reporter.run() => break None,
            // The reporter (and its hold on the store) ends with the select.
            _ = hangup.recv() => {}
        }
        match reload(&config_path, gateway, running).await {
            Ok((g, r)) => {
                gateway = g;
                running = r;
            }
            Err(code) => return code,
        }
    };
    let code = match failure {
        None => {
            systemd::stopping("stopping: flushing the event store");
            ExitCode::SUCCESS
        }
        Some(f) => {
            // Exit 2 so systemd restarts the whole process (Restart=on-failure).
            tracing::error!(stage = %f.stage, "{f}; stopping so the service manager restarts the gateway");
            systemd::stopping(&format!("failed: {f}"));
            ExitCode::from(2)
        }
    };
    if !stop_within_grace(gateway).await {
        return ExitCode::from(2);
    }
    code
}

async fn stop_within_grace(gateway: Gateway) -> bool {
    let stopped = tokio::time::timeout(STOP_GRACE, gateway.stop())
        .await
        .is_ok();
    if !stopped {
        tracing::error!("the gateway did not stop within {STOP_GRACE:?}; exiting anyway (committed events are safe in the store)");
    }
    stopped
}

/// The running config, as its text: what a reload compares with and falls
/// back to. Not the parsed config, which the gateway's stages already hold
/// what they need of (at ten thousand tags a second copy would be the
/// largest thing in memory); the text is parsed again if it is needed.
struct Running {
    text: String,
}

impl Running {
    fn load(path: &std::path::Path) -> Result<Running, config::ConfigError> {
        config::read(path).map(|text| Running { text })
    }

    /// The config this text gives (it gave it before: the same text, the
    /// same validation).
    async fn config(&self, path: &std::path::Path) -> Result<config::Config, config::ConfigError> {
        let (text, path) = (self.text.clone(), path.to_path_buf());
        apart(move || config::parse(&text, &path)).await
    }
}

/// Run a config parse on a thread of the blocking pool. The parse of a
/// large tag map allocates a TOML tree many times the config's size and
/// frees it; on another thread that happens in another of the allocator's
/// arenas, so the blocks the gateway keeps for its life are not strewn
/// among the freed ones, and [`plantgate::heap::release_free_pages`] can
/// give those back whole.
async fn apart<T: Send + 'static>(parse: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(parse).await {
        Ok(t) => t,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// SIGHUP (`systemctl reload`): re-read the config. An invalid one is
/// refused (logged, on /status) and the running gateway goes on. A valid
/// one replaces it: the pipeline stops (store flushed, sessions closed)
/// and starts again on the new config; queued events and rule states are
/// in the store, so nothing is lost and unchanged counters keep their
/// baselines. Should the new config fail to start, the old one is started
/// again. Returns the running gateway and its config, or the exit code.
async fn reload(
    path: &std::path::Path,
    gateway: Gateway,
    running: Running,
) -> Result<(Gateway, Running), ExitCode> {
    tracing::info!(config = %path.display(), "SIGHUP: reloading the config");
    let at = path.to_path_buf();
    let checked = apart(move || {
        Running::load(&at).and_then(|r| {
            let c = config::check(&r.text, &at)?;
            Ok((r, c))
        })
    })
    .await;
    let (next, new) = match checked {
        Ok(c) => c,
        Err(e) => {
            let why = e.to_string();
            tracing::error!("config reload refused, the running config stays: {why}");
            gateway.telemetry.reload(Some(why));
            return Ok((gateway, running));
        }
    };
    // The config's hash is the text's: the same text is the same config.
    if next.text == running.text {
        tracing::info!("config unchanged; nothing to reload");
        gateway.telemetry.reload(None);
        return Ok((gateway, running));
    }
    systemd::reloading("reloading the config");
    if !stop_within_grace(gateway).await {
        return Err(ExitCode::from(2));
    }
    let (sources, hash) = (new.sources.len(), new.hash.clone());
    match Gateway::start(new).await {
        Ok(g) => {
            g.telemetry.reload(None);
            tracing::info!(config_hash = %hash, "config reloaded");
            plantgate::heap::release_free_pages();
            systemd::ready(&format!("reloaded: {sources} sources"));
            Ok((g, next))
        }
        Err(e) => {
            let why = format!("the new config did not start: {e}");
            tracing::error!("{why}; starting the previous config again");
            let previous = match running.config(path).await {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("plantgate: cannot read the previous config again: {e}");
                    return Err(ExitCode::from(2));
                }
            };
            match Gateway::start(previous).await {
                Ok(g) => {
                    g.telemetry.reload(Some(why));
                    systemd::ready("reload failed: running the previous config");
                    Ok((g, running))
                }
                Err(e) => {
                    eprintln!("plantgate: cannot start the previous config again: {e}");
                    Err(ExitCode::from(2))
                }
            }
        }
    }
}

/// SIGHUP as a stream; never fires where there is none.
struct Hangup(Option<tokio::signal::unix::Signal>);

impl Hangup {
    fn new() -> Hangup {
        use tokio::signal::unix::{signal, SignalKind};
        Hangup(signal(SignalKind::hangup()).ok())
    }

    async fn recv(&mut self) {
        match &mut self.0 {
            Some(s) => {
                s.recv().await;
            }
            None => std::future::pending().await,
        }
    }
}

/// `plantgate config diff OLD NEW`: exit 0 with the report, 1 when either
/// file is not a valid config.
fn config_diff(old: &std::path::Path, new: &std::path::Path) -> ExitCode {
    let load = |p: &std::path::Path| -> Result<(config::Config, String), ExitCode> {
        let text = std::fs::read_to_string(p).map_err(|e| {
            eprintln!("plantgate: cannot read {}: {e}", p.display());
            ExitCode::from(1)
        })?;
        let cfg = config::parse(&text, p).map_err(|e| report_config_error(&e))?;
        Ok((cfg, text))
    };
    let (a, b) = match (load(old), load(new)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(code), _) | (_, Err(code)) => return code,
    };
    match config::diff::diff(&a.0, &a.1, &b.0, &b.1) {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("plantgate: {e}");
            ExitCode::from(1)
        }
    }
}

/// SIGINT or SIGTERM, listened for from now on (not only once polled).
fn stop_signals() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    })
}

/// `plantgate config try NEW --config CURRENT`: exit 0 when both configs
/// sent the same events, 1 when they differ, 2 on any error.
async fn config_try(current: &std::path::Path, new: &std::path::Path, limit: Duration) -> ExitCode {
    let load = |p: &std::path::Path| {
        config::load(p).map_err(|e| {
            eprintln!("{e}");
            ExitCode::from(2)
        })
    };
    let (a, b) = match (load(current), load(new)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(code), _) | (_, Err(code)) => return code,
    };
    // Listening before the sources start: a Ctrl-C at any time ends the
    // try with its report instead of killing it.
    let stop = match stop_signals() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("plantgate config try: cannot listen for Ctrl-C: {e}");
            return ExitCode::from(2);
        }
    };
    match plantgate::shadow::run(&a, &b, limit, stop).await {
        Ok(tried) => {
            print!("{}", tried.report);
            if tried.differs {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("plantgate config try: {e}");
            ExitCode::from(2)
        }
    }
}

fn store_target(config: &std::path::Path) -> Result<admin::Target, ExitCode> {
    let cfg = config::load(config).map_err(|e| report_config_error(&e))?;
    admin::target(&cfg).map_err(|e| {
        eprintln!("plantgate: {e}");
        ExitCode::from(2)
    })
}

fn print_result(
    result: Result<serde_json::Value, admin::AdminError>,
    render: impl Fn(&serde_json::Value) -> String,
) -> ExitCode {
    match result {
        Ok(v) => {
            print!("{}", render(&v));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("plantgate: {e}");
            ExitCode::from(2)
        }
    }
}

fn pretty(v: &serde_json::Value) -> String {
    format!("{}\n", serde_json::to_string_pretty(v).unwrap_or_default())
}

async fn dlq_command(command: DlqCommand) -> ExitCode {
    let path = match &command {
        DlqCommand::List { store, .. }
        | DlqCommand::Show { store, .. }
        | DlqCommand::Replay { store, .. }
        | DlqCommand::Drop { store, .. } => store.config.clone(),
    };
    let target = match store_target(&path) {
        Ok(t) => t,
        Err(code) => return code,
    };
    match command {
        DlqCommand::List { sink, json, .. } => {
            let r = target.list(sink.as_deref()).await;
            if json {
                print_result(r, pretty)
            } else {
                print_result(r, admin::dlq_table)
            }
        }
        DlqCommand::Show { id, .. } => print_result(target.show(id).await, pretty),
        DlqCommand::Replay { id, sink, .. } => {
            print_result(target.replay(id, sink.as_deref()).await, |v| {
                let ids: Vec<String> = v["replayed"]
                    .as_array()
                    .map(|a| a.iter().map(|x| x.to_string()).collect())
                    .unwrap_or_default();
                if ids.is_empty() {
                    "no dead letters to replay\n".to_string()
                } else {
                    format!("replayed into their lanes: {}\n", ids.join(", "))
                }
            })
        }
        DlqCommand::Drop { id, .. } => print_result(target.drop_letter(id).await, |_| {
            format!("dropped dead letter {id}\n")
        }),
    }
}

async fn queue_command(command: QueueCommand) -> ExitCode {
    let QueueCommand::Stats { json, store } = command;
    let target = match store_target(&store.config) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let r = target.stats().await;
    if json {
        print_result(r, pretty)
    } else {
        print_result(r, admin::stats_table)
    }
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

/// The gateway config and layout an update command works on.
fn updater(at: &UpdateArgs) -> Result<plantgate::update::Updater, ExitCode> {
    let path = at.config.clone().unwrap_or_else(|| {
        at.root
            .as_deref()
            .unwrap_or(std::path::Path::new("/"))
            .join("etc/plantgate/gateway.toml")
    });
    let cfg = config::load(&path).map_err(|e| report_config_error(&e))?;
    Ok(plantgate::update::Updater::new(cfg, at.root.as_deref()))
}

fn report_update(result: Result<String, plantgate::update::UpdateError>) -> ExitCode {
    match result {
        Ok(done) => {
            println!("{done}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("plantgate: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

async fn update_command(command: UpdateCommand) -> ExitCode {
    let at = match &command {
        UpdateCommand::Check { at }
        | UpdateCommand::Apply { at, .. }
        | UpdateCommand::Rollback { at }
        | UpdateCommand::Status { at } => at,
    };
    let updater = match updater(at) {
        Ok(u) => u,
        Err(code) => return code,
    };
    report_update(match command {
        UpdateCommand::Check { .. } => updater.check().await,
        UpdateCommand::Apply {
            bundle: Some(bundle),
            allow_downgrade,
            ..
        } => updater.apply_release(&bundle, allow_downgrade).await,
        UpdateCommand::Apply { .. } => updater.apply_from_channel().await,
        UpdateCommand::Rollback { .. } => updater.rollback().await,
        UpdateCommand::Status { .. } => updater.status().map(|s| s.trim_end().to_string()),
    })
}

fn bundle_command(command: BundleCommand) -> ExitCode {
    use plantgate::update::bundle::{self, BundleKind, Manifest};
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
    };
    let (manifest, files, output) = match command {
        BundleCommand::Release {
            version,
            binary,
            target,
            store_format,
            min_store_format,
            output,
        } => {
            if let Err(e) = semver::Version::parse(&version) {
                eprintln!("plantgate: --version {version:?} is not a version (like 1.4.0): {e}");
                return ExitCode::from(1);
            }
            let data = match read(&binary) {
                Ok(d) => d,
                Err(e) => {
                    eprintln!("plantgate: {e}");
                    return ExitCode::from(1);
                }
            };
            let manifest = Manifest {
                kind: BundleKind::Release,
                version,
                target: Some(target),
                store_format: Some(store_format),
                min_store_format: Some(min_store_format),
                files: Default::default(),
            };
            (
                manifest,
                vec![("plantgate".to_string(), data, 0o755)],
                output,
            )
        }
        BundleCommand::Config {
            version,
            files,
            output,
        } => {
            let mut out = Vec::new();
            for (i, p) in files.iter().enumerate() {
                let name = if i == 0 {
                    "gateway.toml".to_string()
                } else {
                    p.file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default()
                };
                match read(p) {
                    Ok(d) => out.push((name, d, 0o640)),
                    Err(e) => {
                        eprintln!("plantgate: {e}");
                        return ExitCode::from(1);
                    }
                }
            }
            let manifest = Manifest {
                kind: BundleKind::Config,
                version,
                target: None,
                store_format: None,
                min_store_format: None,
                files: Default::default(),
            };
            (manifest, out, output)
        }
    };
    // A signature beside the output is of an older file now.
    let _ = std::fs::remove_file(bundle::signature_path(&output));
    match bundle::build(manifest, &files).and_then(|tar| std::fs::write(&output, tar)) {
        Ok(()) => {
            println!(
                "wrote {}; sign it with `minisign -S -s KEY -m {}`",
                output.display(),
                output.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("plantgate: cannot write {}: {e}", output.display());
            ExitCode::from(2)
        }
    }
}

fn main() -> ExitCode {
    plantgate::heap::configure();
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
    if let Command::Config {
        command: ConfigCommand::Diff { old, new },
    } = &cli.command
    {
        return config_diff(old, new);
    }
    if let Command::Check { config: path } = &cli.command {
        // Also every file the config names, as the user running the check.
        return match config::load_checked(path) {
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
    if !matches!(cli.command, Command::Run { .. }) {
        #[cfg(feature = "opcua")]
        let commissioning = matches!(cli.command, Command::Opcua { .. });
        #[cfg(not(feature = "opcua"))]
        let commissioning = false;
        init_logging(LogFormat::Text, commissioning);
    }
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
            #[cfg(feature = "opcua")]
            Command::Opcua { command } => opcua_cli::opcua_command(command).await,
            Command::Dlq { command } => dlq_command(command).await,
            Command::Queue { command } => queue_command(command).await,
            Command::Update { command } => update_command(command).await,
            Command::Config {
                command: ConfigCommand::Apply { bundle, at },
            } => {
                let updater = match updater(&at) {
                    Ok(u) => u,
                    Err(code) => return code,
                };
                report_update(updater.apply_config(&bundle).await)
            }
            Command::Config {
                command:
                    ConfigCommand::Try {
                        new,
                        config,
                        duration,
                    },
            } => config_try(&config, &new, duration).await,
            Command::Bundle { command } => bundle_command(command),
            Command::Check { .. } | Command::Tags { .. } | Command::Config { .. } => {
                ExitCode::SUCCESS
            }
        }
    })
}
