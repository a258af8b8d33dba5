//! nodeward's kernel side. Each hook is one file in `probes/`; the maps they share are in
//! `maps.rs`; decisions that several hooks make live beside the maps they read.
#![no_std]
#![no_main]
// Atomic adds on map values (see atomic.rs); the crate builds on nightly only.
#![feature(core_intrinsics)]
#![expect(
    internal_features,
    reason = "the BPF target has no other atomic read-modify-write"
)]
#![expect(
    clippy::inline_always,
    reason = "helpers are inlined into each program so the verifier checks one function with its bounds in view"
)]

mod atomic;
mod egress;
mod imds;
mod maps;
mod packet;
mod packet_guard;
mod probes;
mod sock_addr;
mod uplink;
mod wakeup;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // eBPF programs cannot unwind or abort; the verifier rejects any path that reaches here.
    loop {}
}

// GPL-compatible licence: required for bpf_get_current_comm and ring buffer helpers.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
