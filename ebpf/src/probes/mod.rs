//! One file per kernel hook.

mod connect4;
mod connect6;
