//! Any bytes as a kubelet or kube-proxy config file: the parser must return a document or
//! a reason, never panic, hang or blow the stack (deeply nested YAML/JSON included).
//!
//! Run: `cargo +nightly fuzz run config_parser` from `posture/`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use nodeward_posture::config::{DocumentKind, parse_bytes};

fuzz_target!(|data: &[u8]| {
    for kind in [DocumentKind::Kubelet, DocumentKind::KubeProxy] {
        if let Ok(doc) = parse_bytes(data, kind) {
            // What the parser accepts is a mapping: the checks index into it.
            assert!(doc.is_object());
        }
    }
});
