//! `sluice run`: the main job.

use crate::api::AppState;
use crate::config::{Config, Guarantee, Overrides};
use crate::control::running::RunSettings;
use crate::control::{ControlPlane, Member};
use crate::engine::{Engine, Limits};
use crate::kafka::KafkaArgs;
use crate::pipeline;
use anyhow::Context;
use clap::Args;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Examples shown by `sluice run --help`.
pub const EXAMPLES: &str = "\
Examples:
  sluice run --config sluice.toml
  sluice run --config sluice.toml --bootstrap-servers kafka-1:9092,kafka-2:9092
  SLUICE_BOOTSTRAP_SERVERS=127.0.0.1:9092 sluice run -f sluice.toml
  sluice run --config sluice.toml --check      # validate the file and the modules, then exit
  sluice run --config sluice.toml --state-dir /var/lib/sluice
  sluice run --config sluice.toml --guarantee exactly-once     # outputs and offsets in one transaction
  SLUICE_KAFKA_SASL_PASSWORD=... sluice run -f sluice.toml   # any librdkafka property: SLUICE_KAFKA_<NAME>, `_` for `.`

The dashboard and the API are served on [api] listen (default http://127.0.0.1:8080/).

SIGTERM or SIGINT drains in-flight batches, commits, and exits 0.";

/// Arguments of `sluice run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The configuration file. (`-c` means a transform's KEY=VALUE in every subcommand, so the
    /// file is `-f`.)
    #[arg(short = 'f', long, value_name = "FILE", default_value = "sluice.toml")]
    pub config: PathBuf,
    /// Kafka settings that win over the file's `[kafka]`.
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// Where uploaded modules and deployments are kept, overriding `state_dir` in the file.
    #[arg(long, env = "SLUICE_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Where the API and the dashboard listen, overriding `[api] listen` in the file.
    #[arg(long, env = "SLUICE_API_LISTEN", value_name = "HOST:PORT")]
    pub listen: Option<std::net::SocketAddr>,
    /// Bearer token for changes, overriding `[api] token` in the file.
    #[arg(
        long,
        env = "SLUICE_API_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// Every pipeline's guarantee, overriding `guarantee` in the file.
    #[arg(long, env = "SLUICE_GUARANTEE", value_enum)]
    pub guarantee: Option<Guarantee>,
    /// Every pipeline's commit interval with exactly-once, overriding `commit_interval_ms`.
    #[arg(long, env = "SLUICE_COMMIT_INTERVAL_MS", value_name = "MS")]
    pub commit_interval_ms: Option<u64>,
    /// Check the configuration and load every module, then exit.
    #[arg(long)]
    pub check: bool,
}

/// Runs `sluice run`; returns the exit status.
pub fn run(args: RunArgs) -> anyhow::Result<i32> {
    let overrides = Overrides {
        kafka: args.kafka,
        listen: args.listen,
        token: args.token,
        state_dir: args.state_dir,
        guarantee: args.guarantee,
        commit_interval_ms: args.commit_interval_ms,
    };
    let config = Config::load(&args.config, overrides)?;
    // Listen for the stop signals before the slow part of start-up (compiling modules), so
    // that one sent during it stops the process gracefully rather than killing it.
    let signals = (!args.check).then(StopSignals::listen).transpose()?;
    // The port first: one in use fails start-up before anything else is started.
    let listener = (!args.check).then(|| bind(config.api.listen)).transpose()?;
    let state_dir = config.state_dir.clone().context("no state directory")?;
    if state_dir.exists() && !state_dir.is_dir() {
        anyhow::bail!(
            "{}: state_dir: {} is not a directory",
            args.config.display(),
            state_dir.display()
        );
    }
    let engine = engine_for(&config)?.with_compiled_cache(compiled_cache_dir(&state_dir));
    if args.check {
        crate::kafka::check_properties(&config.kafka, &config.pipeline)
            .map_err(anyhow::Error::msg)
            .with_context(|| args.config.display().to_string())?;
        for (index, p) in config.pipeline.iter().enumerate() {
            pipeline::load_stages(&engine, index, p, &pipeline::declared_tables(p))?;
        }
        println!(
            "{}: OK ({} pipelines)",
            args.config.display(),
            config.pipeline.len()
        );
        for p in &config.pipeline {
            println!("  {}: {}", p.name, p.guarantee.as_str());
        }
        return Ok(0);
    }

    serve(
        &config,
        &engine,
        &state_dir,
        &format!("file {}", args.config.display()),
        signals.expect("listening unless --check"),
        listener.expect("bound unless --check"),
        |address| tracing::info!(%address, "api listening"),
    )
}

