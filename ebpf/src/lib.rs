//! Empty on purpose: the programs live in the `nodeward` binary target (src/main.rs).
//! This library target exists so that `nodeward-agent` can build-depend on this crate and
//! cargo reruns the agent's build script when the programs or the shared types change.
#![no_std]
