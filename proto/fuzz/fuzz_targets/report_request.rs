//! Any bytes as a message on an agent's Report stream, as the collector decodes it: prost
//! returns a message or an error, and the conversions of what it returns never panic.
//!
//! Run: `cargo +nightly fuzz run report_request` from `proto/`.

#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use nodeward_proto::v1::{ReportRequest, report_request::Kind};
use prost::Message as _;

fuzz_target!(|data: &[u8]| {
    let Ok(request) = ReportRequest::decode(data) else {
        return;
    };
    match request.kind {
        Some(Kind::Findings(batch)) => batch.findings.into_iter().for_each(common::finding),
        Some(Kind::Posture(snapshot)) => common::posture(snapshot),
        Some(Kind::Hello(_)) | None => {}
    }
});
