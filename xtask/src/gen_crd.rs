//! `cargo xtask gen-crd`: writes the `NodeHardeningPolicy` CRD from its Rust types.

use std::path::Path;

use anyhow::Context as _;

pub fn run() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("xtask sits in the workspace")?;
    let path = root.join(nodeward_crd::CRD_PATH);
    let yaml = nodeward_crd::crd_yaml()?;
    if std::fs::read_to_string(&path).is_ok_and(|old| old == yaml) {
        println!("{}: up to date", path.display());
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&path, yaml).with_context(|| format!("writing {}", path.display()))?;
    println!("{}: written", path.display());
    Ok(())
}
