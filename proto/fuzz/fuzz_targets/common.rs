//! What every target asserts about a message that decoded: converting it to the domain
//! type returns a value or an error and never panics, and a value that converted goes back
//! to the wire and returns unchanged (the conversions lose nothing the collector stores).

#![allow(
    dead_code,
    reason = "each target uses the checks for the messages it decodes"
)]

use nodeward_proto::{model, v1};

/// A finding from an agent.
pub fn finding(wire: v1::Finding) {
    if let Ok(domain) = model::Finding::try_from(wire) {
        let again = model::Finding::try_from(v1::Finding::from(domain.clone()))
            .expect("a converted finding converts again");
        assert_eq!(again, domain);
    }
}

/// A posture snapshot from an agent.
pub fn posture(wire: v1::PostureSnapshot) {
    if let Ok(domain) = model::PostureSnapshot::try_from(wire) {
        let again = model::PostureSnapshot::try_from(v1::PostureSnapshot::from(domain.clone()))
            .expect("a converted snapshot converts again");
        assert_eq!(again, domain);
    }
}

/// A stored finding, as a SOC client receives it.
pub fn record(wire: v1::FindingRecord) {
    if let Ok(domain) = model::FindingRecord::try_from(wire) {
        let again = model::FindingRecord::try_from(v1::FindingRecord::from(domain.clone()))
            .expect("a converted record converts again");
        assert_eq!(again, domain);
    }
}

/// A SOC client's filter.
pub fn filter(wire: v1::FindingFilter) {
    if let Ok(domain) = model::FindingFilter::try_from(wire) {
        let again = model::FindingFilter::try_from(v1::FindingFilter::from(domain.clone()))
            .expect("a converted filter converts again");
        assert_eq!(again, domain);
    }
}
