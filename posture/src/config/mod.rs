//! The kubelet's effective configuration: flags, `--config` file, `--config-dir` drop-ins
//! and defaults, each value with where it came from.

mod document;
mod effective;
mod flags;
mod goparse;
pub(crate) mod layers;
pub mod settings;
pub mod shell;
mod value;

pub use document::{DocumentKind, parse_bytes, parse_document};
pub(crate) use document::{Lookup, lookup};
pub use effective::{Defaults, EffectiveConfig, Layer, SettingError, Source, Sourced};
pub use flags::Flags;
pub use goparse::{parse_bool, parse_duration, parse_int32};
pub use settings::Setting;
pub use value::{Kind, Value};
