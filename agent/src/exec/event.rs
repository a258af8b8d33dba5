//! An exec as the agent works with it, decoded from the kernel's record.

use nodeward_common::exec::{
    ExecEvent, FLAG_ARGS_TRUNCATED, FLAG_FILENAME_TRUNCATED, FLAG_TTY, MAX_ARGS, MAX_FILENAME,
};

/// One exec in a watched process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecInfo {
    pub pid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    pub cgroup_id: u64,
    pub boot_ns: u64,
    /// The path given to execve (as typed: may be relative).
    pub binary: String,
    pub args: Vec<String>,
    /// argv or the path was longer than the kernel side keeps.
    pub truncated: bool,
    /// The process has a controlling terminal.
    pub tty: bool,
    pub comm: String,
}

impl ExecInfo {
    /// Decodes a kernel record; `None` if it is too short.
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        let raw: ExecEvent = crate::bpf::ring::read_record(bytes)?;
        Some(Self::from_raw(&raw))
    }

    fn from_raw(raw: &ExecEvent) -> Self {
        let filename_len = (raw.filename_len as usize).min(MAX_FILENAME);
        let args_len = (raw.args_len as usize).min(MAX_ARGS);
        Self {
            pid: raw.pid,
            ppid: raw.ppid,
            uid: raw.uid,
            gid: raw.gid,
            cgroup_id: raw.cgroup_id,
            boot_ns: raw.boot_ns,
            binary: String::from_utf8_lossy(&raw.filename[..filename_len]).into_owned(),
            args: split_args(&raw.args[..args_len]),
            truncated: raw.flags & (FLAG_ARGS_TRUNCATED | FLAG_FILENAME_TRUNCATED) != 0,
            tty: raw.flags & FLAG_TTY != 0,
            comm: crate::findings::comm(&raw.comm),
        }
    }
}

/// argv as the kernel keeps it: NUL-terminated strings back to back.
fn split_args(bytes: &[u8]) -> Vec<String> {
    let bytes = bytes.strip_suffix(&[0]).unwrap_or(bytes);
    if bytes.is_empty() {
        return Vec::new();
    }
    bytes
        .split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(filename: &str, args: &[u8], flags: u32) -> ExecEvent {
        let mut event = ExecEvent {
            cgroup_id: 7,
            boot_ns: 1,
            pid: 10,
            ppid: 9,
            uid: 1000,
            gid: 1000,
            flags,
            args_len: u32::try_from(args.len()).unwrap(),
            filename_len: u32::try_from(filename.len()).unwrap(),
            reserved: 0,
            comm: [0; 16],
            filename: [0; MAX_FILENAME],
            args: [0; MAX_ARGS],
        };
        event.filename[..filename.len()].copy_from_slice(filename.as_bytes());
        event.args[..args.len()].copy_from_slice(args);
        event.comm[..2].copy_from_slice(b"sh");
        event
    }

    #[test]
    fn decodes_argv_and_flags() {
        let info = ExecInfo::from_raw(&raw("/bin/sh", b"sh\0-c\0id\0", FLAG_TTY));
        assert_eq!(info.args, ["sh", "-c", "id"]);
        assert_eq!(
            (info.binary.as_str(), info.comm.as_str()),
            ("/bin/sh", "sh")
        );
        assert!(info.tty && !info.truncated);
        let cut = ExecInfo::from_raw(&raw("/bin/x", b"x\0aaaa", FLAG_ARGS_TRUNCATED));
        assert_eq!(cut.args, ["x", "aaaa"]);
        assert!(cut.truncated && !cut.tty);
    }

    #[test]
    fn empty_and_lying_lengths_are_safe() {
        assert!(ExecInfo::from_raw(&raw("/x", b"", 0)).args.is_empty());
        let mut liar = raw("/x", b"x\0", 0);
        liar.args_len = u32::MAX;
        liar.filename_len = u32::MAX;
        let info = ExecInfo::from_raw(&liar);
        assert_eq!(info.binary.len(), MAX_FILENAME, "capped, not out of bounds");
        assert!(ExecInfo::parse(&[0u8; 10]).is_none());
    }
}
