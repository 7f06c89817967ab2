//! The transform author's loop: `sluice transform build`, `sluice transform deploy` and
//! `sluice dev`, driven by the project's `transform.toml` (written by `sluice transform new`).
//! A Rust transform is a crate built with cargo; a Python or TypeScript one names the command
//! that builds it in its manifest's `[build]`.

use super::client::{ApiArgs, upload_and_append, upload_and_deploy};
use anyhow::Context;
use clap::Args;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

/// The manifest's file name, beside the crate's `Cargo.toml`.
pub const MANIFEST: &str = "transform.toml";

/// What `sluice transform build/deploy` and `sluice dev` know of a transform crate.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The module name it is uploaded and deployed under; the crate's name by default.
    pub name: Option<String>,
    /// A file of sample input lines (relative to the crate) that `sluice dev` runs through the
    /// transform after each build, as `sluice try` would.
    pub sample: Option<PathBuf>,
    /// The configuration it is tried and deployed with.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// How to build a transform that is not a Rust crate; absent for a crate (built by cargo).
    pub build: Option<BuildCommand>,
}

/// The build of a Python or TypeScript transform, as `sluice transform new --lang` writes it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildCommand {
    /// The command, run with `sh -c` in the project's folder.
    pub command: String,
    /// The component it writes, relative to the project's folder.
    pub output: PathBuf,
}

/// A transform project: a Rust crate, or a Python or TypeScript project with a `[build]`.
#[derive(Debug)]
pub struct Project {
    dir: PathBuf,
    manifest: Manifest,
    /// The crate's package name, or the folder's name.
    package: String,
}

impl Project {
    /// The project in `dir`: a crate (its `Cargo.toml` there; `transform.toml` optional), or a
    /// folder whose `transform.toml` says how to build it.
    pub fn open(dir: &Path) -> anyhow::Result<Project> {
        let path = dir.join(MANIFEST);
        let manifest: Manifest = match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text).with_context(|| path.display().to_string())?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Manifest::default(),
            Err(e) => return Err(e).with_context(|| path.display().to_string()),
        };
        let package = if manifest.build.is_some() {
            let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
            (dir.file_name().map(|n| n.to_string_lossy().into_owned())).unwrap_or_default()
        } else {
            crate_name(dir)?
        };
        Ok(Project {
            dir: dir.to_path_buf(),
            manifest,
            package,
        })
    }

    /// The module name it is deployed under.
    pub fn name(&self) -> &str {
        self.manifest.name.as_deref().unwrap_or(&self.package)
    }

    /// Builds the component, with the manifest's command or else with cargo for
    /// `wasm32-wasip2` (adding the target with rustup when it is missing); returns the `.wasm`
    /// file. The build's messages go to standard error.
    pub fn build(&self) -> anyhow::Result<PathBuf> {
        match &self.manifest.build {
            Some(build) => self.build_with(build),
            None => self.build_crate(),
        }
    }

    fn build_with(&self, build: &BuildCommand) -> anyhow::Result<PathBuf> {
        let status = Command::new("sh")
            .args(["-c", &build.command])
            .current_dir(&self.dir)
            .stdout(std::io::stderr())
            .status()
            .context("cannot run sh")?;
        anyhow::ensure!(
            status.success(),
            "`{}` failed in {} (its messages are above)",
            build.command,
            self.dir.display()
        );
        let output = self.dir.join(&build.output);
        anyhow::ensure!(
            output.is_file(),
            "`{}` wrote no {}: check [build] output in {MANIFEST}",
            build.command,
            output.display()
        );
        Ok(output)
    }

    fn build_crate(&self) -> anyhow::Result<PathBuf> {
        ensure_target()?;
        let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or("cargo".into()));
        cargo
            .args(["build", "--release", "--target", TARGET])
            .arg("--message-format=json-render-diagnostics")
            .current_dir(&self.dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let output = cargo
            .output()
            .context("cannot run cargo: install Rust with rustup")?;
        anyhow::ensure!(
            output.status.success(),
            "cargo build failed in {} (its messages are above)",
            self.dir.display()
        );
        let artefact = String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|m| m["reason"] == "compiler-artifact")
            .filter(|m| {
                (m["target"]["kind"].as_array()).is_some_and(|k| k.iter().any(|k| k == "cdylib"))
            })
            .flat_map(|m| m["filenames"].as_array().cloned().unwrap_or_default())
            .filter_map(|f| f.as_str().map(PathBuf::from))
            .find(|f| f.extension().is_some_and(|e| e == "wasm"));
        artefact.with_context(|| {
            format!(
                "cargo built no .wasm component in {}: its Cargo.toml needs crate-type = [\"cdylib\", \"rlib\"] under [lib]",
                self.dir.display()
            )
        })
    }

    /// The files whose change means a rebuild: sources, manifests and the sample. For a crate,
    /// `src/` and the manifests; otherwise every file but installed packages, caches and the
    /// build's output.
    fn watched(&self) -> Vec<PathBuf> {
        const NOT_SOURCES: &[&str] = &["node_modules", "build", "target", "__pycache__"];
        let mut files = vec![self.dir.join(MANIFEST)];
        if let Some(sample) = &self.manifest.sample {
            files.push(self.dir.join(sample));
        }
        let mut dirs = match &self.manifest.build {
            Some(_) => vec![self.dir.clone()],
            None => {
                files.push(self.dir.join("Cargo.toml"));
                vec![self.dir.join("src")]
            }
        };
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if path.is_dir() {
                    if !name.starts_with('.') && !NOT_SOURCES.contains(&name.as_ref()) {
                        dirs.push(path);
                    }
                } else if !files.contains(&path) {
                    files.push(path);
                }
            }
        }
        files
    }

    /// When any watched file last changed.
    fn last_change(&self) -> Option<SystemTime> {
        (self.watched().iter())
            .filter_map(|f| f.metadata().and_then(|m| m.modified()).ok())
            .max()
    }
}

