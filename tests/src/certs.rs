//! A private CA and the certificates nodeward's mTLS needs, for tests, the demo and
//! trying nodeward out (`cargo xtask certs DIR`). Not for production, where a real PKI (or
//! cert-manager) issues them.
//!
//! Re-running is safe: an existing CA is reused (never replaced without `--force`) and
//! only missing certificates are issued, so adding `--node node-c` leaves the others alone.

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail, ensure};
use jiff::{Timestamp, ToSpan as _, civil::Date, tz::TimeZone};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// SPIFFE trust domain of the identities in client certificates.
const TRUST_DOMAIN: &str = "nodeward";
/// Leaves are renewed with `--force`; two years keeps a demo setup working a while.
const LEAF_YEARS: i16 = 2;
const CA_YEARS: i16 = 10;
/// File stems the node certificates must not take.
const RESERVED: [&str; 3] = ["ca", "collector", "soc"];

/// What [`write_certs`] issues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertsOptions {
    /// Extra DNS names or IPs for the collector's server certificate.
    pub collector_names: Vec<String>,
    /// Nodes to issue client certificates for (`NAME.crt`).
    pub nodes: Vec<String>,
    /// The analyst the SOC client certificate is issued to.
    pub soc: String,
    /// Replace an existing CA and re-issue everything.
    pub force: bool,
}

impl Default for CertsOptions {
    fn default() -> Self {
        Self {
            collector_names: Vec::new(),
            nodes: vec!["node-a".into(), "node-b".into()],
            soc: "analyst".into(),
            force: false,
        }
    }
}

/// Issues into `dir` what is missing (everything, when the CA is new) and returns the
/// files written. Keys are mode 0600.
///
/// # Errors
///
/// A bad node name, an unreadable or half-present CA, or a file that cannot be written.
pub fn write_certs(dir: &Path, opts: &CertsOptions) -> anyhow::Result<Vec<PathBuf>> {
    for node in &opts.nodes {
        check_name("node", node)?;
        ensure!(
            !RESERVED.contains(&node.as_str()),
            "--node {node}: {node}.crt is taken by another certificate"
        );
    }
    check_name("soc", &opts.soc)?;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = Vec::new();
    let (ca, ca_is_new) = ca(dir, opts.force, &mut written)?;
    let issue = |stem: &str, params: CertificateParams, written: &mut Vec<PathBuf>| {
        let (cert_path, key_path) = pair_paths(dir, stem);
        if ca_is_new || !cert_path.exists() || !key_path.exists() {
            let key_pair = KeyPair::generate().context("generating a key")?;
            let cert = params
                .signed_by(&key_pair, &ca)
                .with_context(|| format!("signing {stem}.crt"))?;
            write_key(&key_path, &key_pair.serialize_pem())?;
            write_cert(&cert_path, &cert.pem())?;
            written.extend([cert_path, key_path]);
        }
        anyhow::Ok(())
    };
    issue(
        "collector",
        collector_params(&opts.collector_names)?,
        &mut written,
    )?;
    for node in &opts.nodes {
        let params = client_params(
            &format!("system:node:{node}"),
            Some("system:nodes"),
            &format!("node/{node}"),
        )?;
        issue(node, params, &mut written)?;
    }
    let soc = &opts.soc;
    issue(
        "soc",
        client_params(&format!("soc:{soc}"), None, &format!("soc/{soc}"))?,
        &mut written,
    )?;
    Ok(written)
}

