//! The posture monitor's tests: run as root (the fake kubelet's `/proc` entries and the
//! files it names must be readable), no eBPF needed.

mod fixture;
mod forward;
mod model;
mod monitor;
