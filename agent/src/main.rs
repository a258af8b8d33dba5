//! nodeward-agent: hardens the Kubernetes node it runs on.
//!
//! `run` reads the config, attaches IMDS enforcement to the pod cgroup, turns what the
//! kernel reports into findings, keeps them in an on-disk outbox and streams them to the
//! collector, until SIGTERM or SIGINT.

mod backoff;
mod bpf;
mod btf;
mod caps;
mod cgroup;
mod clock;
mod config;
mod config_watch;
mod detect;
mod egress;
mod enroll;
mod event;
mod exec;
mod file_watch;
mod findings;
mod identity;
mod imds;
mod kube;
mod metrics;
mod module;
mod netlink;
mod netns;
mod outbox;
mod pipeline;
mod pods;
mod policy;
mod posture;
mod process_table;
mod procinfo;
mod repeats;
mod rules;
mod stream;
mod supervisor;
mod uninstall;

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, sync::Arc, time::Duration};

use anyhow::{Context as _, anyhow};
use clap::{Parser, Subcommand};
use nodeward_runtime::{EXIT_BAD_CONFIG, LogArgs, config::load};
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

use crate::{
    config::{Config, PodSource},
    detect::Detector,
    egress::EgressSensor,
    exec::ExecSensor,
    identity::CgroupIndex,
    imds::ImdsEnforcer,
    metrics::Metrics,
    module::{Module, ModuleContext},
    outbox::Outbox,
    pods::PodSnapshot,
    supervisor::Supervisor,
};

/// How long tasks get to finish after SIGTERM (the DaemonSet's grace period is longer).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Events queued between the kernel readers and the finding pipeline.
const EVENT_QUEUE: usize = 4096;

