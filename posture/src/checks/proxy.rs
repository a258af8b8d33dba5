//! kube-proxy: its kubeconfig's mode and owner, and where it serves metrics.
//!
//! When kube-proxy runs with `--config`, the file decides: kube-proxy loads it over the
//! flag-built configuration, so flags other than a few overrides do not count
//! (<https://github.com/kubernetes/kubernetes/blob/master/cmd/kube-proxy/app/options.go>).

use std::path::PathBuf;

use serde_json::Value as Json;

use super::judge::{Rule, Target, judge};
use super::outcome::Outcome;
use super::{CheckDef, Context, Group, ProxyView};
use crate::config::{DocumentKind, Flags, Lookup, lookup, parse_document};
use crate::fsview::{FsRoot, MAX_CONFIG_BYTES};

/// kube-proxy's default `metricsBindAddress`.
const DEFAULT_METRICS_BIND: &str = "127.0.0.1:10249";

pub(super) const CHECKS: &[CheckDef] = &[
    CheckDef {
        id: "kube-proxy-kubeconfig-permissions",
        title: "kube-proxy kubeconfig is 600 or stricter",
        group: Group::KubeProxy,
        benchmarks: &["cis-1.12:4.1.3"],
        expected: "mode 600 or more restrictive",
        remediation: "chmod 600 kube-proxy's kubeconfig (--kubeconfig or clientConnection.kubeconfig)",
        run: kubeconfig_mode,
    },
    CheckDef {
        id: "kube-proxy-kubeconfig-ownership",
        title: "kube-proxy kubeconfig is owned by root:root",
        group: Group::KubeProxy,
        benchmarks: &["cis-1.12:4.1.4"],
        expected: "root:root",
        remediation: "chown root:root kube-proxy's kubeconfig (--kubeconfig or clientConnection.kubeconfig)",
        run: kubeconfig_owner,
    },
    CheckDef {
        id: "kube-proxy-metrics-bind-address",
        title: "kube-proxy serves metrics on localhost only",
        group: Group::KubeProxy,
        benchmarks: &["cis-1.12:4.3.1"],
        expected: "metricsBindAddress on 127.0.0.1 or ::1 (default 127.0.0.1:10249)",
        remediation: "Set metricsBindAddress: 127.0.0.1:10249 in kube-proxy's config (or --metrics-bind-address) and restart kube-proxy",
        run: metrics_bind,
    },
];

/// kube-proxy's command line and config file, as far as they could be read.
struct Proxy<'a> {
    fs: &'a FsRoot,
    flags: Flags,
    /// `--config`: its path and the parsed document, or why it could not be had.
    config: Option<(PathBuf, Result<Json, String>)>,
}

fn load<'a>(ctx: &Context<'a>) -> Result<Proxy<'a>, Outcome> {
    let info = match ctx.proxy {
        ProxyView::Found(info) => info,
        ProxyView::NotFound(why) => return Err(Outcome::warn(why.clone(), "processes")),
        ProxyView::NotLooked => {
            return Err(Outcome::warn(
                "not examined: an offline scan describes the kubelet only",
                "--kubelet-args",
            ));
        }
    };
    let flags = Flags::parse(&info.args);
    let config = flags.last("config").filter(|p| !p.is_empty()).map(|p| {
        let path = PathBuf::from(p);
        let doc = ctx
            .read_in(&info.fs, &path, MAX_CONFIG_BYTES)
            .map_err(|e| e.to_string())
            .and_then(|(r, text)| {
                parse_document(&text, DocumentKind::KubeProxy)
                    .map_err(|e| format!("{}: {e}", r.path.display()))
            });
        (path, doc)
    });
    Ok(Proxy {
        fs: &info.fs,
        flags,
        config,
    })
}