/// The CA to sign with, and whether it was just created.
fn ca(
    dir: &Path,
    force: bool,
    written: &mut Vec<PathBuf>,
) -> anyhow::Result<(Issuer<'static, KeyPair>, bool)> {
    let (cert_path, key_path) = pair_paths(dir, "ca");
    match (cert_path.exists(), key_path.exists()) {
        (true, true) if !force => {
            let key_pem = fs::read_to_string(&key_path)
                .with_context(|| format!("reading {}", key_path.display()))?;
            let cert_pem = fs::read_to_string(&cert_path)
                .with_context(|| format!("reading {}", cert_path.display()))?;
            let key_pair = KeyPair::from_pem(&key_pem)
                .with_context(|| format!("parsing {}", key_path.display()))?;
            let issuer = Issuer::from_ca_cert_pem(&cert_pem, key_pair)
                .with_context(|| format!("parsing {}", cert_path.display()))?;
            return Ok((issuer, false));
        }
        (true, false) | (false, true) if !force => bail!(
            "{} has only half of the CA (ca.crt and ca.key go together); use --force to replace it",
            dir.display()
        ),
        _ => {}
    }
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, "nodeward development CA");
    params
        .distinguished_name
        .push(DnType::OrganizationName, "nodeward");
    // Path length 0: this CA signs leaves only.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params, CA_YEARS)?;
    let key_pair = KeyPair::generate().context("generating the CA key")?;
    let cert = params
        .self_signed(&key_pair)
        .context("self-signing the CA")?;
    write_key(&key_path, &key_pair.serialize_pem())?;
    write_cert(&cert_path, &cert.pem())?;
    written.extend([cert_path, key_path]);
    Ok((Issuer::new(params, key_pair), true))
}

fn collector_params(extra_names: &[String]) -> anyhow::Result<CertificateParams> {
    let mut names: Vec<String> = ["localhost", "127.0.0.1", "::1"].map(String::from).into();
    names.extend(extra_names.iter().cloned());
    let mut params =
        CertificateParams::new(names).context("--collector-name: not a DNS name or IP address")?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, "nodeward-collector");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf(&mut params)?;
    Ok(params)
}

/// A client certificate whose identity is the SPIFFE ID `spiffe://nodeward/<path>`.
fn client_params(
    common_name: &str,
    organization: Option<&str>,
    path: &str,
) -> anyhow::Result<CertificateParams> {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    if let Some(organization) = organization {
        params
            .distinguished_name
            .push(DnType::OrganizationName, organization);
    }
    let uri = format!("spiffe://{TRUST_DOMAIN}/{path}");
    params.subject_alt_names = vec![SanType::URI(
        uri.clone()
            .try_into()
            .with_context(|| format!("{uri} is not ASCII"))?,
    )];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    leaf(&mut params)?;
    Ok(params)
}

fn leaf(params: &mut CertificateParams) -> anyhow::Result<()> {
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    set_validity(params, LEAF_YEARS)
}

/// From yesterday (clocks differ a little between machines) for `years`.
fn set_validity(params: &mut CertificateParams, years: i16) -> anyhow::Result<()> {
    let today = Timestamp::now().to_zoned(TimeZone::UTC).date();
    let from = today.yesterday().context("computing yesterday")?;
    let until = today
        .checked_add(i64::from(years).years())
        .context("computing the expiry")?;
    let ymd = |d: Date| {
        rcgen::date_time_ymd(
            i32::from(d.year()),
            d.month().unsigned_abs(),
            d.day().unsigned_abs(),
        )
    };
    params.not_before = ymd(from);
    params.not_after = ymd(until);
    Ok(())
}

/// Names become file names and SPIFFE path segments: RFC 1123 labels and dots only.
fn check_name(what: &str, name: &str) -> anyhow::Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !name.starts_with(['-', '.'])
        && !name.ends_with(['-', '.']);
    ensure!(
        valid,
        "--{what} {name:?}: use lower-case letters, digits, '-' and '.' (a Kubernetes node name)"
    );
    Ok(())
}

fn pair_paths(dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{stem}.crt")),
        dir.join(format!("{stem}.key")),
    )
}

fn write_key(path: &Path, pem: &str) -> anyhow::Result<()> {
    write_file(path, pem, 0o600)
}

fn write_cert(path: &Path, pem: &str) -> anyhow::Result<()> {
    write_file(path, pem, 0o644)
}

fn write_file(path: &Path, content: &str, mode: u32) -> anyhow::Result<()> {
    Ok(nodeward_runtime::files::write_atomically(
        path,
        content.as_bytes(),
        mode,
    )?)
}

#[cfg(test)]
mod tests;
