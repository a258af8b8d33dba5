//! The exporter end to end: a real store and feed, a file, and a webhook on 127.0.0.1.

use std::{
    net::SocketAddr,
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{Response, StatusCode, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use jiff::{SignedDuration, Timestamp};
use nodeward_proto::model::{Category, Finding, FindingRecord, Severity};
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use super::{ExportConfig, ExportStats, Exporter, Format, WebhookConfig, config::BackoffConfig};
use crate::{
    feed::Feed,
    store::{Origin, Store},
};

const DEADLINE: Duration = Duration::from_secs(10);

/// A store and feed in a temporary directory, and findings to put in them.
struct Collector {
    dir: tempfile::TempDir,
    feed: Arc<Feed>,
    next_seq: u64,
}

impl Collector {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("collector.db"))
            .await
            .unwrap();
        Self {
            dir,
            feed: Arc::new(Feed::new(Arc::new(store))),
            next_seq: 1,
        }
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    /// Stores `n` findings from node-a, alternating runtime and posture.
    async fn ingest(&mut self, n: u64) {
        let origin = Origin {
            node_name: "node-a".into(),
            stream_id: "s1".into(),
            boot_id: "boot-1".into(),
            agent_version: "0.1.0".into(),
            cluster: String::new(),
        };
        let findings = (0..n)
            .map(|i| {
                let seq = self.next_seq + i;
                let category = if seq.is_multiple_of(2) {
                    Category::Posture
                } else {
                    Category::Runtime
                };
                Finding {
                    seq,
                    category,
                    ..Finding::new(
                        format!("rule-{seq}"),
                        Severity::High,
                        "summary",
                        Timestamp::now(),
                    )
                }
            })
            .collect();
        self.next_seq += n;
        let stored = self.feed.ingest(&origin, findings).await.unwrap();
        assert_eq!(stored, usize::try_from(n).unwrap());
    }

    fn start(&self, config: &ExportConfig) -> Running {
        let exporter = Exporter::new(config)
            .expect("a valid export config")
            .start_after(0);
        let stats = exporter.stats();
        let cancel = CancellationToken::new();
        let task = exporter.spawn(self.feed.clone(), cancel.clone());
        Running {
            stats,
            cancel,
            task,
        }
    }
}

struct Running {
    stats: Arc<ExportStats>,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl Running {
    async fn stop(self) {
        self.cancel.cancel();
        tokio::time::timeout(DEADLINE, self.task)
            .await
            .expect("the exporter stops when cancelled")
            .expect("the exporter does not panic");
    }
}

fn config(format: Format) -> ExportConfig {
    ExportConfig {
        format,
        file: None,
        webhook: None,
        batch_size: 100,
        cursor_file: None,
    }
}

fn webhook(addr: SocketAddr, max_retries: u32) -> WebhookConfig {
    WebhookConfig {
        url: format!("http://{addr}/findings"),
        headers: [("authorization".to_owned(), "Bearer t0ken".to_owned())].into(),
        timeout: SignedDuration::from_secs(5),
        max_retries,
        backoff: BackoffConfig {
            initial: SignedDuration::from_millis(5),
            max: SignedDuration::from_millis(20),
        },
        batch: false,
    }
}

/// Polls `done` until it holds, panicking with `what` at the deadline.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

/// A webhook endpoint that answers 503 to its first `failures` requests, then 200.
#[derive(Clone, Default)]
struct Hook {
    failures: usize,
    requests: Arc<AtomicUsize>,
    accepted: Arc<Mutex<Vec<Bytes>>>,
}

impl Hook {
    async fn serve(failures: usize) -> (Self, SocketAddr) {
        let hook = Self {
            failures,
            ..Self::default()
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = hook.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let hook = server.clone();
                tokio::spawn(async move {
                    let service =
                        service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                            let hook = hook.clone();
                            async move {
                                let authorized = request
                                    .headers()
                                    .get("authorization")
                                    .is_some_and(|v| v == "Bearer t0ken");
                                let body = request.into_body().collect().await?.to_bytes();
                                let n = hook.requests.fetch_add(1, Ordering::SeqCst);
                                let status = if !authorized {
                                    StatusCode::UNAUTHORIZED
                                } else if n < hook.failures {
                                    StatusCode::SERVICE_UNAVAILABLE
                                } else {
                                    hook.accepted.lock().unwrap().push(body);
                                    StatusCode::OK
                                };
                                let mut response = Response::new(Full::new(Bytes::new()));
                                *response.status_mut() = status;
                                Ok::<_, hyper::Error>(response)
                            }
                        });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (hook, addr)
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    fn accepted(&self) -> Vec<serde_json::Value> {
        self.accepted
            .lock()
            .unwrap()
            .iter()
            .map(|body| serde_json::from_slice(body).unwrap())
            .collect()
    }
}

#[tokio::test]
async fn file_gets_one_json_line_per_finding_in_both_formats() {
    let mut collector = Collector::new().await;
    for format in [Format::Json, Format::Ocsf] {
        let path = collector.path(&format!("{format:?}.jsonl"));
        let running = collector.start(&ExportConfig {
            file: Some(path.clone()),
            ..config(format)
        });
        if format == Format::Json {
            collector.ingest(3).await;
        }
        eventually("three lines", || lines(&path).len() == 3).await;
        let stats = running.stats.clone();
        running.stop().await;
        assert_eq!((stats.exported(), stats.failures()), (3, 0));
        let lines = lines(&path);
        match format {
            Format::Json => {
                let ids: Vec<u64> = lines
                    .into_iter()
                    .map(|line| serde_json::from_value::<FindingRecord>(line).unwrap().id)
                    .collect();
                assert_eq!(ids, [1, 2, 3]);
            }
            Format::Ocsf => {
                let classes: Vec<_> = lines
                    .iter()
                    .map(|l| (l["metadata"]["uid"].clone(), l["class_uid"].clone()))
                    .collect();
                assert_eq!(
                    classes,
                    [
                        ("1".into(), 2004.into()),
                        ("2".into(), 2003.into()),
                        ("3".into(), 2004.into())
                    ]
                );
            }
        }
    }
}

#[tokio::test]
async fn webhook_retries_until_the_endpoint_accepts() {
    let mut collector = Collector::new().await;
    let (hook, addr) = Hook::serve(2).await;
    let cursor = collector.path("cursor");
    let running = collector.start(&ExportConfig {
        webhook: Some(webhook(addr, 5)),
        cursor_file: Some(cursor.clone()),
        ..config(Format::Ocsf)
    });
    collector.ingest(1).await;
    eventually("the finding to be accepted", || {
        running.stats.exported() == 1
    })
    .await;
    let stats = running.stats.clone();
    running.stop().await;
    assert_eq!(hook.requests(), 3, "two refusals, then the one accepted");
    let accepted = hook.accepted();
    assert_eq!(accepted.len(), 1, "delivered once");
    assert_eq!(accepted[0]["metadata"]["uid"], "1");
    assert_eq!(stats.failures(), 0);
    assert_eq!(std::fs::read_to_string(cursor).unwrap(), "1\n");
}

#[tokio::test]
async fn webhook_gives_up_after_max_retries_and_counts_it() {
    let mut collector = Collector::new().await;
    let (hook, addr) = Hook::serve(usize::MAX).await;
    let running = collector.start(&ExportConfig {
        webhook: Some(webhook(addr, 2)),
        ..config(Format::Json)
    });
    collector.ingest(1).await;
    eventually("the finding to be given up", || {
        running.stats.failures() == 1
    })
    .await;
    let stats = running.stats.clone();
    running.stop().await;
    assert_eq!(hook.requests(), 3, "the first attempt and two retries");
    assert_eq!(stats.exported(), 0);
    assert!(hook.accepted().is_empty());
}

#[tokio::test]
async fn webhook_batch_mode_posts_one_array() {
    let mut collector = Collector::new().await;
    let (hook, addr) = Hook::serve(0).await;
    collector.ingest(3).await;
    let running = collector.start(&ExportConfig {
        webhook: Some(WebhookConfig {
            batch: true,
            ..webhook(addr, 0)
        }),
        ..config(Format::Json)
    });
    eventually("the batch to be accepted", || running.stats.exported() == 3).await;
    running.stop().await;
    let accepted = hook.accepted();
    assert_eq!(accepted.len(), 1, "{accepted:?}");
    let ids: Vec<_> = accepted[0]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].clone())
        .collect();
    assert_eq!(ids, [1, 2, 3]);
}

#[tokio::test]
async fn a_saved_cursor_resumes_the_export() {
    let mut collector = Collector::new().await;
    collector.ingest(3).await;
    let (cursor, out) = (collector.path("cursor"), collector.path("out.jsonl"));
    std::fs::write(&cursor, "2\n").unwrap();
    let exporter = Exporter::new(&ExportConfig {
        file: Some(out.clone()),
        cursor_file: Some(cursor.clone()),
        ..config(Format::Json)
    })
    .unwrap();
    let cancel = CancellationToken::new();
    let task = exporter.spawn(collector.feed.clone(), cancel.clone());
    eventually("finding 3", || !lines(&out).is_empty()).await;
    collector.ingest(1).await;
    eventually("finding 4", || lines(&out).len() == 2).await;
    cancel.cancel();
    task.await.unwrap();
    let ids: Vec<_> = lines(&out).iter().map(|r| r["id"].clone()).collect();
    assert_eq!(ids, [3, 4]);
    assert_eq!(std::fs::read_to_string(cursor).unwrap(), "4\n");
}

#[test]
fn a_garbled_cursor_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cursor = dir.path().join("cursor");
    std::fs::write(&cursor, "yesterday").unwrap();
    let err = Exporter::new(&ExportConfig {
        file: Some(dir.path().join("out")),
        cursor_file: Some(cursor),
        ..config(Format::Json)
    })
    .err()
    .expect("refused");
    assert!(err.to_string().contains("yesterday"), "{err}");
}