impl Proxy<'_> {
    /// A string setting: from the config file when there is one, else the flag.
    fn string(&self, key: &str, flag: &str) -> Result<Option<(String, String)>, Outcome> {
        if let Some((path, doc)) = &self.config {
            let source = format!("config {}", path.display());
            let doc = doc
                .as_ref()
                .map_err(|e| Outcome::error(e.clone(), source.clone()))?;
            return match lookup(doc, key, false) {
                Lookup::Found(Json::String(s)) if !s.is_empty() => Ok(Some((s.clone(), source))),
                Lookup::Found(Json::String(_)) | Lookup::Absent | Lookup::Deleted => Ok(None),
                Lookup::Found(other) => Err(Outcome::error(
                    format!("{key}: expected a string, found {other}"),
                    source,
                )),
                Lookup::NotAMapping(prefix) => {
                    Err(Outcome::error(format!("{prefix} is not a mapping"), source))
                }
            };
        }
        Ok(self
            .flags
            .last(flag)
            .filter(|v| !v.is_empty())
            .map(|v| (v.to_owned(), format!("flag --{flag}"))))
    }

    fn kubeconfig(&self) -> Result<Option<Target>, Outcome> {
        // --kubeconfig is one of the flags kube-proxy still honours over its config file.
        if let Some(path) = self.flags.last("kubeconfig").filter(|p| !p.is_empty()) {
            return Ok(Some(Target::new(path, "kube-proxy flag --kubeconfig")));
        }
        Ok(self
            .string("clientConnection.kubeconfig", "kubeconfig")?
            .map(|(path, source)| {
                // Relative paths in kube-proxy's config are relative to its working directory.
                Target::new(PathBuf::from(path), format!("kube-proxy {source}"))
            }))
    }
}

fn kubeconfig_judged(ctx: &Context, rule: Rule) -> Outcome {
    let proxy = match load(ctx) {
        Ok(p) => p,
        Err(e) => return e,
    };
    match proxy.kubeconfig() {
        Ok(Some(target)) => judge(ctx, proxy.fs, &[target], rule),
        Ok(None) => Outcome::pass(
            "no kubeconfig: kube-proxy uses its in-cluster service account token",
            "kube-proxy",
        ),
        Err(e) => e,
    }
}

fn kubeconfig_mode(ctx: &Context) -> Outcome {
    kubeconfig_judged(ctx, Rule::ModeWithin(0o600))
}

fn kubeconfig_owner(ctx: &Context) -> Outcome {
    kubeconfig_judged(ctx, Rule::RootOwned)
}

fn metrics_bind(ctx: &Context) -> Outcome {
    let proxy = match load(ctx) {
        Ok(p) => p,
        Err(e) => return e,
    };
    let (address, source) = match proxy.string("metricsBindAddress", "metrics-bind-address") {
        Ok(Some(found)) => found,
        Ok(None) => (
            format!("{DEFAULT_METRICS_BIND} (default)"),
            "default".to_owned(),
        ),
        Err(e) => return e,
    };
    Outcome::judge(
        is_loopback(host_of(address.split(' ').next().unwrap_or_default())),
        address.clone(),
        source,
    )
}

/// The host of `host:port`, `[v6]:port`, or a bare host.
pub(crate) fn host_of(address: &str) -> &str {
    if let Some(rest) = address.strip_prefix('[') {
        return rest.split(']').next().unwrap_or_default();
    }
    match address.rsplit_once(':') {
        // A bare IPv6 address has more than one colon.
        Some((host, _)) if !host.contains(':') => host,
        Some(_) | None => address,
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::{host_of, is_loopback};

    #[test]
    fn bind_addresses_split_like_go() {
        let cases = [
            ("127.0.0.1:10249", "127.0.0.1", true),
            ("0.0.0.0:10249", "0.0.0.0", false),
            ("[::1]:10249", "::1", true),
            ("::", "::", false),
            ("localhost:1", "localhost", true),
            ("10.0.0.5", "10.0.0.5", false),
        ];
        for (address, host, loopback) in cases {
            assert_eq!(host_of(address), host, "{address}");
            assert_eq!(is_loopback(host_of(address)), loopback, "{address}");
        }
    }
}
