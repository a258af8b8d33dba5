//! The collector reads its certificate files again when they change on disk, with a real
//! process: after a renewal under a new CA, clients of the new CA get in and those of the
//! old one no longer do; a broken renewal is logged and the working configuration kept.

use std::{fs, path::Path, time::Duration};

use nodeward_proto::v1::{ListNodesRequest, soc_service_client::SocServiceClient};
use nodeward_testkit::{
    certs::{CertsOptions, write_certs},
    stack::CollectorProcess,
    wait_until,
};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

/// The collector polls its files every 2 s; a wide margin over that.
const RELOAD_DEADLINE: Duration = Duration::from_secs(20);

/// A CA of its own in `dir`, and the collector's, a node's and a SOC certificate from it.
fn issue(dir: &Path) {
    let options = CertsOptions {
        nodes: vec!["node-a".into()],
        ..CertsOptions::default()
    };
    write_certs(dir, &options).expect("issuing test certificates");
}

/// Installs the collector's files from `from` into `live` as a Secret update does:
/// each file replaced whole by a rename, one after the other.
fn install(from: &Path, live: &Path) {
    for name in ["collector.key", "collector.crt", "ca.crt"] {
        let temp = live.join(format!(".{name}.new"));
        fs::copy(from.join(name), &temp).unwrap();
        fs::rename(&temp, live.join(name)).unwrap();
    }
}

/// Whether a SOC client of `certs`'s CA, trusting that CA, can list the nodes.
fn soc_gets_in(runtime: &tokio::runtime::Runtime, endpoint: &str, certs: &Path) -> bool {
    let pem = |name: &str| fs::read(certs.join(name)).unwrap();
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(pem("ca.crt")))
        .identity(Identity::from_pem(pem("soc.crt"), pem("soc.key")));
    runtime.block_on(async {
        let Ok(channel) = Endpoint::from_shared(endpoint.to_owned())
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
        else {
            return false;
        };
        let mut client = SocServiceClient::new(channel);
        let call = client.list_nodes(ListNodesRequest {});
        matches!(
            tokio::time::timeout(Duration::from_secs(5), call).await,
            Ok(Ok(_))
        )
    })
}

#[test]
fn renewed_certificates_are_used_without_a_restart_and_broken_ones_are_not() {
    let scratch = tempfile::tempdir().unwrap();
    let (old, new, live) = (
        scratch.path().join("old"),
        scratch.path().join("new"),
        scratch.path().join("live"),
    );
    issue(&old);
    issue(&new);
    fs::create_dir_all(&live).unwrap();
    install(&old, &live);
    let collector_dir = scratch.path().join("collector");
    fs::create_dir_all(&collector_dir).unwrap();
    let mut collector = CollectorProcess::start_tls(&collector_dir, &live);
    let endpoint = collector.endpoint();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    assert!(soc_gets_in(&runtime, &endpoint, &old), "before the renewal");
    assert!(
        !soc_gets_in(&runtime, &endpoint, &new),
        "the new CA is not trusted yet"
    );

    // Renewed under a new CA: no restart, new connections use it.
    install(&new, &live);
    wait_until(RELOAD_DEADLINE, "a client of the new CA let in", || {
        soc_gets_in(&runtime, &endpoint, &new).then_some(())
    });
    assert!(
        !soc_gets_in(&runtime, &endpoint, &old),
        "a client of the replaced CA still gets in"
    );
    let daemon = collector.daemon();
    assert!(
        daemon.log().contains("TLS certificate files changed"),
        "the reload is logged:\n{}",
        daemon.log()
    );

    // A renewal that went wrong: the key is not a key. The collector says so and keeps
    // serving with what it had.
    fs::write(live.join("collector.key"), "not a key\n").unwrap();
    wait_until(RELOAD_DEADLINE, "the broken key refused in the log", || {
        daemon
            .log()
            .contains("keeping the previous configuration")
            .then_some(())
    });
    assert!(
        daemon.log().contains("collector.key"),
        "the log names the file:\n{}",
        daemon.log()
    );
    assert!(
        soc_gets_in(&runtime, &endpoint, &new),
        "after a broken renewal"
    );
    assert!(daemon.is_running(), "{}", daemon.log());
    drop(collector);
}
