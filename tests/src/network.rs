//! The simulated node's wiring: addresses, links and routes between the `node`, `imds` and
//! pod namespaces.
//!
//! ```text
//!  pod netns            node netns                       imds netns
//!  eth0 10.200.n.2/30 ─ vpod<n> 10.200.n.1/30
//!       fd00:200:n::2/64        fd00:200:n::1/64
//!                       imds0 10.254.0.1/30 ───────────── eth0 10.254.0.2/30
//!                             fd00:254::1/64                   fd00:254::2/64
//!                       169.254.169.254, 169.254.170.23   lo   169.254.169.254/32
//!                       fd00:ec2::254, fd00:ec2::23            169.254.170.23/32
//!                         via the imds link                    fd00:ec2::254/128
//!                                                              fd00:ec2::23/128
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::imds::{IMDS_V4, IMDS_V6, POD_IDENTITY_V4, POD_IDENTITY_V6};
use crate::netns::{NetNs, veth};

/// The addresses the `imds` namespace serves.
pub(crate) const IMDS_ADDRS: [IpAddr; 4] = [
    IpAddr::V4(IMDS_V4),
    IpAddr::V6(IMDS_V6),
    IpAddr::V4(POD_IDENTITY_V4),
    IpAddr::V6(POD_IDENTITY_V6),
];

/// How many pods with their own network one node can have (one /30 and /64 each).
pub(crate) const MAX_NETWORK_PODS: u8 = 250;

/// Sets a fresh namespace's sysctls before any link exists, so links inherit them.
pub(crate) fn prepare(ns: &NetNs, forwarding: bool) {
    // Without this, every IPv6 address (link-local ones too) stays "tentative" for a second
    // or more and cannot be bound or used as a source; `nodad` below covers our own
    // addresses, this covers the link-local ones and NDP.
    ns.sysctl("net/ipv6/conf/all/accept_dad", "0");
    ns.sysctl("net/ipv6/conf/default/accept_dad", "0");
    if forwarding {
        ns.sysctl("net/ipv4/ip_forward", "1");
        ns.sysctl("net/ipv6/conf/all/forwarding", "1");
        ns.sysctl("net/ipv6/conf/default/forwarding", "1");
    }
}

/// Links `node` and `imds`, puts the metadata addresses on `imds`'s loopback and routes
/// them from `node`, and routes everything back from `imds` through `node`.
pub(crate) fn wire_imds(node: &NetNs, imds: &NetNs) {
    veth(node, "imds0", imds, "eth0");
    add_addr(node, "imds0", "10.254.0.1/30");
    add_addr(node, "imds0", "fd00:254::1/64");
    add_addr(imds, "eth0", "10.254.0.2/30");
    add_addr(imds, "eth0", "fd00:254::2/64");
    for addr in IMDS_ADDRS {
        let (host_prefix, via) = match addr {
            IpAddr::V4(_) => ("32", "10.254.0.2"),
            IpAddr::V6(_) => ("128", "fd00:254::2"),
        };
        let cidr = format!("{addr}/{host_prefix}");
        add_addr(imds, "lo", &cidr);
        node.ip(&["route", "add", &cidr, "via", via]);
    }
    imds.ip(&["route", "add", "default", "via", "10.254.0.1"]);
    imds.ip(&["-6", "route", "add", "default", "via", "fd00:254::1"]);
}

/// Links pod number `n` to `node` (`vpod<n>` ↔ `eth0`) with default routes through `node`,
/// and returns the pod's addresses.
pub(crate) fn wire_pod(node: &NetNs, pod: &NetNs, n: u8) -> (Ipv4Addr, Ipv6Addr) {
    let node_if = format!("vpod{n}");
    veth(node, &node_if, pod, "eth0");
    let seg = u16::from(n);
    let (node_v4, pod_v4) = (Ipv4Addr::new(10, 200, n, 1), Ipv4Addr::new(10, 200, n, 2));
    let (node_v6, pod_v6) = (
        Ipv6Addr::new(0xfd00, 0x200, seg, 0, 0, 0, 0, 1),
        Ipv6Addr::new(0xfd00, 0x200, seg, 0, 0, 0, 0, 2),
    );
    add_addr(node, &node_if, &format!("{node_v4}/30"));
    add_addr(node, &node_if, &format!("{node_v6}/64"));
    add_addr(pod, "eth0", &format!("{pod_v4}/30"));
    add_addr(pod, "eth0", &format!("{pod_v6}/64"));
    pod.ip(&["route", "add", "default", "via", &node_v4.to_string()]);
    pod.ip(&["-6", "route", "add", "default", "via", &node_v6.to_string()]);
    (pod_v4, pod_v6)
}

/// Adds an address; IPv6 ones with `nodad`, so they are usable at once.
fn add_addr(ns: &NetNs, dev: &str, cidr: &str) {
    if cidr.contains(':') {
        ns.ip(&["addr", "add", cidr, "dev", dev, "nodad"]);
    } else {
        ns.ip(&["addr", "add", cidr, "dev", dev]);
    }
}