const TARGET: &str = "wasm32-wasip2";

/// The package name in `dir`'s `Cargo.toml`.
fn crate_name(dir: &Path) -> anyhow::Result<String> {
    let cargo = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&cargo).with_context(|| {
        format!(
            "{}: not a transform project (no Cargo.toml, and no [build] in a {MANIFEST}); give its folder with --path",
            dir.display()
        )
    })?;
    let cargo: toml::Table =
        toml::from_str(&text).with_context(|| format!("{} is not TOML", cargo.display()))?;
    (cargo.get("package"))
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
        .map(str::to_string)
        .with_context(|| format!("{}: no [package] name", dir.display()))
}

/// Adds the `wasm32-wasip2` target when rustc does not have it.
fn ensure_target() -> anyhow::Result<()> {
    let libdir = Command::new("rustc")
        .args(["--print", "target-libdir", "--target", TARGET])
        .output()
        .context("cannot run rustc: install Rust with rustup")?;
    let dir = PathBuf::from(String::from_utf8_lossy(&libdir.stdout).trim());
    if libdir.status.success() && dir.is_dir() {
        return Ok(());
    }
    eprintln!("adding the {TARGET} target: rustup target add {TARGET}");
    let added = Command::new("rustup")
        .args(["target", "add", TARGET])
        .status()
        .map_err(|e| anyhow::anyhow!("rustc has no {TARGET} target and rustup cannot add it ({e}): install Rust with rustup"))?;
    anyhow::ensure!(
        added.success(),
        "`rustup target add {TARGET}` failed: the target is needed to build transforms"
    );
    Ok(())
}

/// Arguments of `sluice transform build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The transform project's folder.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub path: PathBuf,
}

/// Arguments of `sluice transform deploy`.
#[derive(Debug, Args)]
pub struct DeployArgs {
    /// The pipeline to deploy into.
    pub pipeline: String,
    /// The transform slot, from 0.
    #[arg(long, default_value_t = 0)]
    pub slot: usize,
    /// Add the transform as a new last slot of the chain instead.
    #[arg(long, conflicts_with = "slot")]
    pub new_slot: bool,
    /// The transform project's folder.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub path: PathBuf,
    #[command(flatten)]
    pub api: ApiArgs,
}

