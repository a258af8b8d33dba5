//! What the exec sensor saw, by pid: so a finding can name a process's parent, and the
//! binary and argv of a process that has already exited (which /proc can no longer tell).

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
};

use crate::exec::ExecInfo;

/// Processes remembered; the oldest execs are forgotten first.
const CAPACITY: usize = 65_536;

#[derive(Default)]
pub struct ProcessTable {
    by_pid: HashMap<u32, Arc<ExecInfo>>,
    /// Insertion order, to forget the oldest; an entry whose pid has exec'd again since is
    /// skipped (its `boot_ns` no longer matches).
    order: VecDeque<(u32, u64)>,
}

impl ProcessTable {
    pub fn record(&mut self, exec: Arc<ExecInfo>) {
        self.order.push_back((exec.pid, exec.boot_ns));
        self.by_pid.insert(exec.pid, exec);
        while self.order.len() > CAPACITY {
            if let Some((pid, boot_ns)) = self.order.pop_front()
                && self.by_pid.get(&pid).is_some_and(|e| e.boot_ns == boot_ns)
            {
                self.by_pid.remove(&pid);
            }
        }
    }

    /// The last exec seen in `pid`.
    pub fn get(&self, pid: u32) -> Option<&Arc<ExecInfo>> {
        self.by_pid.get(&pid)
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_pid.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec(pid: u32, boot_ns: u64, binary: &str) -> Arc<ExecInfo> {
        Arc::new(ExecInfo {
            pid,
            ppid: 1,
            uid: 0,
            gid: 0,
            cgroup_id: 1,
            boot_ns,
            binary: binary.into(),
            args: vec![],
            truncated: false,
            tty: false,
            comm: String::new(),
        })
    }

    #[test]
    fn keeps_the_latest_exec_per_pid_and_stays_bounded() {
        let mut table = ProcessTable::default();
        table.record(exec(10, 1, "/bin/sh"));
        table.record(exec(10, 2, "/usr/bin/curl"));
        assert_eq!(table.get(10).unwrap().binary, "/usr/bin/curl");
        for pid in 0..u32::try_from(CAPACITY).unwrap() + 10 {
            table.record(exec(1000 + pid, 3 + u64::from(pid), "/bin/true"));
        }
        assert!(table.len() <= CAPACITY);
        assert!(table.get(10).is_none(), "the oldest are forgotten");
    }
}
