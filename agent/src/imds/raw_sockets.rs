//! Which cgroups below the pod cgroup have a process holding a socket that only the
//! packet hook judges (raw, ICMP, UDP-Lite), read from /proc when the agent starts. Such a
//! socket may predate `imds_sock_create` (a first install, or an upgrade from agents that
//! hooked the whole pod cgroup), so no request for its pod was ever made. The kernel lists
//! raw sockets from their creation, ICMP and UDP-Lite ones once bound (their first send
//! binds them): one opened before the agent and first used after it is judged on the
//! node's side until its pod opens another.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    fs,
    os::unix::fs::MetadataExt as _,
    path::Path,
};

use crate::cgroup::subtree;

/// The per-namespace socket tables (`/proc/<pid>/net/…`) of those sockets.
const TABLES: [&str; 6] = ["raw", "raw6", "icmp", "icmp6", "udplite", "udplite6"];
/// Cgroup levels walked below the pod cgroup; deeper ones are nested inside containers.
pub const MAX_DEPTH: usize = 16;

/// The ids of the cgroups (below and including `pod_cgroup`) with such a holder. Processes
/// and cgroups that vanish while being read are skipped: they hold nothing any more.
pub fn holders(proc_root: &Path, pod_cgroup: &Path) -> BTreeSet<u64> {
    let mut found = BTreeSet::new();
    // Socket inodes by network namespace inode: the tables are per namespace, and a pod's
    // processes share one.
    let mut tables: HashMap<u64, HashSet<u64>> = HashMap::new();
    for dir in subtree(pod_cgroup, MAX_DEPTH) {
        let Ok(meta) = fs::metadata(&dir) else {
            continue;
        };
        let pids = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        if pids
            .lines()
            .filter_map(|l| l.trim().parse::<u32>().ok())
            .any(|pid| holds(proc_root, pid, &mut tables))
        {
            found.insert(meta.ino());
        }
    }
    found
}

/// Whether process `pid` has one of its namespace's such sockets open.
fn holds(proc_root: &Path, pid: u32, tables: &mut HashMap<u64, HashSet<u64>>) -> bool {
    let process = proc_root.join(pid.to_string());
    let Ok(netns) = fs::metadata(process.join("ns/net")) else {
        return false;
    };
    let sockets = tables.entry(netns.ino()).or_insert_with(|| {
        TABLES
            .iter()
            .filter_map(|t| fs::read_to_string(process.join("net").join(t)).ok())
            .flat_map(|text| socket_inodes(&text).collect::<Vec<_>>())
            .collect()
    });
    if sockets.is_empty() {
        return false;
    }
    let Ok(fds) = fs::read_dir(process.join("fd")) else {
        return false;
    };
    fds.flatten()
        .filter_map(|fd| fs::read_link(fd.path()).ok())
        .filter_map(|target| socket_inode(target.to_str()?))
        .any(|inode| sockets.contains(&inode))
}

/// The socket inodes a `/proc/net/{raw,icmp,udplite}[6]` table lists (the tenth column).
fn socket_inodes(table: &str) -> impl Iterator<Item = u64> + '_ {
    table
        .lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().nth(9)?.parse().ok())
        .filter(|&inode| inode != 0)
}

/// The inode of an fd link that reads `socket:[<inode>]`.
fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_tables_are_read_by_their_inode_column() {
        // As Linux 6.18 prints /proc/net/raw and /proc/net/icmp6.
        let raw = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
                   \x20 1: 00000000:0001 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 40512 2 ffff8f0a 0\n";
        assert_eq!(socket_inodes(raw).collect::<Vec<_>>(), [40512]);
        let icmp6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
                     \x20 58: 00000000000000000000000000000000:003A 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 91 2 ffff 0\n\
                     \x20 59: garbage\n";
        assert_eq!(socket_inodes(icmp6).collect::<Vec<_>>(), [91]);
        assert_eq!(socket_inodes("header only\n").count(), 0);
    }

    #[test]
    fn a_process_holding_a_udplite_socket_is_a_holder() {
        // UDP-Lite needs no privilege, and its sends pass no socket hook either.
        // SAFETY: plain socket(2); the fd is owned right away.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, libc::IPPROTO_UDPLITE) };
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        // SAFETY: a new fd nothing else owns.
        let socket = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        // The kernel lists a datagram socket once it is bound (as a first send binds it).
        let address = libc::sockaddr_in {
            sin_family: libc::sa_family_t::try_from(libc::AF_INET).expect("small"),
            sin_port: 0,
            sin_addr: libc::in_addr {
                s_addr: u32::from(std::net::Ipv4Addr::LOCALHOST).to_be(),
            },
            sin_zero: [0; 8],
        };
        // SAFETY: a valid sockaddr_in of the length passed.
        let bound = unsafe {
            libc::bind(
                fd,
                std::ptr::from_ref(&address).cast(),
                libc::socklen_t::try_from(size_of::<libc::sockaddr_in>()).expect("small"),
            )
        };
        assert_eq!(bound, 0, "bind: {}", std::io::Error::last_os_error());
        let mut tables = HashMap::new();
        assert!(holds(Path::new("/proc"), std::process::id(), &mut tables));
        drop(socket);
        assert!(
            !holds(Path::new("/proc"), u32::MAX, &mut tables),
            "no such process"
        );
    }

    #[test]
    fn only_socket_links_name_an_inode() {
        assert_eq!(socket_inode("socket:[12345]"), Some(12345));
        assert_eq!(socket_inode("pipe:[12345]"), None);
        assert_eq!(socket_inode("/dev/null"), None);
        assert_eq!(socket_inode("socket:[x]"), None);
    }
}
