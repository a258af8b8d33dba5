//! The kubelet's command line, parsed as pflag parses it: `--flag=value`, `--flag value`,
//! booleans as `--flag` or `--flag=false` (never `--flag false`), `_` read as `-`, `--`
//! ending the flags, repeats kept in order so the last one wins (or accumulates, for lists
//! and maps).

/// Boolean kubelet flags: pflag never takes the next argument as their value, so they must
/// be known to split `--flag next` correctly.
const BOOL_FLAGS: &[&str] = &[
    "add-dir-header",
    "allow-privileged",
    "alsologtostderr",
    "anonymous-auth",
    "authentication-token-webhook",
    "cgroups-per-qos",
    "containerized",
    "enable-controller-attach-detach",
    "enable-debugging-handlers",
    "enable-load-reader",
    "enable-server",
    "exit-on-lock-contention",
    "experimental-check-node-capabilities-before-mount",
    "fail-swap-on",
    "help",
    "keep-terminated-pod-volumes",
    "kernel-memcg-notification",
    "local-storage-capacity-isolation",
    "log-flush-frequency-immediate",
    "logtostderr",
    "make-iptables-util-chains",
    "one-output",
    "protect-kernel-defaults",
    "register-node",
    "register-schedulable",
    "rotate-certificates",
    "rotate-server-certificates",
    "runonce",
    "seccomp-default",
    "serialize-image-pulls",
    "skip-headers",
    "skip-log-headers",
    "version",
];

/// A parsed command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flags {
    occurrences: Vec<(String, String)>,
    /// Arguments that are not flags (the kubelet refuses to start with any).
    pub positional: Vec<String>,
    /// What pflag would have rejected.
    pub problems: Vec<String>,
}

impl Flags {
    /// Parses `args`, whose first element is the program.
    pub fn parse(args: &[String]) -> Self {
        let mut flags = Self::default();
        let mut rest = args.iter().skip(1);
        while let Some(arg) = rest.next() {
            if arg == "--" {
                flags.positional.extend(rest.by_ref().cloned());
                break;
            }
            if let Some(long) = arg.strip_prefix("--") {
                let (raw, inline) = match long.split_once('=') {
                    Some((name, value)) => (name, Some(value.to_owned())),
                    None => (long, None),
                };
                if raw.is_empty() || raw.starts_with('-') {
                    flags.problems.push(format!("bad flag syntax: {arg}"));
                    continue;
                }
                let name = raw.replace('_', "-");
                let value = match inline {
                    Some(value) => value,
                    None if BOOL_FLAGS.contains(&name.as_str()) => "true".to_owned(),
                    // pflag gives a non-boolean flag the next argument, whatever it is.
                    None => {
                        if let Some(next) = rest.next() {
                            next.clone()
                        } else {
                            flags
                                .problems
                                .push(format!("flag needs an argument: --{name}"));
                            continue;
                        }
                    }
                };
                flags.occurrences.push((name, value));
            } else if let Some(short) = arg.strip_prefix('-').filter(|s| !s.is_empty()) {
                flags.short(short, &mut rest);
            } else {
                flags.positional.push(arg.clone());
            }
        }
        flags
    }

    /// The kubelet's only shorthands: `-v` (klog verbosity, takes a value) and `-h`.
    fn short<'a>(&mut self, short: &str, rest: &mut impl Iterator<Item = &'a String>) {
        let mut chars = short.chars();
        match chars.next() {
            Some('v') => {
                let tail = chars.as_str();
                let value = match tail.strip_prefix('=') {
                    Some(v) => Some(v.to_owned()),
                    None if !tail.is_empty() => Some(tail.to_owned()),
                    None => rest.next().cloned(),
                };
                match value {
                    Some(v) => self.occurrences.push(("v".to_owned(), v)),
                    None => self.problems.push("flag needs an argument: -v".to_owned()),
                }
            }
            Some('h') => self
                .occurrences
                .push(("help".to_owned(), "true".to_owned())),
            _ => self
                .problems
                .push(format!("unknown shorthand flag: -{short}")),
        }
    }

    /// Every value given to `name`, in order.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.occurrences
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value that wins for a scalar flag: the last one.
    pub fn last<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        self.all(name).last()
    }

    /// Whether `name` was given at all.
    pub fn has(&self, name: &str) -> bool {
        self.all(name).next().is_some()
    }

    /// `--feature-gates` merged over repeats, later keys winning: `(gate, text)` pairs.
    pub fn gate(&self, gate: &str) -> Option<(String, String)> {
        let mut found = None;
        for value in self.all("feature-gates") {
            for pair in value.split(',') {
                if let Some((k, v)) = pair.split_once('=')
                    && k.trim() == gate
                {
                    found = Some((value.to_owned(), v.trim().to_owned()));
                }
            }
        }
        found
    }
}
