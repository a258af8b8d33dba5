//! A stand-in for a kubelet (or kube-proxy) in tests: a real process with a real command
//! line. Tests hard-link it under the name `kubelet` so `/proc/<pid>/exe` names it so, and
//! run it with the kubelet's flags, which it ignores. It exits when its stdin closes (the
//! test that started it ended, however it ended) or after ten minutes at most.

use std::io::Read;
use std::time::Duration;

fn main() {
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_mins(10));
        std::process::exit(0);
    });
    let mut sink = [0_u8; 64];
    while matches!(std::io::stdin().read(&mut sink), Ok(n) if n > 0) {}
}