/// Arguments of `sluice dev`.
#[derive(Debug, Args)]
pub struct DevArgs {
    /// The pipeline to deploy into.
    pub pipeline: String,
    /// The transform slot, from 0.
    #[arg(long, default_value_t = 0)]
    pub slot: usize,
    /// The transform project's folder.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub path: PathBuf,
    /// Keep going: rebuild, try and deploy again whenever a source file changes.
    #[arg(long)]
    pub watch: bool,
    #[command(flatten)]
    pub api: ApiArgs,
}

/// Examples shown by `sluice dev --help`.
pub const DEV_EXAMPLES: &str = "\
Examples:
  sluice demo &                                  # a runtime with pipelines to deploy into
  sluice dev unify --path rename-fields --watch  # build, try the sample, deploy; again on save

The crate's transform.toml (written by `sluice transform new`) names the module, the sample
lines tried after each build and the configuration it is tried and deployed with. A build that
fails, or a module the runtime refuses, leaves the running version in place.";

/// Runs `sluice transform build`.
pub fn build(args: BuildArgs) -> anyhow::Result<i32> {
    let project = Project::open(&args.path)?;
    let wasm = project.build()?;
    let size = wasm.metadata().map(|m| m.len()).unwrap_or_default();
    println!("{}: {} ({size} bytes)", project.name(), wasm.display());
    Ok(0)
}

/// Runs `sluice transform deploy`.
pub fn deploy(args: DeployArgs) -> anyhow::Result<i32> {
    let project = Project::open(&args.path)?;
    let wasm = project.build()?;
    if args.new_slot {
        let config = project.manifest.config.clone();
        let (version, answer) =
            upload_and_append(&args.api, &args.pipeline, &wasm, project.name(), config)?;
        println!(
            "deployed {} version {version} into {} as slot {}: {}",
            project.name(),
            args.pipeline,
            answer.slots.len() - 1,
            chain(&answer)
        );
        return Ok(0);
    }
    deploy_built(&project, &wasm, &args.api, &args.pipeline, args.slot)?;
    Ok(0)
}

/// A pipeline's chain, `[0] a@1 -> [1] b@3`.
fn chain(pipeline: &crate::api::model::Pipeline) -> String {
    let slots: Vec<String> = (pipeline.slots.iter())
        .map(|s| format!("[{}] {}@{}", s.index, s.module, s.version))
        .collect();
    slots.join(" -> ")
}

fn deploy_built(
    project: &Project,
    wasm: &Path,
    api: &ApiArgs,
    pipeline: &str,
    slot: usize,
) -> anyhow::Result<()> {
    let config = project.manifest.config.clone();
    let (version, answer) = upload_and_deploy(api, pipeline, slot, wasm, project.name(), config)?;
    println!(
        "deployed {} version {version} into {pipeline} slot {slot}: {}",
        project.name(),
        chain(&answer)
    );
    Ok(())
}

/// Runs the sample lines through `wasm` as `sluice try` does, printing what comes out.
fn try_sample(project: &Project, wasm: &Path) -> anyhow::Result<bool> {
    let Some(sample) = &project.manifest.sample else {
        return Ok(true);
    };
    let mut command = Command::new(std::env::current_exe()?);
    command
        .arg("try")
        .arg(wasm)
        .arg("--input")
        .arg(project.dir.join(sample));
    for (key, value) in &project.manifest.config {
        command.arg("-c").arg(format!("{key}={value}"));
    }
    println!("--- {} through {}:", sample.display(), project.name());
    let status = command.status().context("cannot run sluice try")?;
    Ok(status.success())
}

