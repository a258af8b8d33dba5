//! Any bytes as what crosses the SOC API: the collector decodes subscriptions and listing
//! requests (with their filters), SOC clients decode finding records. Neither side panics.
//!
//! Run: `cargo +nightly fuzz run soc_messages` from `proto/`.

#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use nodeward_proto::v1::{FindingRecord, ListFindingsRequest, SubscribeRequest};
use prost::Message as _;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = SubscribeRequest::decode(data) {
        request.filter.into_iter().for_each(common::filter);
    }
    if let Ok(request) = ListFindingsRequest::decode(data) {
        request.filter.into_iter().for_each(common::filter);
    }
    if let Ok(record) = FindingRecord::decode(data) {
        common::record(record);
    }
});
