//! nodeward's verdicts next to what kube-bench's own check files conclude on the same
//! fixtures, and why nodeward is right where they differ.
//!
//! kube-bench is modelled as it behaves (its `cfg/config.yaml` and `check/test.go`): the
//! kubelet config, kubeconfig, unit and CA are the first *existing* path of a fixed list
//! (not the files the kubelet names); `--config-dir` drop-ins are never read; a value is the
//! command-line flag if present, else the config file's, and an absent value is "not set"
//! (no kubelet defaults); `stat -c %a` / `%U:%G` run on the path itself, so a symlink is
//! judged as `777` and parent directories are never looked at. Test items default to
//! `set: true`; `bin_op` defaults to `and`.

mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nodeward_posture::Status;
use serde_json::Value;
use support::layouts::{self, Fixture};

const CONFS: &[&str] = &[
    "/etc/kubernetes/kubelet-config.yaml",
    "/var/lib/kubelet/config.yaml",
    "/var/lib/kubelet/config.json",
    "/etc/kubernetes/kubelet/kubelet-config.json",
    "/home/kubernetes/kubelet-config.yaml",
    "/etc/default/kubeletconfig.json",
];
const KUBECONFIGS: &[&str] = &[
    "/etc/kubernetes/kubelet.conf",
    "/etc/kubernetes/kubelet-kubeconfig.conf",
    "/var/lib/kubelet/kubeconfig",
    "/etc/kubernetes/kubelet-kubeconfig",
];
const SERVICES: &[&str] = &[
    "/etc/systemd/system/kubelet.service.d/10-kubeadm.conf",
    "/etc/systemd/system/kubelet.service",
    "/lib/systemd/system/kubelet.service",
    "/etc/systemd/system/kubelet.service.d/10-kubelet-args.conf",
];
const CAFILES: &[&str] = &["/etc/kubernetes/pki/ca.crt", "/etc/kubernetes/certs/ca.crt"];

/// What kube-bench reads on a node.
struct Bench<'a> {
    fixture: &'a Fixture,
    conf: Option<Value>,
}

impl<'a> Bench<'a> {
    fn new(fixture: &'a Fixture) -> Self {
        let conf = first(fixture, CONFS).and_then(|p| {
            let text = std::fs::read_to_string(fixture.node.path(&p)).ok()?;
            serde_saphyr::from_str::<Value>(&text).ok()
        });
        Self { fixture, conf }
    }

    /// `test -e` (follows symlinks) over a list, kube-bench's way of picking a file.
    fn var(&self, list: &[&str]) -> Option<String> {
        first(self.fixture, list)
    }