/// Runs `sluice dev`.
pub fn dev(args: DevArgs) -> anyhow::Result<i32> {
    let mut seen = None;
    loop {
        // The manifest is read again each time: it is watched too.
        let round = Project::open(&args.path).and_then(|project| {
            seen = project.last_change();
            let wasm = project.build()?;
            if !try_sample(&project, &wasm)? {
                eprintln!("some sample lines failed (above); deploying anyway");
            }
            deploy_built(&project, &wasm, &args.api, &args.pipeline, args.slot)
        });
        match round {
            Ok(()) => {}
            Err(e) if args.watch => {
                eprintln!(
                    "error: {e:#}\nwaiting for a change to {}",
                    args.path.display()
                )
            }
            Err(e) => return Err(e),
        }
        if !args.watch {
            return Ok(0);
        }
        // Polled rather than notified: a few files, checked twice a second.
        loop {
            std::thread::sleep(Duration::from_millis(500));
            let now = Project::open(&args.path).ok().and_then(|k| k.last_change());
            if now != seen {
                println!("--- changed: building again");
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crate_is_named_by_its_manifest_or_its_package() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            Project::open(dir.path())
                .unwrap_err()
                .to_string()
                .contains("no Cargo.toml")
        );
        std::fs::write(
            dir.path().join("Cargo.toml"),
            "[package]\nname = \"rename-fields\"\n",
        )
        .unwrap();
        let project = Project::open(dir.path()).unwrap();
        assert_eq!(
            (project.name(), &project.manifest),
            ("rename-fields", &Manifest::default())
        );
        std::fs::write(
            dir.path().join(MANIFEST),
            "name = \"renamer\"\nsample = \"sample.jsonl\"\n[config]\nrename = \"msg:message\"\n",
        )
        .unwrap();
        let project = Project::open(dir.path()).unwrap();
        assert_eq!(project.name(), "renamer");
        assert_eq!(project.manifest.config["rename"], "msg:message");
        std::fs::write(dir.path().join(MANIFEST), "nmae = \"x\"\n").unwrap();
        let wrong = format!("{:#}", Project::open(dir.path()).unwrap_err());
        assert!(wrong.contains("unknown field `nmae`"), "{wrong}");
    }

    #[test]
    fn a_project_with_a_build_command_is_built_by_it_and_watched_whole() {
        let dir = tempfile::tempdir().unwrap();
        let project_dir = dir.path().join("email-mask");
        std::fs::create_dir_all(project_dir.join("node_modules/x")).unwrap();
        std::fs::create_dir_all(project_dir.join("src")).unwrap();
        for file in ["src/mask.ts", "node_modules/x/index.js", "mask.py"] {
            std::fs::write(project_dir.join(file), "").unwrap();
        }
        std::fs::write(
            project_dir.join(MANIFEST),
            "[build]\ncommand = \"mkdir -p build && printf built > build/mask.wasm\"\noutput = \"build/mask.wasm\"\n",
        )
        .unwrap();
        let project = Project::open(&project_dir).unwrap();
        assert_eq!(project.name(), "email-mask", "named by its folder");
        let wasm = project.build().unwrap();
        assert_eq!(std::fs::read_to_string(&wasm).unwrap(), "built");
        let watched = project.watched();
        for file in ["src/mask.ts", "mask.py", MANIFEST] {
            assert!(
                watched.contains(&project_dir.join(file)),
                "{file}: {watched:?}"
            );
        }
        assert!(
            !watched
                .iter()
                .any(|f| f.starts_with(project_dir.join("node_modules"))
                    || f.starts_with(project_dir.join("build"))),
            "{watched:?}"
        );

        std::fs::write(
            project_dir.join(MANIFEST),
            "[build]\ncommand = \"true\"\noutput = \"build/other.wasm\"\n",
        )
        .unwrap();
        let missing = Project::open(&project_dir).unwrap().build().unwrap_err();
        assert!(missing.to_string().contains("wrote no"), "{missing}");
        std::fs::write(
            project_dir.join(MANIFEST),
            "[build]\ncommand = \"exit 3\"\noutput = \"build/mask.wasm\"\n",
        )
        .unwrap();
        let failed = Project::open(&project_dir).unwrap().build().unwrap_err();
        assert!(failed.to_string().contains("`exit 3` failed"), "{failed}");
    }

    #[test]
    fn a_change_to_a_source_or_the_sample_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Cargo.toml"), "[package]\nname = \"x\"\n").unwrap();
        std::fs::write(dir.path().join(MANIFEST), "sample = \"s.jsonl\"\n").unwrap();
        std::fs::create_dir_all(dir.path().join("src/deep")).unwrap();
        std::fs::write(dir.path().join("src/deep/mod.rs"), "").unwrap();
        std::fs::write(dir.path().join("s.jsonl"), "{}\n").unwrap();
        let project = Project::open(dir.path()).unwrap();
        let watched = project.watched();
        for file in ["Cargo.toml", MANIFEST, "s.jsonl", "src/deep/mod.rs"] {
            assert!(
                watched.contains(&dir.path().join(file)),
                "{file}: {watched:?}"
            );
        }
    }
}