/// This member's name among its group's members: made once and kept in `state_dir/member-id`,
/// so that it stays the same across restarts (see [`pipeline::transactional_id`]). Members
/// must not share a state directory.
pub fn member_id(state_dir: &Path) -> anyhow::Result<String> {
    let path = state_dir.join("member-id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
    std::fs::write(&path, format!("{id}\n"))
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(id)
}

/// Listens on `address` for the API, so that a port in use is found before anything starts.
pub fn bind(address: std::net::SocketAddr) -> anyhow::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(address)
        .with_context(|| format!("api.listen: cannot listen on {address}"))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// The URL of the API listening on `address`, as other members and their users reach it: the
/// host's name where it listens on every interface.
fn advertised(address: std::net::SocketAddr) -> String {
    if !address.ip().is_unspecified() {
        return format!("http://{address}/");
    }
    let host = hostname().unwrap_or_else(|| "localhost".into());
    format!("http://{host}:{}/", address.port())
}

/// This machine's name.
fn hostname() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    Some(name.trim().to_string()).filter(|n| !n.is_empty())
}

/// The host of `url` (`http://HOST:PORT/...`), without its port.
fn host_of(url: &str) -> Option<String> {
    let authority = url.split_once("://")?.1.split('/').next()?;
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => authority,
    };
    Some(host.trim_matches(['[', ']']).to_string())
}

/// Where a member keeps compiled transforms, so that a restart does not compile them again.
pub fn compiled_cache_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("compiled")
}

/// The engine `config`'s limits ask for.
pub fn engine_for(config: &Config) -> anyhow::Result<Engine> {
    Engine::new(Limits {
        memory_bytes: config.limits.memory_mb as usize * 1024 * 1024,
        cpu_budget: Duration::from_millis(config.limits.cpu_budget_ms),
    })
}

