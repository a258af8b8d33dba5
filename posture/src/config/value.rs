//! Typed values of the settings the checks read, from a flag or from a config document.

use std::fmt;

use super::goparse::{parse_bool, parse_duration, parse_int32};

/// The type of a setting, as the kubelet declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `bool`.
    Bool,
    /// `int32`.
    Int,
    /// `string` (including paths).
    Str,
    /// `metav1.Duration`: a Go duration string.
    Duration,
    /// `[]string`; as a flag, comma-separated and accumulated over repeats.
    List,
}

/// A setting's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A string.
    Str(String),
    /// A duration, with its text as written.
    Duration { nanos: i64, text: String },
    /// A list of strings.
    List(Vec<String>),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bool(b) => write!(f, "{b}"),
            Self::Int(i) => write!(f, "{i}"),
            Self::Str(s) if s.is_empty() => f.write_str("\"\" (unset)"),
            Self::Str(s) => f.write_str(s),
            Self::Duration { text, .. } => f.write_str(text),
            Self::List(items) if items.is_empty() => f.write_str("[] (unset)"),
            Self::List(items) => f.write_str(&items.join(",")),
        }
    }
}

impl Kind {
    /// Reads a flag's text the way pflag's typed values do.
    pub fn from_flag(self, text: &str) -> Result<Value, String> {
        Ok(match self {
            Self::Bool => Value::Bool(parse_bool(text)?),
            Self::Int => Value::Int(parse_int32(text)?),
            Self::Str => Value::Str(text.to_owned()),
            Self::Duration => Value::Duration {
                nanos: parse_duration(text)?,
                text: text.to_owned(),
            },
            // pflag's StringSlice reads CSV; an empty flag is an empty list.
            Self::List if text.is_empty() => Value::List(Vec::new()),
            Self::List => Value::List(text.split(',').map(str::to_owned).collect()),
        })
    }

    /// Reads a config document's value the way Go's JSON decoding into the typed
    /// `KubeletConfiguration` does: no coercion between types.
    pub fn from_json(self, json: &serde_json::Value) -> Result<Value, String> {
        use serde_json::Value as J;
        let found = || {
            format!(
                "expected {}, found {}",
                self.describe(),
                describe_json(json)
            )
        };
        Ok(match (self, json) {
            (Self::Bool, J::Bool(b)) => Value::Bool(*b),
            (Self::Int, J::Number(n)) => {
                let i = n.as_i64().ok_or_else(found)?;
                if i32::try_from(i).is_err() {
                    return Err(format!("{i} is out of range for a 32-bit integer"));
                }
                Value::Int(i)
            }
            (Self::Str, J::String(s)) => Value::Str(s.clone()),
            (Self::Duration, J::String(s)) => Value::Duration {
                nanos: parse_duration(s)?,
                text: s.clone(),
            },
            (Self::List, J::Array(items)) => Value::List(
                items
                    .iter()
                    .map(|item| item.as_str().map(str::to_owned).ok_or_else(found))
                    .collect::<Result<_, _>>()?,
            ),
            _ => return Err(found()),
        })
    }

    fn describe(self) -> &'static str {
        match self {
            Self::Bool => "a boolean",
            Self::Int => "an integer",
            Self::Str => "a string",
            Self::Duration => "a duration string such as \"4h0m0s\"",
            Self::List => "a list of strings",
        }
    }
}

fn describe_json(json: &serde_json::Value) -> String {
    use serde_json::Value as J;
    match json {
        J::Null => "null".to_owned(),
        J::Bool(b) => format!("boolean {b}"),
        J::Number(n) => format!("number {n}"),
        J::String(s) => format!("string {s:?}"),
        J::Array(_) => "a list".to_owned(),
        J::Object(_) => "a mapping".to_owned(),
    }
}
