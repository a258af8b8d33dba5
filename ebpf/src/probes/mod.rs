//! One file per kernel hook; each is a thin entry point into the shared decision.

mod connect4;
mod connect6;
mod egress;
mod exec;
mod host_egress;
mod sendmsg4;
mod sendmsg6;
mod sock_create;
mod uplink;
