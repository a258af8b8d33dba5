//! What is mounted where, from `/proc/self/mountinfo`.

use std::path::PathBuf;

const MOUNTINFO: &str = "/proc/self/mountinfo";

/// The first mount point of a filesystem type (`cgroup2`, `tracefs`, ...), or `None` when
/// nothing of that type is mounted.
///
/// # Errors
/// When `/proc/self/mountinfo` cannot be read.
pub fn mount_of_type(fstype: &str) -> std::io::Result<Option<PathBuf>> {
    Ok(first_of_type(&read()?, fstype))
}

pub(crate) fn read() -> std::io::Result<String> {
    std::fs::read_to_string(MOUNTINFO)
}

/// Mount point and filesystem type of each line of mountinfo text.
pub(crate) fn mounts(mountinfo: &str) -> impl Iterator<Item = (PathBuf, &str)> {
    mountinfo.lines().filter_map(|line| {
        // "<id> <parent> <maj:min> <root> <mount point> <options> [optional...] - <fstype> ..."
        let (fields, rest) = line.split_once(" - ")?;
        let fstype = rest.split_whitespace().next()?;
        let mount_point = fields.split_whitespace().nth(4)?;
        Some((PathBuf::from(unescape(mount_point)), fstype))
    })
}

pub(crate) fn first_of_type(mountinfo: &str, fstype: &str) -> Option<PathBuf> {
    mounts(mountinfo).find_map(|(point, found)| (found == fstype).then_some(point))
}

/// Undoes mountinfo's octal escapes (`\040` for a space, and so on).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(u8::is_ascii_digit));
        if let Some(b) =
            octal.and_then(|d| u8::from_str_radix(std::str::from_utf8(d).ok()?, 8).ok())
        {
            out.push(b);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_cgroup2_on_a_hybrid_host() {
        let info = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
                    40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd\n\
                    41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        assert_eq!(
            first_of_type(info, "cgroup2"),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert_eq!(
            first_of_type(info, "tmpfs"),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
    }

    #[test]
    fn finds_mounts_with_optional_fields_and_escapes() {
        let info = "30 24 0:26 / /sys/fs/cgroup rw shared:4 - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            first_of_type(info, "cgroup2"),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        let info = "30 24 0:26 / /mnt/my\\040cg rw - cgroup2 none rw\n";
        assert_eq!(
            first_of_type(info, "cgroup2"),
            Some(PathBuf::from("/mnt/my cg"))
        );
        assert_eq!(
            first_of_type("30 24 0:26 / /x rw - ext4 /dev/sda rw\n", "tracefs"),
            None
        );
    }
}
