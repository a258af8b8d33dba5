//! Any text as `--kubelet-args`: shell splitting and pflag-style parsing never panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use nodeward_posture::config::{Flags, shell};

fuzz_target!(|data: &str| {
    if let Ok(words) = shell::split(data) {
        let mut args = vec!["kubelet".to_owned()];
        args.extend(words);
        let flags = Flags::parse(&args);
        let _ = flags.last("config");
        let _ = flags.gate("RotateKubeletServerCertificate");
    }
});
