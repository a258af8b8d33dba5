//! The KubeletConfiguration settings the checks read: where each lives in the config,
//! which flag sets it, its type, and its default in each regime.
//!
//! Defaults: a kubelet started with `--config` gets the `KubeletConfiguration` v1beta1
//! defaults (`SetDefaults_KubeletConfiguration`); a kubelet started with flags only keeps
//! the legacy values `applyLegacyDefaults` restores for four flags
//! (<https://github.com/kubernetes/kubernetes/blob/master/cmd/kubelet/app/options/options.go>).

use super::value::{Kind, Value};

/// Where a flag sets a setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagRef {
    /// A flag of its own: `--read-only-port`.
    Flag(&'static str),
    /// A key of `--feature-gates=Name=bool,...`.
    Gate(&'static str),
}

/// A default, per regime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultValue {
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A string (empty: unset).
    Str(&'static str),
    /// A duration: its text and nanoseconds.
    Duration(&'static str, i64),
    /// An empty list.
    EmptyList,
}

impl DefaultValue {
    /// The default as a value.
    pub fn value(self) -> Value {
        match self {
            Self::Bool(b) => Value::Bool(b),
            Self::Int(i) => Value::Int(i),
            Self::Str(s) => Value::Str(s.to_owned()),
            Self::Duration(text, nanos) => Value::Duration {
                nanos,
                text: text.to_owned(),
            },
            Self::EmptyList => Value::List(Vec::new()),
        }
    }
}

/// One setting of the kubelet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// Its path in a `KubeletConfiguration`, dot-separated, camelCase.
    pub key: &'static str,
    /// The flag that overrides it.
    pub flag: FlagRef,
    /// Its type.
    pub kind: Kind,
    /// Default when the kubelet runs with `--config` (v1beta1 defaults).
    pub config_default: DefaultValue,
    /// Default when the kubelet runs on flags only (legacy defaults).
    pub flag_default: DefaultValue,
    /// A path the kubelet resolves against the config file's directory when relative
    /// (`KubeletConfigurationPathRefs`).
    pub is_path: bool,
}

const fn same(key: &'static str, flag: FlagRef, kind: Kind, default: DefaultValue) -> Setting {
    Setting {
        key,
        flag,
        kind,
        config_default: default,
        flag_default: default,
        is_path: false,
    }
}

const fn path(key: &'static str, flag: &'static str) -> Setting {
    Setting {
        is_path: true,
        ..same(key, FlagRef::Flag(flag), Kind::Str, DefaultValue::Str(""))
    }
}

const FOUR_HOURS: i64 = 4 * 3_600 * 1_000_000_000;

/// `authentication.anonymous.enabled` / `--anonymous-auth`: legacy default true.
pub const ANONYMOUS_AUTH: Setting = Setting {
    flag_default: DefaultValue::Bool(true),
    ..same(
        "authentication.anonymous.enabled",
        FlagRef::Flag("anonymous-auth"),
        Kind::Bool,
        DefaultValue::Bool(false),
    )
};
/// `authentication.webhook.enabled` / `--authentication-token-webhook`: legacy default false.
pub const WEBHOOK_AUTHN: Setting = Setting {
    flag_default: DefaultValue::Bool(false),
    ..same(
        "authentication.webhook.enabled",
        FlagRef::Flag("authentication-token-webhook"),
        Kind::Bool,
        DefaultValue::Bool(true),
    )
};
/// `authorization.mode` / `--authorization-mode`: legacy default `AlwaysAllow`.
pub const AUTHORIZATION_MODE: Setting = Setting {
    flag_default: DefaultValue::Str("AlwaysAllow"),
    ..same(
        "authorization.mode",
        FlagRef::Flag("authorization-mode"),
        Kind::Str,
        DefaultValue::Str("Webhook"),
    )
};
/// `readOnlyPort` / `--read-only-port`: legacy default 10255.
pub const READ_ONLY_PORT: Setting = Setting {
    flag_default: DefaultValue::Int(10255),
    ..same(
        "readOnlyPort",
        FlagRef::Flag("read-only-port"),
        Kind::Int,
        DefaultValue::Int(0),
    )
};
/// `authentication.x509.clientCAFile` / `--client-ca-file`.
pub const CLIENT_CA_FILE: Setting = path("authentication.x509.clientCAFile", "client-ca-file");
/// `tlsCertFile` / `--tls-cert-file`.
pub const TLS_CERT_FILE: Setting = path("tlsCertFile", "tls-cert-file");
/// `tlsPrivateKeyFile` / `--tls-private-key-file`.
pub const TLS_PRIVATE_KEY_FILE: Setting = path("tlsPrivateKeyFile", "tls-private-key-file");
/// `streamingConnectionIdleTimeout` / `--streaming-connection-idle-timeout`.
pub const STREAMING_IDLE_TIMEOUT: Setting = same(
    "streamingConnectionIdleTimeout",
    FlagRef::Flag("streaming-connection-idle-timeout"),
    Kind::Duration,
    DefaultValue::Duration("4h0m0s", FOUR_HOURS),
);
/// `makeIPTablesUtilChains` / `--make-iptables-util-chains`.
pub const IPTABLES_UTIL_CHAINS: Setting = same(
    "makeIPTablesUtilChains",
    FlagRef::Flag("make-iptables-util-chains"),
    Kind::Bool,
    DefaultValue::Bool(true),
);
/// `eventRecordQPS` / `--event-qps` (default 50 since Kubernetes 1.27).
pub const EVENT_QPS: Setting = same(
    "eventRecordQPS",
    FlagRef::Flag("event-qps"),
    Kind::Int,
    DefaultValue::Int(50),
);
/// `rotateCertificates` / `--rotate-certificates`.
pub const ROTATE_CERTIFICATES: Setting = same(
    "rotateCertificates",
    FlagRef::Flag("rotate-certificates"),
    Kind::Bool,
    DefaultValue::Bool(false),
);
/// `serverTLSBootstrap` / `--rotate-server-certificates`.
pub const SERVER_TLS_BOOTSTRAP: Setting = same(
    "serverTLSBootstrap",
    FlagRef::Flag("rotate-server-certificates"),
    Kind::Bool,
    DefaultValue::Bool(false),
);
/// The `RotateKubeletServerCertificate` feature gate (beta, on by default since 1.12).
pub const ROTATE_SERVER_CERT_GATE: Setting = same(
    "featureGates.RotateKubeletServerCertificate",
    FlagRef::Gate("RotateKubeletServerCertificate"),
    Kind::Bool,
    DefaultValue::Bool(true),
);
/// `tlsCipherSuites` / `--tls-cipher-suites`.
pub const TLS_CIPHER_SUITES: Setting = same(
    "tlsCipherSuites",
    FlagRef::Flag("tls-cipher-suites"),
    Kind::List,
    DefaultValue::EmptyList,
);
/// `tlsMinVersion` / `--tls-min-version`.
pub const TLS_MIN_VERSION: Setting = same(
    "tlsMinVersion",
    FlagRef::Flag("tls-min-version"),
    Kind::Str,
    DefaultValue::Str(""),
);
/// `podPidsLimit` / `--pod-max-pids` (-1: unlimited).
pub const POD_PIDS_LIMIT: Setting = same(
    "podPidsLimit",
    FlagRef::Flag("pod-max-pids"),
    Kind::Int,
    DefaultValue::Int(-1),
);
/// `seccompDefault` / `--seccomp-default`.
pub const SECCOMP_DEFAULT: Setting = same(
    "seccompDefault",
    FlagRef::Flag("seccomp-default"),
    Kind::Bool,
    DefaultValue::Bool(false),
);
/// `protectKernelDefaults` / `--protect-kernel-defaults`.
pub const PROTECT_KERNEL_DEFAULTS: Setting = same(
    "protectKernelDefaults",
    FlagRef::Flag("protect-kernel-defaults"),
    Kind::Bool,
    DefaultValue::Bool(false),
);

/// Every setting the checks read: a document giving one of them a value of the wrong type
/// is one the kubelet refuses to load, so it cannot be what the kubelet runs with.
pub const ALL: &[Setting] = &[
    ANONYMOUS_AUTH,
    WEBHOOK_AUTHN,
    AUTHORIZATION_MODE,
    READ_ONLY_PORT,
    CLIENT_CA_FILE,
    TLS_CERT_FILE,
    TLS_PRIVATE_KEY_FILE,
    STREAMING_IDLE_TIMEOUT,
    IPTABLES_UTIL_CHAINS,
    EVENT_QPS,
    ROTATE_CERTIFICATES,
    SERVER_TLS_BOOTSTRAP,
    ROTATE_SERVER_CERT_GATE,
    TLS_CIPHER_SUITES,
    TLS_MIN_VERSION,
    POD_PIDS_LIMIT,
    SECCOMP_DEFAULT,
    PROTECT_KERNEL_DEFAULTS,
];