#[derive(Parser)]
#[command(name = "nodeward-agent", version, about = "nodeward node agent")]
struct Cli {
    #[command(flatten)]
    log: LogArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Enforce and report until SIGTERM.
    Run {
        /// Agent configuration (YAML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Check a configuration file and say what it sets, without running anything.
    Validate {
        /// Agent configuration (YAML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Check the kubelet's effective configuration and node files against CIS
    /// Kubernetes and CIS EKS, once; exit 0 when nothing fails, 1 when a check fails or
    /// could not be judged, 2 when the scan could not run.
    Check(nodeward_posture::cli::CheckArgs),
    /// Detach everything nodeward attached on this node and remove its pins (enforcement
    /// stays in place across agent restarts until this runs).
    Uninstall {
        /// Agent configuration (YAML); its `bpfPinPath` says what to remove.
        #[arg(long, short)]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (path, command) = match &cli.command {
        Command::Run { config } | Command::Validate { config } | Command::Uninstall { config } => {
            (config, &cli.command)
        }
        Command::Check(args) => {
            let code = nodeward_posture::cli::run_check(
                args,
                &mut std::io::stdout().lock(),
                &mut std::io::stderr().lock(),
            );
            return ExitCode::from(code);
        }
    };
    let config = match load::<Config>(path) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("nodeward-agent: {err}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    match command {
        Command::Check(_) => unreachable!("handled before the config is read"),
        Command::Validate { .. } => {
            println!("{}: valid; {}", path.display(), config.summary());
            ExitCode::SUCCESS
        }
        Command::Uninstall { .. } => uninstall::run(&config.bpf_pin_path),
        Command::Run { .. } => {
            nodeward_runtime::init_logging(cli.log.log_format);
            let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
            match runtime.block_on(run(config, path.clone())) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    error!(error = format!("{err:#}"), "nodeward-agent stopped");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Starts every module, or fails naming the first that cannot run.
fn start_modules(
    modules: &mut [Box<dyn Module>],
    ctx: ModuleContext,
    ebpf: &mut aya::Ebpf,
) -> anyhow::Result<()> {
    for module in modules {
        module
            .can_run()
            .map_err(|why| anyhow!("module {} cannot run: {why}", module.name()))?;
        module
            .start(&ctx, ebpf)
            .with_context(|| format!("starting module {}", module.name()))?;
    }
    // Only the modules' own tasks may hold senders now, so the pipeline ends (after
    // draining) once they stop.
    drop(ctx);
    Ok(())
}

async fn run(config: Config, config_path: PathBuf) -> anyhow::Result<()> {
    let mut signals =
        nodeward_runtime::ShutdownSignals::install().context("installing signal handlers")?;
    let node_name = config
        .resolved_node_name()
        .context("nodeName is not set in the config and NODE_NAME is empty")?;
    info!(
        node = node_name,
        version = env!("CARGO_PKG_VERSION"),
        "nodeward agent starting"
    );
    let link = collector_link(&config)?;
    let cgroup_root = match &config.cgroup_root {
        Some(root) => root.clone(),
        None => cgroup::find_cgroup2_mount()?,
    };
    let pod_cgroup = cgroup::resolve_pod_cgroup(&cgroup_root, config.pod_cgroup_path.as_deref())?;
    let outbox = Outbox::open(
        &config.collector.spool_dir,
        config.collector.spool_max_bytes,
    )?;
    info!(spool = %config.collector.spool_dir.display(), pending = outbox.pending()?, stream_id = outbox.stream_id(), "outbox open");
    let supervisor = Supervisor::new();
    let token = supervisor.token().clone();
    let metrics = Arc::new(Metrics::default());
    spawn_enrollment(&config, &node_name, &link, &metrics, &supervisor);
    let ready = serve_http(
        config.http_listen,
        metrics.registry(outbox.clone()),
        &supervisor,
    )
    .await?;

    let (pods, _no_pod_source, pod_source) = pod_metadata(&config, &node_name, &supervisor).await;
    let repeat_window = Duration::from_secs(u64::from(config.imds.repeat_window_seconds));
    let rules = rules::RuleSet::build(&config.rules).map_err(anyhow::Error::msg)?;
    let sensors = config.sensors.clone();
    let cluster = config.cluster_name.clone().unwrap_or_default();
    // One object for every module, so each map exists once; IMDS maps are adopted from
    // the pins if an earlier agent left them.
    let pins = bpf::Pins::open(&config.bpf_pin_path)?;
    let mut ebpf = bpf::load_object(&pins)?;
    let (config, config_task) = config_watch::watch(config_path, config, token.clone());
    supervisor.spawn("config-file", config_task);
    // From here on: the file's configuration with the policies selecting this node.
    let policy::Effective { config, generation } =
        policy::start(config, &node_name, &supervisor).await?;
    spawn_posture(&config, generation, &outbox, &metrics, &supervisor);

    let (events, events_rx) = mpsc::channel(EVENT_QUEUE);
    let ctx = ModuleContext {
        supervisor: supervisor.clone(),
        events,
        pins,
        metrics: metrics.clone(),
    };
    let mut modules = modules(&sensors, &cgroup_root, &pod_cgroup, &config, &pods);
    start_modules(&mut modules, ctx, &mut ebpf)?;
    // IMDS enforcement is attached: ordinary pods may now be scheduled here.
    kube::spawn_startup_taint_removal(&config.borrow(), &node_name, &supervisor);

    let detector = Detector::new(
        rules,
        CgroupIndex::new(cgroup_root, pod_cgroup),
        pods.clone(),
        pod_source,
        repeat_window,
    );
    let inputs = pipeline::Inputs {
        config,
        pods,
        metrics: metrics.clone(),
    };
    supervisor.spawn(
        "pipeline",
        pipeline::run(events_rx, detector, outbox.clone(), inputs),
    );
    let identity = stream::Identity {
        node_name,
        cluster,
        boot_id: boot_id(),
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    supervisor.spawn(
        "collector-stream",
        stream::run(link, identity, outbox, metrics, token.clone()),
    );

    let running: Vec<&str> = modules.iter().map(|m| m.name()).collect();
    info!(modules = ?running, "nodeward agent running");
    ready.send_replace(true);
    tokio::select! {
        signal = signals.recv() => info!(signal, "shutting down"),
        () = token.cancelled() => {}
    }
    for module in modules.iter_mut().rev() {
        module.stop();
    }
    // Unloads the sensors' programs; pinned enforcement stays.
    drop(ebpf);
    supervisor.shutdown(SHUTDOWN_GRACE).await
}

/// Pod metadata from the configured source. Without one (or when the Kubernetes API
/// configuration cannot be loaded) the snapshot stays empty and findings say their pod's
/// identity is pending; the sender is returned so the channel stays open. The flag says
/// whether a source runs.
async fn pod_metadata(
    config: &Config,
    node_name: &str,
    supervisor: &Supervisor,
) -> (
    watch::Receiver<PodSnapshot>,
    Option<watch::Sender<PodSnapshot>>,
    bool,
) {
    let token = supervisor.token().clone();
    match (config.pods.source(), &config.pods.file) {
        (PodSource::File, Some(file)) => {
            let (rx, task) = pods::watch_file(file.clone(), token);
            supervisor.spawn("pods-file", task);
            return (rx, None, true);
        }
        (PodSource::Kubernetes, _) => match kube::in_cluster_client().await {
            Ok(client) => {
                info!(node = node_name, "pod metadata from the Kubernetes API");
                let (rx, task) = kube::watch_pods(client, node_name, token);
                supervisor.spawn("pods-kubernetes", task);
                return (rx, None, true);
            }
            Err(err) => warn!(
                error = format!("{err:#}"),
                "no pod metadata: findings will carry pod UIDs only (set pods.file, or run in a cluster)"
            ),
        },
        _ => {}
    }
    if !config.imds.allow.is_empty() {
        warn!("imds.allow is set but there is no pod metadata source; no pod is allowed");
    }
    let (tx, rx) = watch::channel(PodSnapshot::default());
    (rx, Some(tx), false)
}

/// The collector's endpoint and TLS files. Unreadable certificate files are logged, not
/// fatal: enforcement must not wait for the collector link (findings wait in the outbox,
/// and the files are read again at every connect, e.g. once provisioning writes them).
fn collector_link(config: &Config) -> anyhow::Result<stream::Link> {
    let tls = config.collector.tls_files().map_err(anyhow::Error::msg)?;
    if let Some(files) = &tls {
        if let Err(err) = files.read() {
            warn!(
                error = format!("{:#}", anyhow::Error::new(err)),
                "collector TLS files are not usable yet: enforcing anyway; findings wait in the outbox"
            );
        }
    } else {
        warn!(
            endpoint = config.collector.endpoint,
            "collector TLS is disabled: findings travel in plaintext (tests and demos only)"
        );
    }
    Ok(stream::Link {
        endpoint: config.collector.endpoint.clone(),
        tls,
        certificates_changed: Arc::default(),
    })
}

/// Keeps this node's certificate issued by the collector, when `collector.enrollment` is
/// on (validation made sure the TLS files are configured then).
fn spawn_enrollment(
    config: &Config,
    node_name: &str,
    link: &stream::Link,
    metrics: &Arc<Metrics>,
    supervisor: &Supervisor,
) {
    let (Some(enrollment), Ok(Some(files))) = (
        config.collector.enrollment.as_ref(),
        config.collector.tls_files(),
    ) else {
        return;
    };
    info!(
        token_file = %enrollment.token_file.display(),
        cert = %files.cert_file.display(),
        "enrollment on: this node's certificate comes from the collector"
    );
    let enrollment = enroll::Enrollment {
        endpoint: config.collector.endpoint.clone(),
        ca_file: files.ca_file,
        cert_file: files.cert_file,
        key_file: files.key_file,
        token_file: enrollment.token_file.clone(),
        node_name: node_name.to_owned(),
        installed: link.certificates_changed.clone(),
    };
    supervisor.spawn(
        "enrollment",
        enroll::run(enrollment, metrics.clone(), supervisor.token().clone()),
    );
}

/// The modules the config asks for: IMDS enforcement always, then the sensors.
fn modules(
    sensors: &config::SensorsConfig,
    cgroup_root: &std::path::Path,
    pod_cgroup: &std::path::Path,
    config: &watch::Receiver<Arc<Config>>,
    pods: &watch::Receiver<PodSnapshot>,
) -> Vec<Box<dyn Module>> {
    let mut modules: Vec<Box<dyn Module>> = vec![Box::new(ImdsEnforcer::new(
        cgroup_root.to_owned(),
        pod_cgroup.to_owned(),
        config.clone(),
        pods.clone(),
    ))];
    if sensors.egress {
        let host_cgroup = sensors
            .host_processes
            .then(|| cgroup_root.join(&sensors.host_cgroup_path));
        modules.push(Box::new(EgressSensor::new(
            cgroup_root.to_owned(),
            pod_cgroup.to_owned(),
            host_cgroup,
        )));
    }
    if sensors.exec {
        modules.push(Box::new(ExecSensor::new(
            cgroup_root.to_owned(),
            pod_cgroup.to_owned(),
            sensors.host_processes,
        )));
    }
    modules
}

/// Continuous posture: snapshots (with the IMDS mode in force) and regressions go to the
/// outbox.
fn spawn_posture(
    config: &watch::Receiver<Arc<Config>>,
    policy_generation: watch::Receiver<Option<String>>,
    outbox: &Outbox,
    metrics: &Arc<Metrics>,
    supervisor: &Supervisor,
) {
    let current = config.borrow().clone();
    let mut posture_config = current.posture.clone();
    posture_config.host_root.clone_from(&current.host_root);
    let token = supervisor.token().clone();
    let (snapshots, task) = posture::watch_posture(
        &posture_config,
        config.clone(),
        |c: &Arc<Config>| format!("{:?}", c.imds.mode).to_lowercase(),
        token.clone(),
    );
    supervisor.spawn("posture", task);
    let (snapshots, task) =
        policy::posture::with_policy_generation(snapshots, policy_generation, token.clone());
    supervisor.spawn("posture-policy", task);
    supervisor.spawn(
        "posture-outbox",
        posture::forward::to_outbox(snapshots, outbox.clone(), metrics.clone(), token),
    );
}

/// Serves `/metrics`, `/healthz` and `/readyz`; `/readyz` answers 200 once the returned
/// flag is set (every module running).
async fn serve_http(
    addr: SocketAddr,
    registry: prometheus_client::registry::Registry,
    supervisor: &Supervisor,
) -> anyhow::Result<watch::Sender<bool>> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr} (httpListen)"))?;
    let bound = listener.local_addr().context("reading the HTTP address")?;
    info!(addr = %bound, "metrics listening");
    let (ready, ready_rx) = watch::channel(false);
    let token = supervisor.token().clone();
    supervisor.spawn("http", async move {
        nodeward_runtime::http::serve(listener, Arc::new(registry), ready_rx, token)
            .await
            .map_err(anyhow::Error::new)
    });
    Ok(ready)
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}
