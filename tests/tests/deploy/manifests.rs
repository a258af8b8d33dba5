//! Reading deploy/: manifest files, kustomizations and the patches they apply, strict
//! parsing into the `k8s-openapi` types, and rendering overlays with kustomize.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
};

use k8s_openapi::api::{
    admissionregistration::v1::{ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding},
    apps::v1::{DaemonSet, Deployment},
    core::v1::{
        ConfigMap, Namespace, PersistentVolumeClaim, ResourceQuota, Service, ServiceAccount,
    },
    networking::v1::NetworkPolicy,
    rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding},
};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

/// The namespaces nodeward's namespaced objects may live in.
pub const NAMESPACES: [&str; 2] = ["nodeward", "nodeward-uninstall"];
/// Written by `cargo xtask gen-crd`; until it is there, overlays cannot be rendered.
pub const CRD_FILE: &str = "crd/nodehardeningpolicy.yaml";

/// deploy/, or a copy of it named by `NODEWARD_DEPLOY_DIR` (to try a change out).
pub fn deploy_dir() -> PathBuf {
    std::env::var_os("NODEWARD_DEPLOY_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy"),
        PathBuf::from,
    )
}

/// One YAML document and where it came from.
pub struct Doc {
    pub source: String,
    pub value: Value,
}

pub fn parse_docs(source: &str, text: &str) -> Vec<Doc> {
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(text).unwrap_or_else(|e| panic!("{source}: {e}"));
    docs.into_iter()
        .filter(|d| !d.is_null())
        .map(|value| Doc {
            source: source.to_owned(),
            value,
        })
        .collect()
}

/// Every `kustomization.yaml` under deploy/, as (its directory, its contents).
pub fn kustomizations() -> Vec<(PathBuf, Value)> {
    let mut found = Vec::new();
    walk(&deploy_dir(), &mut |path| {
        if path.file_name().is_some_and(|n| n == "kustomization.yaml") {
            let text = std::fs::read_to_string(path).unwrap();
            let value: Value =
                serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            found.push((path.parent().unwrap().to_owned(), value));
        }
    });
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

/// The files kustomizations apply as patches (partial objects, checked once rendered).
pub fn patch_files() -> BTreeSet<PathBuf> {
    kustomizations()
        .into_iter()
        .flat_map(|(dir, k)| {
            k["patches"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(move |p| p["path"].as_str().map(|f| dir.join(f)))
        })
        .collect()
}

/// Every document of every manifest file under deploy/ that is a whole object (not a
/// kustomization, not a patch), with its path relative to deploy/.
pub fn manifest_docs() -> Vec<Doc> {
    let patches = patch_files();
    let mut files = Vec::new();
    walk(&deploy_dir(), &mut |path| {
        let yaml = path.extension().is_some_and(|e| e == "yaml");
        if yaml && !path.ends_with("kustomization.yaml") && !patches.contains(path) {
            files.push(path.to_owned());
        }
    });
    files.sort();
    assert!(!files.is_empty(), "no manifests in deploy/");
    files
        .iter()
        .flat_map(|path| {
            let text = std::fs::read_to_string(path).expect("read manifest");
            parse_docs(&relative(path), &text)
        })
        .collect()
}

pub fn relative(path: &Path) -> String {
    let deploy = deploy_dir();
    path.strip_prefix(&deploy)
        .unwrap_or(path)
        .display()
        .to_string()
}

fn walk(dir: &Path, visit: &mut dyn FnMut(&Path)) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk(&path, visit);
        } else {
            visit(&path);
        }
    }
}

/// Parses `doc` as `T` and checks nothing was lost on the way back.
pub fn round_trip<T: DeserializeOwned + Serialize>(doc: &Doc) -> T {
    let typed: T = serde_json::from_value(doc.value.clone())
        .unwrap_or_else(|e| panic!("{}: {e}\n{:#}", doc.source, doc.value));
    let back = serde_json::to_value(&typed).unwrap();
    assert_eq!(
        back, doc.value,
        "{}: fields the API does not know (misspelled?) would be dropped",
        doc.source
    );
    typed
}

