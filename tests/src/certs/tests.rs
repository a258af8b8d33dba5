use std::os::unix::fs::PermissionsExt as _;

use x509_parser::{
    certificate::X509Certificate,
    extensions::GeneralName,
    pem::{Pem, parse_x509_pem},
};

use super::*;

fn pem(path: &Path) -> Pem {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    parse_x509_pem(&bytes).expect("a PEM block").1
}

fn check_node(dir: &Path, name: &str) {
    let (ca_pem, node_pem) = (
        pem(&dir.join("ca.crt")),
        pem(&dir.join(format!("{name}.crt"))),
    );
    let ca = ca_pem.parse_x509().unwrap();
    let node: X509Certificate<'_> = node_pem.parse_x509().unwrap();
    let cn: Vec<_> = node
        .subject()
        .iter_common_name()
        .map(|a| a.as_str().unwrap())
        .collect();
    let org: Vec<_> = node
        .subject()
        .iter_organization()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(cn, [format!("system:node:{name}")]);
    assert_eq!(org, ["system:nodes"]);
    let san = node.subject_alternative_name().unwrap().expect("a SAN");
    let expected = format!("spiffe://nodeward/node/{name}");
    assert_eq!(san.value.general_names, [GeneralName::URI(&expected)]);
    let eku = node
        .extended_key_usage()
        .unwrap()
        .expect("extended key usage");
    assert!(eku.value.client_auth && !eku.value.server_auth);
    assert_eq!(node.issuer(), ca.subject());
    node.verify_signature(Some(ca.public_key()))
        .unwrap_or_else(|e| panic!("{name}.crt is not signed by ca.crt: {e}"));
    assert!(ca.is_ca() && !node.is_ca());
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn issues_a_ca_collector_nodes_and_soc() {
    let dir = tempfile::tempdir().unwrap();
    let opts = CertsOptions {
        collector_names: vec!["collector.nodeward.svc".into(), "10.0.0.7".into()],
        ..CertsOptions::default()
    };
    let written = write_certs(dir.path(), &opts).unwrap();
    let mut names: Vec<_> = written
        .iter()
        .map(|p| p.file_name().unwrap().to_str().unwrap().to_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "ca.crt",
            "ca.key",
            "collector.crt",
            "collector.key",
            "node-a.crt",
            "node-a.key",
            "node-b.crt",
            "node-b.key",
            "soc.crt",
            "soc.key"
        ]
    );
    for path in &written {
        let expected = if path.extension().unwrap() == "key" {
            0o600
        } else {
            0o644
        };
        assert_eq!(mode(path), expected, "{}", path.display());
    }
    check_node(dir.path(), "node-a");
    check_node(dir.path(), "node-b");

    let collector_pem = pem(&dir.path().join("collector.crt"));
    let collector = collector_pem.parse_x509().unwrap();
    let sans = &collector
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names;
    for name in ["localhost", "collector.nodeward.svc"] {
        assert!(
            sans.contains(&GeneralName::DNSName(name)),
            "{name}: {sans:?}"
        );
    }
    for ip in [
        [127, 0, 0, 1].as_slice(),
        &[0; 15].iter().copied().chain([1]).collect::<Vec<u8>>(),
        &[10, 0, 0, 7],
    ] {
        assert!(
            sans.contains(&GeneralName::IPAddress(ip)),
            "{ip:?}: {sans:?}"
        );
    }
    assert!(
        collector
            .extended_key_usage()
            .unwrap()
            .unwrap()
            .value
            .server_auth
    );

    let soc_pem = pem(&dir.path().join("soc.crt"));
    let soc = soc_pem.parse_x509().unwrap();
    let cn: Vec<_> = soc
        .subject()
        .iter_common_name()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(cn, ["soc:analyst"]);
    let san = soc.subject_alternative_name().unwrap().unwrap();
    assert_eq!(
        san.value.general_names,
        [GeneralName::URI("spiffe://nodeward/soc/analyst")]
    );
}

#[test]
fn rerunning_adds_a_node_and_keeps_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    write_certs(dir.path(), &CertsOptions::default()).unwrap();
    let read = |name: &str| fs::read(dir.path().join(name)).unwrap();
    let (ca, node_a) = (read("ca.crt"), read("node-a.crt"));

    assert!(
        write_certs(dir.path(), &CertsOptions::default())
            .unwrap()
            .is_empty(),
        "nothing is missing"
    );
    let more = CertsOptions {
        nodes: vec!["node-a".into(), "node-c".into()],
        ..CertsOptions::default()
    };
    let written = write_certs(dir.path(), &more).unwrap();
    assert_eq!(
        written,
        [dir.path().join("node-c.crt"), dir.path().join("node-c.key")]
    );
    assert_eq!(read("ca.crt"), ca, "the CA is unchanged");
    assert_eq!(read("node-a.crt"), node_a, "existing certificates are kept");
    check_node(dir.path(), "node-c");
    check_node(dir.path(), "node-a");

    let forced = write_certs(
        dir.path(),
        &CertsOptions {
            force: true,
            ..more
        },
    )
    .unwrap();
    assert_ne!(read("ca.crt"), ca, "--force replaces the CA");
    assert!(
        forced.contains(&dir.path().join("node-a.crt")),
        "and re-issues everything: {forced:?}"
    );
    check_node(dir.path(), "node-a");
}

#[test]
fn half_a_ca_and_bad_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("ca.crt"), "not a certificate").unwrap();
    let err = write_certs(dir.path(), &CertsOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("half of the CA"), "{err}");
    for node in ["../etc", "Node-A", "ca", ""] {
        let opts = CertsOptions {
            nodes: vec![node.into()],
            ..CertsOptions::default()
        };
        let err = write_certs(dir.path(), &opts).unwrap_err().to_string();
        assert!(err.contains("--node"), "{node:?}: {err}");
    }
}
