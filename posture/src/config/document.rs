//! Config documents (`KubeletConfiguration`, `KubeProxyConfiguration`, drop-ins) parsed into
//! a JSON tree: JSON with `serde_json`, YAML with serde-saphyr, then checked to be the kind of
//! document the kubelet (or kube-proxy) would accept.

use serde_json::Value;

/// Which component's config a document must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocumentKind {
    /// `kubelet.config.k8s.io/v1beta1`, `KubeletConfiguration`.
    Kubelet,
    /// `kubeproxy.config.k8s.io/*`, `KubeProxyConfiguration`.
    KubeProxy,
}

impl DocumentKind {
    fn kind(self) -> &'static str {
        match self {
            Self::Kubelet => "KubeletConfiguration",
            Self::KubeProxy => "KubeProxyConfiguration",
        }
    }

    fn accepts(self, api_version: &str) -> bool {
        match self {
            Self::Kubelet => api_version == "kubelet.config.k8s.io/v1beta1",
            Self::KubeProxy => api_version.starts_with("kubeproxy.config.k8s.io/"),
        }
    }
}

/// Parses raw bytes: text checks first, then [`parse_document`]. This is the entry point the
/// fuzz target drives.
pub fn parse_bytes(bytes: &[u8], kind: DocumentKind) -> Result<Value, String> {
    let text = crate::fsview::text_of(bytes.to_vec()).ok_or("binary content, not text")?;
    parse_document(&text, kind)
}

/// Parses a document and checks its `apiVersion` and `kind`; unknown fields are kept (real
/// configs carry many keys the checks do not read).
pub fn parse_document(text: &str, kind: DocumentKind) -> Result<Value, String> {
    let trimmed = text.trim_start_matches('\u{feff}').trim();
    // The kubelet refuses an empty config file ("kubelet config file was empty").
    if trimmed.is_empty() {
        return Err("empty file".to_owned());
    }
    let doc: Value = if trimmed.starts_with('{') {
        serde_json::from_str(trimmed).map_err(|e| format!("invalid JSON: {e}"))?
    } else {
        serde_saphyr::from_str(trimmed)
            .map_err(|e| format!("invalid YAML: {}", one_line(&e.to_string())))?
    };
    let Value::Object(map) = &doc else {
        return Err(format!(
            "expected a {} mapping at the top level",
            kind.kind()
        ));
    };
    match map.get("kind").and_then(Value::as_str) {
        Some(k) if k == kind.kind() => {}
        Some(k) => return Err(format!("kind is {k:?}, not {}", kind.kind())),
        None => return Err(format!("no `kind: {}`", kind.kind())),
    }
    match map.get("apiVersion").and_then(Value::as_str) {
        Some(v) if kind.accepts(v) => {}
        Some(v) => return Err(format!("unsupported apiVersion {v:?}")),
        None => return Err("no apiVersion".to_owned()),
    }
    if kind == DocumentKind::Kubelet {
        check_types(&doc)?;
    }
    Ok(doc)
}

/// Refuses a `KubeletConfiguration` whose known fields have the wrong type, as the
/// kubelet's strict decoding does: it would not start with it, so nothing it says holds.
fn check_types(doc: &Value) -> Result<(), String> {
    for setting in super::settings::ALL {
        match lookup(doc, setting.key, false) {
            Lookup::Found(value) => {
                setting
                    .kind
                    .from_json(value)
                    .map_err(|e| format!("{}: {e}", setting.key))?;
            }
            Lookup::NotAMapping(prefix) => return Err(format!("{prefix} is not a mapping")),
            Lookup::Absent | Lookup::Deleted => {}
        }
    }
    Ok(())
}

/// serde-saphyr renders a snippet over several lines; a check's `observed` is one line.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// What a document says about a dotted key, with JSON merge-patch meaning.
#[derive(Debug, PartialEq)]
pub(crate) enum Lookup<'a> {
    /// The document does not mention it.
    Absent,
    /// It, or an object on the way, is `null`: a drop-in deleting it back to the default.
    Deleted,
    /// Its value.
    Found(&'a Value),
    /// Something on the way that should be a mapping is not (the prefix is named).
    NotAMapping(String),
}

/// Looks a dotted `key` up in a document. `fold_case` matches keys as Go's
/// `encoding/json` does when the kubelet unmarshals merged drop-ins (exact match first).
pub(crate) fn lookup<'a>(doc: &'a Value, key: &str, fold_case: bool) -> Lookup<'a> {
    let mut node = doc;
    let mut walked = Vec::new();
    for part in key.split('.') {
        let Value::Object(map) = node else {
            return Lookup::NotAMapping(walked.join("."));
        };
        walked.push(part);
        let entry = map.get(part).or_else(|| {
            fold_case
                .then(|| map.iter().find(|(k, _)| k.eq_ignore_ascii_case(part)))
                .flatten()
                .map(|(_, v)| v)
        });
        match entry {
            Some(Value::Null) => return Lookup::Deleted,
            Some(next) => node = next,
            None => return Lookup::Absent,
        }
    }
    Lookup::Found(node)
}