/// The async runtime of `sluice run`, listening for SIGTERM and SIGINT from the moment it is
/// made: a signal sent at any later point of start-up stops the process gracefully.
pub struct StopSignals {
    runtime: tokio::runtime::Runtime,
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl StopSignals {
    /// Starts the runtime and listens.
    pub fn listen() -> anyhow::Result<StopSignals> {
        use tokio::signal::unix::{SignalKind, signal};
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let (terminate, interrupt) = runtime.block_on(async {
            anyhow::Ok((
                signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
                signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?,
            ))
        })?;
        Ok(StopSignals {
            runtime,
            terminate,
            interrupt,
        })
    }
}

/// Applies `config`'s pipelines (`source` says where they come from, for their latest change),
/// then runs the pipelines and the API (modules and deployments in `state_dir`, served on
/// `listener`, see [`bind`]) until SIGTERM or SIGINT, or until every pipeline has stopped; then
/// drains and commits. `announce` is told the API's address once it serves. Returns the exit status.
pub fn serve(
    config: &Config,
    engine: &Engine,
    state_dir: &Path,
    source: &str,
    signals: StopSignals,
    listener: std::net::TcpListener,
    announce: impl FnOnce(std::net::SocketAddr),
) -> anyhow::Result<i32> {
    let StopSignals {
        runtime,
        mut terminate,
        mut interrupt,
    } = signals;
    let started_at = crate::control::fleet::now_ms();
    let max_module_bytes = config.api.max_module_mb as usize * 1024 * 1024;
    let control = match &config.fleet {
        Some(fleet) => ControlPlane::join_fleet(
            state_dir,
            engine.clone(),
            max_module_bytes,
            &config.kafka,
            fleet,
        )?,
        None => {
            tracing::info!(state_dir = %state_dir.display(),
                "running alone: modules and deployments are kept in state_dir ([fleet] shares them with other members through Kafka)");
            Arc::new(
                ControlPlane::open(state_dir, engine.clone(), max_module_bytes)
                    .with_context(|| format!("state directory {}", state_dir.display()))?,
            )
        }
    };
    let member = member_id(state_dir)?;
    control.set_limits(config.limits.clone());
    control.apply_file(&config.pipeline, source)?;
    let first: Vec<String> = config.pipeline.iter().map(|p| p.name.clone()).collect();
    control.start_pipelines(
        Some(RunSettings {
            config: config.clone(),
            state_dir: state_dir.to_path_buf(),
            member: member.clone(),
        }),
        &first,
    )?;
    let (stop_api, api_stopped) = tokio::sync::oneshot::channel::<()>();
    let api = runtime.block_on(async {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let address = listener.local_addr()?;
        let url = (config.fleet.as_ref())
            .and_then(|f| f.advertised_url.clone())
            .unwrap_or_else(|| advertised(address));
        // The names other members' pages link this one by.
        let mut allowed_hosts = config.api.allowed_hosts.clone();
        allowed_hosts.extend(hostname());
        allowed_hosts.extend(host_of(&url));
        control.set_member(Member {
            id: member.clone(),
            address: url,
            started_at,
        });
        announce(address);
        let access = crate::api::Access {
            token: config.api.token.clone(),
            read_token: config.api.read_token.clone(),
            allowed_hosts,
        };
        let state = AppState::new(control.clone(), access, Some(config.kafka.clone()));
        anyhow::Ok(tokio::spawn(crate::api::serve(listener, state, async {
            let _ = api_stopped.await;
        })))
    })?;
    runtime.block_on(async {
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tokio::select! {
                _ = terminate.recv() => break,
                _ = interrupt.recv() => break,
                _ = tick.tick() => if control.all_done() { break },
            }
        }
    });
    // Streams and tries end when the server stops; a client that will not let go is not
    // waited for past a second, nor is work it left behind.
    let _ = stop_api.send(());
    let _ = runtime.block_on(async { tokio::time::timeout(Duration::from_secs(1), api).await });
    runtime.shutdown_timeout(Duration::from_secs(1));
    control.leave_fleet();

    control.stop_all();
    tracing::info!("stopping: draining in-flight batches and committing");
    // Each pipeline drains within shutdown_timeout_ms itself; the grace only catches a drain
    // that hangs past its own deadline.
    let deadline =
        Instant::now() + Duration::from_millis(config.shutdown_timeout_ms) + Duration::from_secs(5);
    while !control.all_stopped() {
        if Instant::now() > deadline {
            tracing::error!(
                "graceful stop took longer than {} ms; exiting without it",
                config.shutdown_timeout_ms
            );
            return Ok(1);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let failed = control.join_all();
    for (pipeline, error) in &failed {
        tracing::error!(%pipeline, %error, "pipeline failed");
    }
    Ok(if failed.is_empty() { 0 } else { 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_keeps_its_name_across_restarts_and_members_differ() {
        let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let first = member_id(one.path()).unwrap();
        assert_eq!(first.len(), 12);
        assert_eq!(
            member_id(one.path()).unwrap(),
            first,
            "same state dir, same name"
        );
        assert_ne!(member_id(two.path()).unwrap(), first);
        let config = Config::parse(
            "[[pipeline]]\nname = \"p\"\ninputs = [\"a\"]\noutputs = [\"b\"]\nguarantee = \"exactly-once\"\n",
        )
        .unwrap();
        assert_eq!(
            pipeline::transactional_id(&config.pipeline[0], &first),
            format!("sluice-p-{first}")
        );
    }
}