    /// The value kube-bench finds for a test item: flag in `ps` output, else config path.
    fn find(&self, item: &Value) -> Option<String> {
        let flag = item["flag"].as_str().unwrap_or_default();
        let args = &self.fixture.args;
        if flag.starts_with("--") {
            for (i, word) in args.split_whitespace().enumerate() {
                if let Some(v) = word.strip_prefix(flag).and_then(|r| r.strip_prefix('=')) {
                    return Some(v.to_owned());
                }
                if word == flag {
                    return args.split_whitespace().nth(i + 1).map(str::to_owned);
                }
            }
        } else if let Some(at) = args.find(&format!("{flag}=")) {
            let rest = &args[at + flag.len() + 1..];
            return Some(rest.split([',', ' ']).next().unwrap_or_default().to_owned());
        }
        let path = item["path"].as_str()?;
        let conf = self.conf.as_ref()?;
        if path.starts_with("{range .tlsCipherSuites") {
            let list = conf.get("tlsCipherSuites")?.as_array()?;
            return Some(
                list.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(","),
            );
        }
        let mut node = conf;
        for key in path
            .trim_start_matches("{.")
            .trim_end_matches('}')
            .split('.')
        {
            node = node.get(key)?;
        }
        Some(match node {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }

    /// The output of an item's audit for file checks: `stat` of the path itself.
    fn stat(&self, var: Option<String>, owner: bool) -> Option<String> {
        let path = var?;
        let meta = std::fs::symlink_metadata(self.fixture.node.path(&path)).ok()?;
        Some(if owner {
            format!("{}:{}", name(meta.uid()), name(meta.gid()))
        } else {
            format!("{:o}", meta.mode() & 0o7777)
        })
    }

    /// kube-bench's verdict on one check of its YAML: `true` is PASS.
    fn verdict(&self, check: &Value) -> Option<bool> {
        let audit = check["audit"].as_str().unwrap_or_default();
        let items = check["tests"]["test_items"].as_array()?;
        let file_var = [
            ("$kubeletkubeconfig", KUBECONFIGS),
            ("$kubeletconf", CONFS),
            ("$kubeletsvc", SERVICES),
        ]
        .into_iter()
        .find(|(v, _)| audit.contains(v));
        let results: Vec<bool> = if audit.contains("stat -c") || audit.contains("CAFILE") {
            let var = if audit.contains("CAFILE") {
                self.find(&serde_json::json!({"flag": "--client-ca-file"}))
                    .or_else(|| self.var(CAFILES))
            } else {
                self.var(file_var?.1)
            };
            let output = self.stat(var, audit.contains("%U:%G"));
            items
                .iter()
                .map(|item| file_item(item, output.as_deref(), audit))
                .collect()
        } else if audit.contains("$kubeletbin") {
            items
                .iter()
                .map(|item| value_item(item, self.find(item).as_deref()))
                .collect()
        } else {
            return None;
        };
        Some(if check["tests"]["bin_op"] == "or" {
            results.iter().any(|r| *r)
        } else {
            results.iter().all(|r| *r)
        })
    }
}

fn first(fixture: &Fixture, list: &[&str]) -> Option<String> {
    list.iter()
        .find(|p| fixture.node.path(p).exists())
        .map(|p| (*p).to_owned())
}

fn name(id: u32) -> String {
    if id == 0 {
        "root".to_owned()
    } else {
        id.to_string()
    }
}

fn file_item(item: &Value, output: Option<&str>, audit: &str) -> bool {
    let flag = item["flag"].as_str().unwrap_or_default();
    let output = output.map_or_else(
        || {
            if audit.contains("File not found") {
                "File not found".to_owned()
            } else {
                String::new()
            }
        },
        str::to_owned,
    );
    if flag == "permissions" {
        let mask =
            u32::from_str_radix(item["compare"]["value"].as_str().unwrap_or("0"), 8).unwrap_or(0);
        return u32::from_str_radix(&output, 8).is_ok_and(|mode| mode & !mask == 0);
    }
    output.contains(flag)
}

fn value_item(item: &Value, value: Option<&str>) -> bool {
    let set = item.get("set").and_then(Value::as_bool).unwrap_or(true);
    let Some(value) = value else { return !set };
    if !set {
        return false;
    }
    let Some(op) = item["compare"]["op"].as_str() else {
        return true;
    };
    let want = match &item["compare"]["value"] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match op {
        "eq" => value == want,
        "noteq" => value != want,
        "has" => value.contains(&want),
        "nothave" => !value.contains(&want),
        "gte" => value
            .parse::<f64>()
            .ok()
            .zip(want.parse::<f64>().ok())
            .is_some_and(|(a, b)| a >= b),
        "valid_elements" => {
            let allowed: Vec<&str> = want.split(',').collect();
            value.split(',').all(|v| allowed.contains(&v))
        }
        other => panic!("kube-bench op {other} not modelled"),
    }
}

fn load(file: &str) -> Vec<(String, Value)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/kube-bench")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let doc: Value = serde_saphyr::from_str(&text).expect("kube-bench YAML");
    let prefix = if file.contains("eks") {
        "cis-eks-1.8.0"
    } else {
        "cis-1.12"
    };
    doc["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["checks"].as_array().cloned().unwrap_or_default())
        .map(|c| (format!("{prefix}:{}", c["id"].as_str().expect("id")), c))
        .collect()
}

/// The kubelet flag `name`'s value in a fixture's command line.
fn flag(fixture: &Fixture, name: &str) -> Option<String> {
    let words: Vec<&str> = fixture.args.split_whitespace().collect();
    words.iter().enumerate().find_map(|(i, w)| {
        w.strip_prefix(&format!("--{name}="))
            .map(str::to_owned)
            .or_else(|| {
                (*w == format!("--{name}"))
                    .then(|| words.get(i + 1).map(|s| (*s).to_owned()))
                    .flatten()
            })
    })
}

const FILE_ITEMS: &[&str] = &[
    "cis-eks-1.8.0:3.1.1",
    "cis-eks-1.8.0:3.1.2",
    "cis-eks-1.8.0:3.1.3",
    "cis-eks-1.8.0:3.1.4",
    "cis-1.12:4.1.5",
    "cis-1.12:4.1.6",
    "cis-1.12:4.1.9",
    "cis-1.12:4.1.10",
];

/// Why nodeward's verdict is the right one where kube-bench's differs, or `None` when the
/// difference has no explanation (the test then fails).
fn reason(
    fixture: &Fixture,
    bench: &Bench,
    item: &str,
    ours: &[&nodeward_posture::CheckResult],
) -> Option<String> {
    let check = ours.first()?;
    let is_config_item = ["3.1.3", "3.1.4", "4.1.9", "4.1.10"]
        .iter()
        .any(|i| item.ends_with(i));
    if check.observed.contains("; directory ") {
        return Some("a directory above the file is writable by others, who can replace the file whatever its mode; kube-bench never looks at parent directories".to_owned());
    }
    if FILE_ITEMS.contains(&item) {
        if check.observed.starts_with("no --config") {
            return Some("the kubelet runs without a config file, so there is none to protect; kube-bench fails because its fixed path is absent".to_owned());
        }
        let (list, name) = if is_config_item {
            (CONFS, "config")
        } else {
            (KUBECONFIGS, "kubeconfig")
        };
        let actual = flag(fixture, name);
        let picked = bench.var(list);
        if actual != picked {
            return Some(format!(
                "the kubelet's --{name} is {}, kube-bench judged {} from its fixed list",
                actual.unwrap_or_default(),
                picked.unwrap_or_else(|| "nothing".to_owned())
            ));
        }
        return None;
    }
    if item == "cis-1.12:4.1.1" || item == "cis-1.12:4.1.2" {
        return Some("nodeward judges the unit systemd loads and every drop-in of it; kube-bench stats one path of a fixed list".to_owned());
    }
    if item == "cis-1.12:4.1.7" || item == "cis-1.12:4.1.8" {
        return check.observed.contains(" -> ").then(|| "the CA file is a symlink: kube-bench stats the link itself (777), nodeward the file it points to".to_owned());
    }
    if item.ends_with("3.2.8") || item.ends_with("4.2.10") {
        if check.observed.contains("exec plugin") {
            return Some(
                "the kubelet authenticates with an exec plugin: no client certificate to rotate"
                    .to_owned(),
            );
        }
        if fixture
            .args
            .split_whitespace()
            .any(|w| w == "--rotate-certificates")
        {
            return Some("--rotate-certificates is given bare (true); kube-bench takes the next word as its value".to_owned());
        }
        if check.source == "default" {
            return Some("rotateCertificates is absent and the kubelet's default is false: the client certificate is never rotated; kube-bench passes an absent key".to_owned());
        }
    }
    if item == "cis-1.12:4.2.9" && check.observed.contains("serverTLSBootstrap: true") {
        return Some("serverTLSBootstrap gets a serving certificate from the cluster CA and rotates it; kube-bench only accepts tlsCertFile".to_owned());
    }
    if item == "cis-1.12:4.2.11" && check.status == Status::Warn {
        return Some("the gate is on but serverTLSBootstrap is off, so nothing rotates the serving certificate: nodeward warns, kube-bench reads the gate only".to_owned());
    }
    if check.source == "default" {
        return Some(format!(
            "the kubelet applies a default here ({}); kube-bench knows no defaults and reads an absent key as \"not set\"",
            check.observed
        ));
    }
    if check.source.starts_with("drop-in") {
        return Some(format!(
            "the value comes from {}, a --config-dir drop-in kube-bench never reads",
            check.source
        ));
    }
    let actual = flag(fixture, "config");
    let picked = bench.var(CONFS);
    if actual != picked {
        return Some(format!(
            "the kubelet's --config is {}, kube-bench read {}",
            actual.unwrap_or_else(|| "none".to_owned()),
            picked.unwrap_or_else(|| "nothing".to_owned())
        ));
    }
    None
}

#[test]
fn differences_with_kube_bench_are_all_explained() {
    let mut checks = load("kube-bench-eks-1.8.0-node.yaml");
    checks.extend(load("kube-bench-cis-1.12-node.yaml"));
    let mut found: BTreeMap<(String, String), (bool, String, Option<String>)> = BTreeMap::new();
    let mut fixtures = layouts::all();
    // Show the two file-mode blind spots: a symlinked CA (EKS AL2), a weak directory (kubeadm).
    for fixture in &mut fixtures {
        if fixture.name == "eks-al2" {
            let ca = std::fs::read(fixture.node.path("/etc/kubernetes/pki/ca.crt")).expect("ca");
            fixture
                .node
                .file("/etc/kubernetes/pki/ca-2030.crt", 0o644, ca)
                .symlink(
                    "/etc/kubernetes/pki/ca.crt",
                    "/etc/kubernetes/pki/ca-2030.crt",
                );
        }
        if fixture.name == "kubeadm" {
            fixture.node.chmod("/etc/kubernetes", 0o777);
        }
    }
    for fixture in &fixtures {
        let report = fixture.scan();
        let bench = Bench::new(fixture);
        for (item, check) in &checks {
            // kube-proxy items need a live kube-proxy; offline nodeward does not judge them.
            if item.starts_with("cis-1.12:4.1.3")
                || item.starts_with("cis-1.12:4.1.4")
                || item == "cis-1.12:4.3.1"
            {
                continue;
            }
            let Some(kube_bench) = bench.verdict(check) else {
                continue;
            };
            let ours: Vec<_> = report
                .0
                .checks
                .iter()
                .filter(|c| c.benchmarks.contains(item))
                .collect();
            assert!(!ours.is_empty(), "no nodeward check for {item}");
            let nodeward = ours.iter().all(|c| c.status == Status::Pass);
            if nodeward != kube_bench {
                let why = ours
                    .iter()
                    .map(|c| format!("{} {:?}: {}", c.id, c.status, c.observed))
                    .collect::<Vec<_>>()
                    .join("; ");
                let reason = reason(fixture, &bench, item, &ours);
                found.insert(
                    (fixture.name.to_owned(), item.clone()),
                    (kube_bench, why, reason),
                );
            }
        }
    }
    println!("nodeward vs kube-bench, {} difference(s):", found.len());
    for ((layout, item), (kube_bench, ours, reason)) in &found {
        println!(
            "- {layout} {item}: kube-bench {}, nodeward {ours}\n    why nodeward is right: {}",
            if *kube_bench { "PASS" } else { "FAIL" },
            reason.as_deref().unwrap_or("UNEXPLAINED")
        );
    }
    let unexplained: Vec<_> = found
        .iter()
        .filter(|(_, (_, _, reason))| reason.is_none())
        .map(|((l, i), _)| format!("{l} {i}"))
        .collect();
    assert!(
        unexplained.is_empty(),
        "differences without a reason: {unexplained:?}"
    );
    for key in [
        ("eks-al2023", "cis-eks-1.8.0:3.2.1"),
        ("flags-only", "cis-1.12:4.2.4"),
        ("eks-al2", "cis-1.12:4.1.7"),
        ("kubeadm", "cis-1.12:4.1.5"),
    ] {
        assert!(
            found.contains_key(&(key.0.to_owned(), key.1.to_owned())),
            "expected a difference on {key:?}"
        );
    }
}
