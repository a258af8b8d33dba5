//! `cargo xtask <chore>`: nodeward's chores. Builds themselves are plain cargo (the eBPF
//! object is built by agent/build.rs); this only prepares machines, runs the demo and runs
//! every check the way CI does.

mod bench;
mod certs;
mod cmd;
mod demo;
mod gen_crd;
mod interrupt;
mod setup;
mod test;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "nodeward chores")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install what building the eBPF programs needs (nightly rust-src, bpf-linker);
    /// a quick no-op when everything is present.
    Setup,
    /// Setup, then formatting, clippy, build and every test, as CI runs them.
    Test,
    /// Setup and build, then show nodeward blocking IMDS on a simulated node (needs root).
    Demo,
    /// Measure what nodeward costs the workloads it watches (needs root).
    Bench {
        #[arg(value_enum)]
        what: bench::Bench,
        /// Top-level YAML appended to the agent's config in `connect` and `exec`, to
        /// compare settings (e.g. `sensors: {egress: false}`).
        #[arg(long, value_name = "YAML")]
        agent_yaml: Option<String>,
        /// Runs of each workload per side in `connect` and `exec` (5 when not given); more
        /// runs narrow the median when the machine is noisy.
        #[arg(long, value_name = "N")]
        repetitions: Option<std::num::NonZeroUsize>,
        /// Also measure this monitor in the same run, alternating with nodeward and the
        /// baseline (`connect` and `exec`).
        #[arg(long, value_enum, value_name = "MONITOR")]
        against: Option<bench::Reference>,
        /// Options of `bench collector`.
        #[command(flatten)]
        collector: bench::CollectorArgs,
    },
    /// Write a development CA and the collector, node and SOC certificates into DIR.
    Certs(certs::CertsArgs),
    /// Write the `NodeHardeningPolicy` CRD (deploy/crd/) from its Rust types.
    GenCrd,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Setup => setup::run(),
        Command::Test => test::run(),
        Command::Demo => demo::run(),
        Command::Bench {
            what,
            agent_yaml,
            repetitions,
            against,
            collector,
        } => bench::run(
            what,
            &bench::Options {
                agent_yaml: agent_yaml.as_deref(),
                repetitions: repetitions.map(std::num::NonZeroUsize::get),
                against,
            },
            &collector,
        ),
        Command::Certs(args) => certs::run(args),
        Command::GenCrd => gen_crd::run(),
    }
}