/// Checks a document as the API server would: built-in kinds strictly as their typed
/// object, custom resources (cert-manager, the CRD itself) as objects with an apiVersion,
/// a kind and a name.
pub fn check_object(doc: &Doc) {
    let v = &doc.value;
    let kind = v["kind"]
        .as_str()
        .unwrap_or_else(|| panic!("{}: a document without kind", doc.source));
    match kind {
        "Namespace" => drop(round_trip::<Namespace>(doc)),
        "ResourceQuota" => drop(round_trip::<ResourceQuota>(doc)),
        "ServiceAccount" => drop(round_trip::<ServiceAccount>(doc)),
        "ConfigMap" => drop(round_trip::<ConfigMap>(doc)),
        "PersistentVolumeClaim" => drop(round_trip::<PersistentVolumeClaim>(doc)),
        "DaemonSet" => drop(round_trip::<DaemonSet>(doc)),
        "Deployment" => drop(round_trip::<Deployment>(doc)),
        "Service" => drop(round_trip::<Service>(doc)),
        "NetworkPolicy" => drop(round_trip::<NetworkPolicy>(doc)),
        "ClusterRole" => drop(round_trip::<ClusterRole>(doc)),
        "ClusterRoleBinding" => drop(round_trip::<ClusterRoleBinding>(doc)),
        "Role" => drop(round_trip::<Role>(doc)),
        "RoleBinding" => drop(round_trip::<RoleBinding>(doc)),
        "ValidatingAdmissionPolicy" => drop(round_trip::<ValidatingAdmissionPolicy>(doc)),
        "ValidatingAdmissionPolicyBinding" => {
            drop(round_trip::<ValidatingAdmissionPolicyBinding>(doc));
        }
        "CustomResourceDefinition" | "Issuer" | "Certificate" => {
            assert!(
                v["apiVersion"].as_str().is_some_and(|a| a.contains('/')),
                "{}: {kind} without a group/version",
                doc.source
            );
            assert!(
                v["metadata"]["name"].is_string(),
                "{}: {kind} without a name",
                doc.source
            );
        }
        other => panic!("{}: kind {other} has no check here; add one", doc.source),
    }
    let cluster_scoped = [
        "Namespace",
        "ClusterRole",
        "ClusterRoleBinding",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "CustomResourceDefinition",
    ];
    if cluster_scoped.contains(&kind) {
        assert!(
            v["metadata"]["namespace"].is_null(),
            "{}: {kind} is cluster-scoped",
            doc.source
        );
    } else {
        let ns = v["metadata"]["namespace"].as_str().unwrap_or_default();
        assert!(
            NAMESPACES.contains(&ns),
            "{}: {kind} in namespace {ns:?}",
            doc.source
        );
    }
}

/// `kubectl kustomize` (or `kustomize build`) when one is installed.
pub fn kustomize_command() -> Option<Command> {
    let runs = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if runs("kubectl", &["kustomize", "--help"]) {
        let mut cmd = Command::new("kubectl");
        cmd.arg("kustomize");
        Some(cmd)
    } else if runs("kustomize", &["version"]) {
        let mut cmd = Command::new("kustomize");
        cmd.arg("build");
        Some(cmd)
    } else {
        None
    }
}

/// The overlay rendered, or why it cannot be here.
pub fn render(dir: &Path) -> Result<Vec<Doc>, String> {
    if !deploy_dir().join(CRD_FILE).is_file() {
        return Err(format!(
            "deploy/{CRD_FILE} is not there yet (cargo xtask gen-crd)"
        ));
    }
    let mut cmd = kustomize_command().ok_or("neither kubectl nor kustomize is installed")?;
    let out = cmd.arg(dir).output().expect("run kustomize");
    assert!(
        out.status.success(),
        "kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    Ok(parse_docs(&format!("{} (rendered)", relative(dir)), &text))
}
