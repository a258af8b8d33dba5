//! The monitor against a fixture node and a fake kubelet, found through a private `proc`
//! under the host root that holds only this test's processes.

use std::{fs, time::Duration};

use jiff::Timestamp;
use nodeward_proto::model::{Category, CheckStatus, Severity};

use super::fixture::{
    ANONYMOUS, CONFIG, FakeKubelet, HOUR, Node, Running, check, fast, kubelet_config,
};
use crate::posture::{
    PostureMonitor,
    config::PostureConfig,
    regressions::{REGRESSION, regressions},
};

#[tokio::test]
async fn an_edited_kubelet_config_is_rescanned_through_inotify_and_regresses() {
    let node = Node::new();
    node.write(CONFIG, &kubelet_config(false));
    let kubelet = FakeKubelet::start(&[node.config_flag()]);
    node.show(&kubelet);
    // The kubelet poll is slow and the timer off: only inotify can notice the edit.
    let mut running = Running::start(
        PostureMonitor::new(node.config())
            .process_poll(Duration::from_secs(HOUR))
            .first_generation(7),
    );
    let first = running.next("first scan").await;
    assert_eq!(first.generation, 7);
    assert_eq!(first.imds_mode, "enforce");
    assert_eq!(first.scan_error, None);
    assert_eq!(check(&first, ANONYMOUS).status, CheckStatus::Pass);

    node.replace(CONFIG, &kubelet_config(true));
    let second = running.next("config replaced by rename").await;
    assert_eq!(second.generation, 8);
    let anonymous = check(&second, ANONYMOUS);
    assert_eq!(anonymous.status, CheckStatus::Fail, "{anonymous:?}");
    assert!(anonymous.source.contains("config.json"), "{anonymous:?}");

    let findings = regressions(&first, &second, Timestamp::now());
    let finding = findings
        .iter()
        .find(|f| f.summary.starts_with(ANONYMOUS))
        .unwrap_or_else(|| panic!("no regression of {ANONYMOUS}: {findings:?}"));
    assert_eq!(finding.rule_id, REGRESSION);
    assert_eq!(finding.category, Category::Posture);
    assert_eq!(finding.severity, Severity::High);
    assert!(
        finding.summary.contains("cis-eks-1.8.0:3.2.1"),
        "{}",
        finding.summary
    );
    assert!(
        finding.summary.contains(&anonymous.source),
        "{}",
        finding.summary
    );
    assert!(finding.description.contains(&anonymous.remediation));

    // Written in place this time (another inode event than a rename).
    node.write(CONFIG, &kubelet_config(false));
    let third = running.next("config rewritten in place").await;
    assert_eq!(check(&third, ANONYMOUS).status, CheckStatus::Pass);
    assert!(regressions(&second, &third, Timestamp::now()).is_empty());
    running.stop().await;
    drop(kubelet);
}

#[tokio::test]
async fn a_config_file_that_appears_later_is_noticed() {
    let node = Node::new();
    fs::create_dir_all(node.path("etc/kubernetes/kubelet")).expect("mkdir");
    let kubelet = FakeKubelet::start(&[node.config_flag()]);
    node.show(&kubelet);
    let mut running = Running::start(fast(&node).process_poll(Duration::from_secs(HOUR)));
    let first = running.next("first scan").await;
    assert_eq!(first.scan_error, None, "a missing file is not a scan error");
    assert_eq!(check(&first, ANONYMOUS).status, CheckStatus::Error);

    node.write(CONFIG, &kubelet_config(true));
    let second = running.next("config file created").await;
    assert_eq!(check(&second, ANONYMOUS).status, CheckStatus::Fail);
    running.stop().await;
    drop(kubelet);
}

#[tokio::test]
async fn a_restarted_kubelet_with_new_flags_is_rescanned() {
    let node = Node::new();
    node.write(CONFIG, &kubelet_config(false));
    let before = FakeKubelet::start(&[node.config_flag()]);
    node.show(&before);
    let mut running = Running::start(fast(&node));
    let first = running.next("first scan").await;
    assert_eq!(check(&first, ANONYMOUS).status, CheckStatus::Pass);

    // Flags win over the config file.
    let after = FakeKubelet::start(&[node.config_flag(), "--anonymous-auth=true".to_owned()]);
    node.hide(&before);
    node.show(&after);
    drop(before);
    let second = running.next_judged("kubelet restarted").await;
    let anonymous = check(&second, ANONYMOUS);
    assert_eq!(anonymous.status, CheckStatus::Fail, "{anonymous:?}");
    assert_eq!(anonymous.source, "flag --anonymous-auth");
    running.stop().await;
    drop(after);
}

#[tokio::test]
async fn no_kubelet_is_a_scan_error_and_the_monitor_keeps_trying() {
    let node = Node::new();
    node.write(CONFIG, &kubelet_config(false));
    let mut running = Running::start(fast(&node));
    let first = running.next("first scan").await;
    assert!(first.checks.is_empty());
    let error = first.scan_error.as_deref().expect("scan error");
    assert!(error.contains("no kubelet process"), "{error}");
    // Rescanning the same absence publishes nothing new.
    running
        .nothing_for(Duration::from_millis(800), "still no kubelet")
        .await;

    let kubelet = FakeKubelet::start(&[node.config_flag()]);
    node.show(&kubelet);
    let second = running.next("kubelet appeared").await;
    assert_eq!(second.generation, first.generation + 1);
    assert_eq!(second.scan_error, None);
    assert_eq!(check(&second, ANONYMOUS).status, CheckStatus::Pass);
    running.stop().await;
    drop(kubelet);
}

#[tokio::test]
async fn the_timer_rescans_when_nothing_else_does() {
    let node = Node::new();
    node.write(CONFIG, &kubelet_config(false));
    let config = PostureConfig {
        interval_seconds: 1,
        ..node.config()
    };
    let mut running =
        Running::start(PostureMonitor::new(config).process_poll(Duration::from_secs(HOUR)));
    assert!(running.next("first scan").await.scan_error.is_some());
    let kubelet = FakeKubelet::start(&[node.config_flag()]);
    node.show(&kubelet);
    let second = running.next("timer").await;
    assert_eq!(second.scan_error, None);
    running.stop().await;
    drop(kubelet);
}

#[tokio::test]
async fn an_unchanged_rescan_publishes_nothing_and_a_new_imds_mode_republishes() {
    let node = Node::new();
    node.write(CONFIG, &kubelet_config(false));
    let kubelet = FakeKubelet::start(&[node.config_flag()]);
    node.show(&kubelet);
    let mut running = Running::start(fast(&node));
    let first = running.next("first scan").await;
    // Same content, new inode: a rescan with the same verdicts.
    node.replace(CONFIG, &kubelet_config(false));
    running
        .nothing_for(Duration::from_millis(1500), "same verdicts")
        .await;

    running.mode.send_replace("audit".to_owned());
    let second = running.next("imds mode changed").await;
    assert_eq!(second.imds_mode, "audit");
    assert_eq!(second.generation, first.generation + 1);
    assert_eq!(second.checks, first.checks);
    running.stop().await;
    drop(kubelet);
}

#[tokio::test]
async fn disabled_publishes_nothing_and_waits_for_shutdown() {
    let node = Node::new();
    let config = PostureConfig {
        enabled: false,
        ..node.config()
    };
    let mut running = Running::start(PostureMonitor::new(config));
    running
        .nothing_for(Duration::from_millis(300), "disabled")
        .await;
    assert!(running.rx.borrow().is_none());
    running.stop().await;
}
