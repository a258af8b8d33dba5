//! A fake Kubernetes API server on loopback: `GET /api/v1/pods` list and watch, with the
//! parts of their protocol the watcher relies on: resourceVersions, a `spec.nodeName` field
//! selector, replay of history on resume, bookmarks, compaction answered with 410 (as an
//! ERROR event, the way the API server does it, or as an HTTP status), and going away
//! abruptly (every open connection is dropped with the server).

use std::{
    collections::BTreeMap,
    convert::Infallible,
    net::{Ipv4Addr, SocketAddr},
    sync::{Arc, Mutex, MutexGuard},
};

use bytes::Bytes;
use futures::{StreamExt as _, stream};
use http_body_util::{Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::{
    Request, Response, StatusCode,
    body::{Frame, Incoming},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::{
    net::{TcpListener, TcpSocket},
    sync::broadcast,
    task::{JoinHandle, JoinSet},
};
use tokio_stream::wrappers::BroadcastStream;
use tokio_util::sync::CancellationToken;

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// One request as the server saw it: was it a watch, and its decoded query parameters.
#[derive(Debug, Clone)]
pub struct Seen {
    pub watch: bool,
    pub query: BTreeMap<String, String>,
}

/// One change: its resourceVersion, watch event type and the pod after it.
#[derive(Clone)]
struct Change {
    rv: u64,
    kind: &'static str,
    pod: Value,
}

struct State {
    rv: u64,
    /// By name; the fake has one namespace's worth of pods, which is all the tests need.
    pods: BTreeMap<String, Value>,
    /// Changes after `compacted`, oldest first, replayed to a watch that resumes.
    history: Vec<Change>,
    /// A watch from a resourceVersion older than this is answered 410 Gone.
    compacted: u64,
    gone_as_status: bool,
    seen: Vec<Seen>,
    live: broadcast::Sender<Change>,
    /// Cancelled to end every open watch (a new one replaces it).
    watches: CancellationToken,
}

/// The fake server and its state; the state outlives a stop, like etcd behind an API
/// server that restarts.
pub struct FakeApi {
    state: Arc<Mutex<State>>,
    addr: SocketAddr,
    server: Option<JoinHandle<()>>,
}

impl FakeApi {
    pub fn start() -> Self {
        let state = Arc::new(Mutex::new(State {
            rv: 100,
            pods: BTreeMap::new(),
            history: Vec::new(),
            compacted: 0,
            gone_as_status: false,
            seen: Vec::new(),
            live: broadcast::channel(64).0,
            watches: CancellationToken::new(),
        }));
        let listener = bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
        let addr = listener.local_addr().expect("a bound address");
        let server = Some(tokio::spawn(serve(listener, state.clone())));
        Self {
            state,
            addr,
            server,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A client for this server, as `kube::Config::new` makes it (plain HTTP, no auth).
    pub fn client(&self) -> kube::Client {
        let url = format!("http://{}", self.addr).parse().expect("a URL");
        kube::Client::try_from(kube::Config::new(url)).expect("a client")
    }

    /// Creates or replaces a pod (by name) and tells the watches.
    pub fn apply(&self, mut pod: Value) {
        let mut state = self.lock();
        let name = pod["metadata"]["name"].as_str().expect("a name").to_owned();
        let kind = if state.pods.contains_key(&name) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        let rv = state.bump();
        pod["metadata"]["resourceVersion"] = rv.to_string().into();
        state.pods.insert(name, pod.clone());
        state.record(Change { rv, kind, pod });
    }

    pub fn delete(&self, name: &str) {
        let mut state = self.lock();
        let mut pod = state.pods.remove(name).expect("the pod exists");
        let rv = state.bump();
        pod["metadata"]["resourceVersion"] = rv.to_string().into();
        state.record(Change {
            rv,
            kind: "DELETED",
            pod,
        });
    }

    /// Deletes a pod while no watch sees it: the history is compacted past the deletion
    /// and open watches end, so a watcher that resumes is told its resourceVersion is gone
    /// and must relist to learn of it.
    pub fn delete_unseen(&self, name: &str) {
        let mut state = self.lock();
        state.pods.remove(name).expect("the pod exists");
        state.compacted = state.bump();
        state.history.clear();
        state.watches.cancel();
        state.watches = CancellationToken::new();
    }

    /// Answers an expired watch with HTTP 410 rather than an ERROR event.
    pub fn set_gone_as_status(&self, yes: bool) {
        self.lock().gone_as_status = yes;
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.lock().seen.clone()
    }

    /// Goes away at once: the listener and every connection are dropped.
    pub async fn stop(&mut self) {
        let server = self.server.take().expect("running");
        server.abort();
        let _ = server.await;
    }

    /// Comes back on the same address, with the same state.
    pub fn restart(&mut self) {
        assert!(self.server.is_none(), "stop it first");
        let listener = bind(self.addr);
        self.server = Some(tokio::spawn(serve(listener, self.state.clone())));
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("fake API state")
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        if let Some(server) = &self.server {
            server.abort();
        }
    }
}

impl State {
    fn bump(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    fn record(&mut self, change: Change) {
        self.history.push(change.clone());
        // No watch open is fine: the change is in the history.
        let _ = self.live.send(change);
    }
}

/// Binds with `SO_REUSEADDR`, so a restarted server gets its port back while the old
/// connections sit in `TIME_WAIT`.
pub fn bind(addr: SocketAddr) -> TcpListener {
    let socket = TcpSocket::new_v4().expect("a socket");
    socket.set_reuseaddr(true).expect("SO_REUSEADDR");
    socket.bind(addr).expect("bind on loopback");
    socket.listen(64).expect("listen")
}

async fn serve(listener: TcpListener, state: Arc<Mutex<State>>) {
    // Owned here, so aborting the server drops every connection with it.
    let mut connections = JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let state = state.clone();
        connections.spawn(async move {
            let service = service_fn(move |req| {
                let response = respond(&req, &state);
                async move { Ok::<_, Infallible>(response) }
            });
            // A client that hangs up mid-watch is not the test's business.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
        while connections.try_join_next().is_some() {}
    }
}

fn respond(req: &Request<Incoming>, state: &Mutex<State>) -> Response<Body> {
    let query = decode_query(req.uri().query().unwrap_or_default());
    let watch = query.get("watch").is_some_and(|w| w == "true");
    let mut state = state.lock().expect("fake API state");
    state.seen.push(Seen {
        watch,
        query: query.clone(),
    });
    if req.uri().path() != "/api/v1/pods" {
        return status(StatusCode::NOT_FOUND, "NotFound", "only pods are served");
    }
    let selector = query.get("fieldSelector").map(String::as_str);
    let Some(node) = selector.and_then(|s| s.strip_prefix("spec.nodeName=")) else {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "fieldSelector spec.nodeName=<node> is required",
        );
    };
    let on_node = |pod: &Value| pod["spec"]["nodeName"] == node;
    if !watch {
        let items: Vec<&Value> = state.pods.values().filter(|p| on_node(p)).collect();
        let list = json!({
            "apiVersion": "v1", "kind": "PodList",
            "metadata": {"resourceVersion": state.rv.to_string()},
            "items": items,
        });
        return json_response(StatusCode::OK, &list);
    }
    let from: u64 = query
        .get("resourceVersion")
        .and_then(|rv| rv.parse().ok())
        .unwrap_or(state.rv);
    if from < state.compacted {
        let message = format!("too old resource version: {from} ({})", state.compacted);
        if state.gone_as_status {
            return status(StatusCode::GONE, "Expired", &message);
        }
        let error = json!({"type": "ERROR", "object": status_body(410, "Expired", &message)});
        return stream_response(vec![line(&error)], stream::empty().boxed());
    }
    let mut lines: Vec<Bytes> = state
        .history
        .iter()
        .filter(|c| c.rv > from && on_node(&c.pod))
        .map(|c| event(c.kind, &c.pod))
        .collect();
    if query
        .get("allowWatchBookmarks")
        .is_some_and(|b| b == "true")
    {
        let bookmark = json!({"type": "BOOKMARK", "object": {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"resourceVersion": state.rv.to_string()},
        }});
        lines.push(line(&bookmark));
    }
    let replayed = state.rv;
    let node = node.to_owned();
    let live = BroadcastStream::new(state.live.subscribe())
        .filter_map(move |change| {
            let change = change
                .ok()
                .filter(|c| c.rv > replayed && c.pod["spec"]["nodeName"] == node.as_str());
            async move { change.map(|c| event(c.kind, &c.pod)) }
        })
        .take_until(state.watches.clone().cancelled_owned())
        .boxed();
    stream_response(lines, live)
}

fn event(kind: &str, pod: &Value) -> Bytes {
    line(&json!({"type": kind, "object": pod}))
}

fn line(value: &Value) -> Bytes {
    let mut text = value.to_string();
    text.push('\n');
    Bytes::from(text)
}

/// A chunked body: `first`, then whatever `rest` yields until it ends.
fn stream_response(
    first: Vec<Bytes>,
    rest: futures::stream::BoxStream<'static, Bytes>,
) -> Response<Body> {
    let body = stream::iter(first)
        .chain(rest)
        .map(|bytes| Ok::<_, Infallible>(Frame::data(bytes)));
    Response::builder()
        .header("content-type", "application/json")
        .body(UnsyncBoxBody::new(StreamBody::new(body)))
        .expect("a response")
}

fn json_response(code: StatusCode, value: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(UnsyncBoxBody::new(Full::new(Bytes::from(
            value.to_string(),
        ))))
        .expect("a response")
}

fn status_body(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Status", "metadata": {},
        "status": "Failure", "reason": reason, "message": message, "code": code,
    })
}

fn status(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    json_response(code, &status_body(code.as_u16(), reason, message))
}

/// `application/x-www-form-urlencoded` query → pairs (the last of a repeated key wins).
fn decode_query(query: &str) -> BTreeMap<String, String> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(key), decode(value))
        })
        .collect()
}

fn decode(text: &str) -> String {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex: String = bytes.by_ref().take(2).map(char::from).collect();
                out.push(u8::from_str_radix(&hex, 16).expect("a %XX escape"));
            }
            _ => out.push(b),
        }
    }
    String::from_utf8(out).expect("UTF-8")
}
