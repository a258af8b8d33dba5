//! Root-only tests: run as root, fail loudly in CI without root, skip loudly elsewhere.

use nix::unistd::geteuid;

/// Says whether a root-only test may run.
///
/// Returns `true` when the effective uid is 0. Otherwise, in CI (env `CI=true`) it panics,
/// because a skipped enforcement test there would look like a passing one; on a developer's
/// machine it prints a loud SKIPPED banner to stderr and returns `false`.
///
/// ```no_run
/// # use nodeward_testkit::require_root;
/// #[test]
/// fn blocks_imds() {
///     if !require_root("blocks_imds") {
///         return;
///     }
///     // ...
/// }
/// ```
#[must_use]
pub fn require_root(test_name: &str) -> bool {
    if geteuid().is_root() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test_name}: root-only test cannot run in CI without root (euid {})",
        geteuid()
    );
    eprintln!(
        "\n\
         ************************************************************\n\
         * SKIPPED {test_name}\n\
         * This test needs root (network namespaces, cgroups, eBPF).\n\
         * Run it as root, e.g. `sudo -E cargo test` or `cargo xtask test`.\n\
         ************************************************************\n"
    );
    false
}
