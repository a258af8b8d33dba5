//! The kubelet's kubeconfig, read only for how the kubelet authenticates: client
//! certificate files (to rotate, to protect, to watch for expiry) or a token or exec plugin.

use serde_json::Value;

/// How the kubeconfig's user authenticates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KubeconfigAuth {
    /// `client-certificate` paths (relative ones are relative to the kubeconfig's directory).
    pub client_certificates: Vec<String>,
    /// `client-key` paths.
    pub client_keys: Vec<String>,
    /// Decoded `client-certificate-data`.
    pub embedded_certificates: Vec<String>,
    /// Whether a user authenticates with an exec plugin, a token or an auth provider.
    pub token_or_exec: bool,
}

impl KubeconfigAuth {
    /// Whether the kubelet presents a client certificate.
    pub fn uses_client_certificate(&self) -> bool {
        !self.client_certificates.is_empty() || !self.embedded_certificates.is_empty()
    }
}

/// Reads the users of a kubeconfig: the current context's user when it names one, every
/// user otherwise.
pub fn parse(text: &str) -> Result<KubeconfigAuth, String> {
    let doc: Value = serde_saphyr::from_str(text).map_err(|e| {
        let msg = e.to_string();
        format!("invalid YAML: {}", msg.lines().next().unwrap_or_default())
    })?;
    let Value::Object(root) = &doc else {
        return Err("not a kubeconfig: expected a mapping".to_owned());
    };
    let users = root
        .get("users")
        .and_then(Value::as_array)
        .ok_or("not a kubeconfig: no users")?;
    let current_user = root
        .get("current-context")
        .and_then(Value::as_str)
        .and_then(|ctx| {
            root.get("contexts")?.as_array()?.iter().find_map(|c| {
                (c.get("name")?.as_str()? == ctx)
                    .then(|| c.get("context")?.get("user")?.as_str())
                    .flatten()
            })
        });
    let mut auth = KubeconfigAuth::default();
    for user in users {
        let name = user.get("name").and_then(Value::as_str);
        if current_user.is_some() && name != current_user {
            continue;
        }
        let Some(fields) = user.get("user").and_then(Value::as_object) else {
            continue;
        };
        let text = |k: &str| {
            fields
                .get(k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        };
        auth.client_certificates
            .extend(text("client-certificate").map(str::to_owned));
        auth.client_keys
            .extend(text("client-key").map(str::to_owned));
        if let Some(data) = text("client-certificate-data") {
            let pem = crate::x509::base64_decode(data)
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or("client-certificate-data is not base64 PEM")?;
            auth.embedded_certificates.push(pem);
        }
        auth.token_or_exec |= ["exec", "token", "tokenFile", "auth-provider"]
            .iter()
            .any(|k| fields.contains_key(*k));
    }
    Ok(auth)
}
