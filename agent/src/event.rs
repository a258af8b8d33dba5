//! What modules deliver to the finding pipeline.

use nodeward_common::imds::ImdsEvent;

#[derive(Debug, Clone)]
pub enum Event {
    /// An attempt to reach a blocked IMDS address, as the kernel reported it.
    Imds(ImdsEvent),
    /// Events a module could not deliver (kernel ring buffer full); reported, never hidden.
    Lost { source: &'static str, count: u64 },
}
