//! `cargo xtask certs DIR`: the command line of `nodeward_testkit::certs`.

use std::path::PathBuf;

use nodeward_testkit::certs::{CertsOptions, write_certs};

#[derive(Debug, clap::Args)]
pub struct CertsArgs {
    /// Directory the certificates and keys go into (created if missing).
    pub dir: PathBuf,
    /// Extra DNS name or IP for the collector's server certificate (repeatable); the
    /// loopback name and addresses are always in it.
    #[arg(long = "collector-name", value_name = "NAME")]
    pub collector_names: Vec<String>,
    /// Node to issue a client certificate for, written as NAME.crt (repeatable).
    #[arg(long = "node", value_name = "NAME", default_values_t = CertsOptions::default().nodes)]
    pub nodes: Vec<String>,
    /// Analyst the SOC client certificate (soc.crt) is issued to.
    #[arg(long, value_name = "NAME", default_value_t = CertsOptions::default().soc)]
    pub soc: String,
    /// Replace an existing CA, and so re-issue every certificate.
    #[arg(long)]
    pub force: bool,
}

fn options(args: CertsArgs) -> CertsOptions {
    CertsOptions {
        collector_names: args.collector_names,
        nodes: args.nodes,
        soc: args.soc,
        force: args.force,
    }
}

pub fn run(args: CertsArgs) -> anyhow::Result<()> {
    let dir = args.dir.clone();
    let written = write_certs(&dir, &options(args))?;
    if written.is_empty() {
        eprintln!("certs: everything in {} is already there", dir.display());
    }
    for path in written {
        println!("{}", path.display());
    }
    Ok(())
}
