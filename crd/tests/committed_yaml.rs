//! The CRD under deploy/ is what the types generate.

use std::path::Path;

#[test]
fn the_committed_crd_matches_the_types() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(nodeward_crd::CRD_PATH);
    let generated = nodeward_crd::crd_yaml().expect("the CRD renders");
    let committed = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("{}: {err}; run `cargo xtask gen-crd`", path.display()));
    assert!(
        committed == generated,
        "{} differs from what crd/src/types.rs generates; run `cargo xtask gen-crd` and commit the result",
        path.display()
    );
}

#[test]
fn rendering_is_deterministic() {
    assert_eq!(
        nodeward_crd::crd_yaml().unwrap(),
        nodeward_crd::crd_yaml().unwrap()
    );
}

#[test]
fn the_crd_parses_as_a_k8s_openapi_crd() {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let yaml = nodeward_crd::crd_yaml().unwrap();
    let crd: CustomResourceDefinition = serde_saphyr::from_str(&yaml).expect("a CRD");
    assert_eq!(crd.spec.scope, "Cluster");
    assert_eq!(
        crd.metadata.name.as_deref(),
        Some("nodehardeningpolicies.nodeward.io")
    );
    let version = &crd.spec.versions[0];
    assert_eq!(version.name, "v1alpha1");
    assert!(
        version
            .subresources
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .is_some()
    );
}
