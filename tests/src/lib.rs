//! Test harness for nodeward: a simulated Kubernetes worker node made of network namespaces
//! and cgroups the test creates itself, and `nodeward-probe`, the tool tests run in its pods.
//!
//! ```no_run
//! use nodeward_testkit::bpf::{AttachType, attached_programs};
//! use nodeward_testkit::{IMDS_V4, PodSpec, SimNode, require_root};
//!
//! if !require_root("pods_reach_imds") {
//!     return;
//! }
//! let node = SimNode::builder().pod(PodSpec::new("web")).build();
//! let web = node.pod("web");
//! let got = web.probe(&["http-get", "http://169.254.169.254/latest/meta-data/"]);
//! assert_eq!(got.status, Some(200));
//! let host = node.add_pod(PodSpec::new("cni").host_network(true));
//! let _sleeper = host.spawn("sleep", &["infinity"]);
//!
//! // An agent under test gets `cgroupRoot: node.cgroup_root()`,
//! // `podCgroupPath: node.pod_cgroup_path()` and pins below `node.bpffs()`, a bpffs of the
//! // node's own. What it attached, straight from the kernel:
//! let pods = node.cgroup_root().join(node.pod_cgroup_path());
//! let connect4 = attached_programs(&pods, AttachType::Inet4Connect);
//! assert!(connect4.len() <= 1, "attached once, not stacked: {connect4:?}");
//!
//! // Every way to the metadata service, and what reached it.
//! let imds = node.imds();
//! let before = (imds.request_count(), imds.udp_datagram_count(), imds.icmp_packet_count());
//! for mode in ["sendto", "connect", "sendmsg", "sendmmsg"] {
//!     web.probe(&["udp-send", "--addr", "169.254.169.254", "--port", "80", "--mode", mode]);
//! }
//! web.probe(&["udp-send", "--addr", "::ffff:169.254.169.254", "--port", "80"]);
//! web.probe(&["tcp-fastopen", "--addr", "169.254.169.254", "--port", "80"]);
//! web.probe(&["raw-send", "--addr", "fd00:ec2::254"]);
//! imds.settle(); // whatever the probes sent is now counted
//! let after = (imds.request_count(), imds.udp_datagram_count(), imds.icmp_packet_count());
//! assert_eq!(after, before, "enforced: nothing reached the metadata service");
//! assert!(imds.udp_datagrams().iter().all(|d| d.local != IMDS_V4));
//!
//! // Benchmark workloads print ops, seconds and rate.
//! let storm = web.probe(&["storm", "connect", "--count", "10000", "--threads", "2"]);
//! println!("{:.0} connect()/s", storm.rate.unwrap_or_default());
//! ```
//!
//! Everything lives in namespaces and cgroups named after the test process (`nw<pid>-<n>`),
//! so tests run in parallel; dropping a [`SimNode`] removes all of it, panicking test or not,
//! starting with its bpffs (which releases the agent's pinned programs).
//! No traffic ever leaves those namespaces: the machine's real metadata service, reachable
//! from the root namespace on a cloud VM, is never contacted.

#![deny(unsafe_code)]
#![warn(missing_docs, clippy::pedantic)]
#![expect(
    clippy::missing_panics_doc,
    reason = "a test harness panics by design, with a message naming what failed"
)]

pub mod bpf;
mod bpffs;
mod builder;
mod capture;
pub mod certs;
pub mod cgroup;
mod imds;
pub mod kube_api;
mod metadata;
mod mountinfo;
pub mod netns;
mod network;
mod node;
mod pod;
mod pods;
mod postgres;
mod probe;
mod process;
mod root;
pub mod stack;
mod stale;
mod wait;

pub use builder::SimNodeBuilder;
pub use capture::ImdsPacket;
pub use cgroup::{CgroupTree, cgroup2_mount, process_cgroup};
pub use imds::{
    IMDS_V4, IMDS_V6, ImdsRequest, ImdsServer, METADATA_BODY, POD_IDENTITY_V4, POD_IDENTITY_V6,
    ServerLiveness, TOKEN,
};
pub use mountinfo::mount_of_type;
pub use netns::NetNs;
pub use node::SimNode;
pub use pod::{PodSpec, Qos, SimPod};
pub use postgres::{POSTGRES_URL_ENV, require_postgres, require_postgres_tls};
pub use probe::{BIN_DIR_ENV, ProbeResult, probe_path, run_probe, workspace_bin};
pub use process::{ProcessGuard, process_netns_inode};
pub use root::require_root;
pub use stale::sweep_stale;
pub use wait::{poll_until, wait_until};
