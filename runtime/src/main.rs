use clap::Parser;
use sluice::cli::{
    Cli, Command, author, client, demo, gen_cmd, peek, pipelines, run, scaffold, try_cmd,
};
use tracing_subscriber::EnvFilter;

fn main() {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Demo(_)) {
        keep_malloc_lean();
    }
    let filter = EnvFilter::try_from_env("SLUICE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only for a person at a terminal, never in files or log collectors.
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if cli.log_json {
        logs.json().init();
    } else {
        logs.init();
    }
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Try(args) => try_cmd::run(args),
        Command::Gen(args) => gen_cmd::run(args),
        Command::Peek(args) => peek::run(args),
        Command::Transform(args) => scaffold::run(args),
        Command::Dev(args) => author::dev(args),
        Command::Demo(args) => demo::run(args),
        Command::Modules(args) => client::modules(args),
        Command::Deploy(args) => client::deploy(args),
        Command::Pipelines(args) => pipelines::pipelines(args),
        Command::Apply(args) => pipelines::apply(args),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}

/// glibc gives each thread that allocates an arena of its own, up to 8 per core, and keeps what
/// each frees for reuse there. With two arenas `sluice demo` (a few hundred records a second)
/// stays 15 MiB lower; a pipeline under load loses a quarter of its records per second to the
/// arenas' locks, so `run` keeps glibc's default. The demo also hands freed pages back to the
/// system every 10 s (`malloc_trim`): after a minute its resident memory went from 97 MiB to
/// 66 MiB at the first trim and stayed there.
fn keep_malloc_lean() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: called before any thread of the process is started.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
        let trim = || {
            loop {
                std::thread::sleep(std::time::Duration::from_secs(10));
                // SAFETY: malloc_trim only releases memory malloc holds free.
                unsafe {
                    libc::malloc_trim(0);
                }
            }
        };
        // Without the thread the demo only uses more memory.
        let _ = std::thread::Builder::new()
            .name("sluice-trim".into())
            .spawn(trim);
    }
}
