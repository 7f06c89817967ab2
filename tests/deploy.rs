//! The deployment files: there is no Docker engine here, so check what can be checked without
//! one — the compose file parses, references a Dockerfile that exists and builds what it ships,
//! and the configuration it mounts passes `sluice run --check`.

mod support;

use support::{repo, sluice, wasm};

fn compose() -> serde_yaml_ng::Value {
    let text = std::fs::read_to_string(repo().join("docker-compose.yml")).unwrap();
    serde_yaml_ng::from_str(&text).expect("docker-compose.yml is valid YAML")
}

#[test]
fn compose_runs_kafka_sluice_and_the_generator_from_the_repos_dockerfile() {
    let compose = compose();
    let services = &compose["services"];
    assert!(
        services["kafka"]["image"]
            .as_str()
            .unwrap()
            .starts_with("apache/kafka:")
    );
    assert_eq!(
        services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"].as_str(),
        Some("broker,controller")
    );
    let dockerfile = services["sluice"]["build"]["dockerfile"].as_str().unwrap();
    let dockerfile = std::fs::read_to_string(repo().join(dockerfile))
        .expect("the Dockerfile compose builds exists");
    assert!(
        dockerfile.contains("AS build") && dockerfile.contains("FROM debian:bookworm-slim"),
        "multi-stage, slim final image"
    );
    for artifact in ["tz_normaliser.wasm", "pii_stripper.wasm", "enricher.wasm"] {
        assert!(dockerfile.contains(artifact), "the image ships {artifact}");
    }
    let generator: Vec<&str> = services["generator"]["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(&generator[..2], ["gen", "--bootstrap-servers"]);
}

#[test]
fn the_mounted_configuration_passes_check() {
    let content = compose()["configs"]["sluice_toml"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    // The image keeps transforms in /opt/sluice/transforms; here they are in the build's target.
    let here = wasm("tz_normaliser")
        .parent()
        .unwrap()
        .display()
        .to_string();
    let content = content.replace("/opt/sluice/transforms", &here);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.toml");
    std::fs::write(&path, content).unwrap();
    let out = sluice()
        .args(["run", "--check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK (1 pipelines)"));
}
