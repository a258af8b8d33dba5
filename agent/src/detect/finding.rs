//! The finding a rule makes of an exec: the rule, the process and its parent, the pod
//! and container, in words and in fields.

use jiff::Timestamp;
use nodeward_proto::model::{Category, Container, Finding, Pod, Process};

use crate::{
    exec::ExecInfo,
    identity::CgroupIdentity,
    pods::{ContainerMeta, PodMeta},
    rules::Rule,
};

/// What is known around the process.
pub struct Context<'a> {
    pub identity: &'a CgroupIdentity,
    pub meta: Option<&'a PodMeta>,
    pub container: Option<&'a ContainerMeta>,
    pub parent: Option<&'a ExecInfo>,
    pub time: Timestamp,
}

pub fn exec(rule: &Rule, exec: &ExecInfo, ctx: &Context<'_>) -> Finding {
    let pod = pod(ctx.identity, ctx.meta);
    let who = match (&pod, ctx.meta) {
        (Some(_), Some(meta)) => format!("pod {}/{}", meta.namespace, meta.name),
        (Some(pod), None) => format!("pod {}", pod.uid),
        (None, _) => "a node process".to_owned(),
    };
    let container_name = ctx
        .container
        .map(|c| format!(" (container {})", c.name))
        .unwrap_or_default();
    let summary = format!(
        "{}: {} ran `{}` in {who}{container_name}",
        rule.title,
        exec.comm,
        shorten(&exec.args.join(" ")),
    );
    Finding {
        pod,
        container: ctx.identity.container_id.as_ref().map(|id| Container {
            id: id.clone(),
            name: ctx.container.map(|c| c.name.clone()).unwrap_or_default(),
            image: ctx.container.map(|c| c.image.clone()).unwrap_or_default(),
        }),
        process: Some(process(exec)),
        parent: ctx.parent.map(process),
        category: Category::Runtime,
        techniques: rule.techniques.clone(),
        description: rule.description.clone(),
        first_seen: Some(ctx.time),
        last_seen: Some(ctx.time),
        ..Finding::new(rule.id.clone(), rule.severity, summary, ctx.time)
    }
}

/// The pod as far as it is known; `identityPending` when only its UID is.
pub fn pod(identity: &CgroupIdentity, meta: Option<&PodMeta>) -> Option<Pod> {
    let uid = identity.pod_uid.clone()?;
    Some(match meta {
        Some(meta) => Pod {
            uid,
            namespace: meta.namespace.clone(),
            name: meta.name.clone(),
            service_account: meta.service_account.clone(),
            host_network: meta.host_network,
            labels: meta.labels.clone(),
            identity_pending: false,
            owner: meta
                .owner
                .as_ref()
                .map(|o| format!("{}/{}", o.kind, o.name))
                .unwrap_or_default(),
        },
        None => Pod {
            uid,
            identity_pending: true,
            ..Pod::default()
        },
    })
}

pub fn process(exec: &ExecInfo) -> Process {
    Process {
        pid: exec.pid,
        ppid: exec.ppid,
        uid: exec.uid,
        gid: exec.gid,
        comm: exec.comm.clone(),
        cgroup_id: exec.cgroup_id,
        binary: exec.binary.clone(),
        args: exec.args.clone(),
        tty: exec.tty,
        truncated: exec.truncated,
    }
}

/// A command line short enough for a one-line summary (the finding has it whole).
fn shorten(line: &str) -> String {
    const MAX: usize = 160;
    if line.chars().count() <= MAX {
        return line.to_owned();
    }
    let cut: String = line.chars().take(MAX).collect();
    format!("{cut}…")
}
