//! Any bytes as a `FindingBatch`, the bulk of what agents send: every finding in it
//! converts or is refused, never panics, and converts back unchanged.
//!
//! Run: `cargo +nightly fuzz run finding_batch` from `proto/`.

#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use nodeward_proto::v1::FindingBatch;
use prost::Message as _;

fuzz_target!(|data: &[u8]| {
    if let Ok(batch) = FindingBatch::decode(data) {
        batch.findings.into_iter().for_each(common::finding);
    }
});
