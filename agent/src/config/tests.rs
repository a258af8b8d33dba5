use std::path::Path;

use nodeward_runtime::config::{self, ConfigError};

use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    config::parse(Path::new("/etc/nodeward/agent.yaml"), text)
}

const MINIMAL: &str = "collector:\n  endpoint: http://127.0.0.1:7443\n  tls: disabled\n";

#[test]
fn minimal_config_gets_secure_defaults() {
    let config = parse(MINIMAL).unwrap();
    assert_eq!(config.imds.mode, ImdsMode::Enforce);
    let cidrs: Vec<String> = config
        .imds
        .blocked_cidrs
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(cidrs, ["169.254.169.254/32", "fd00:ec2::254/128"]);
    assert_eq!(
        config.collector.spool_dir,
        PathBuf::from("/var/lib/nodeward/spool")
    );
}

#[test]
fn full_config_parses() {
    let config = parse(
        "nodeName: ip-10-0-1-7\ncgroupRoot: /sys/fs/cgroup\npodCgroupPath: kubepods.slice\n\
         imds:\n  mode: audit\n  blockedCidrs: [169.254.169.254/32]\n\
         collector:\n  endpoint: http://collector:7443\n  tls: disabled\n  spoolDir: /tmp/spool\n",
    )
    .unwrap();
    assert_eq!(config.resolved_node_name().as_deref(), Some("ip-10-0-1-7"));
    assert_eq!(config.imds.mode, ImdsMode::Audit);
    assert_eq!(
        config.pod_cgroup_path,
        Some(PathBuf::from("kubepods.slice"))
    );
}

#[test]
fn unknown_key_names_file_and_key() {
    let err = parse(&format!("{MINIMAL}imdz:\n  mode: off\n"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("/etc/nodeward/agent.yaml"), "{err}");
    assert!(err.contains("imdz"), "{err}");
}

#[test]
fn bad_cidr_and_mode_are_refused() {
    let err = parse(&format!(
        "{MINIMAL}imds:\n  blockedCidrs: [169.254.169.254/33]\n"
    ))
    .unwrap_err();
    assert!(err.to_string().contains("agent.yaml"), "{err}");
    let err = parse(&format!("{MINIMAL}imds:\n  mode: block\n")).unwrap_err();
    assert!(err.to_string().contains("block"), "{err}");
}

#[test]
fn escaping_pod_cgroup_path_is_refused() {
    for bad in ["/kubepods.slice", "../kubepods.slice", "a/../../b"] {
        let err = parse(&format!("{MINIMAL}podCgroupPath: {bad}\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("podCgroupPath"), "{bad}: {err}");
        let err = parse(&format!(
            "{MINIMAL}sensors:\n  hostProcesses: true\n  hostCgroupPath: {bad}\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("sensors.hostCgroupPath"), "{bad}: {err}");
    }
    let ok = parse(&format!(
        "{MINIMAL}sensors:\n  hostProcesses: true\n  hostCgroupPath: system.slice\n"
    ))
    .unwrap();
    assert_eq!(
        ok.sensors.host_cgroup_path,
        std::path::Path::new("system.slice")
    );
}

#[test]
fn too_many_prefixes_are_refused() {
    let list: Vec<String> = (0..65).map(|i| format!("10.0.{i}.0/24")).collect();
    let err = parse(&format!(
        "{MINIMAL}imds:\n  blockedCidrs: [{}]\n",
        list.join(", ")
    ))
    .unwrap_err();
    assert!(err.to_string().contains("at most 64"), "{err}");
}

#[test]
fn plaintext_endpoint_must_be_a_url() {
    let err = parse("collector:\n  endpoint: collector:7443\n  tls: disabled\n").unwrap_err();
    assert!(err.to_string().contains("collector.endpoint"), "{err}");
}

#[test]
fn enrollment_is_off_by_default_and_needs_mutual_tls() {
    assert_eq!(parse(MINIMAL).unwrap().collector.enrollment, None);
    let config = parse(
        "collector:\n  endpoint: https://collector:7443\n  tls: mutual\n  caFile: /p/ca.crt\n\
         \x20 certFile: /p/tls.crt\n  keyFile: /p/tls.key\n  enrollment: {}\n",
    )
    .unwrap();
    assert_eq!(
        config.collector.enrollment.unwrap().token_file,
        PathBuf::from("/var/run/secrets/nodeward/token")
    );
    let err = parse(&format!("{MINIMAL}  enrollment: {{tokenFile: /t}}\n"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("collector.enrollment") && err.contains("mutual"),
        "{err}"
    );
}
