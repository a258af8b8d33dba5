//! A fake Kubernetes API server on loopback for the agent's clients (the pod watcher, the
//! policy watcher, the startup taint), speaking the parts of the protocol they rely on:
//!
//! - list and watch of a collection (`/api/v1/pods`, `/api/v1/nodes`, the cluster-scoped
//!   `nodehardeningpolicies`), with resourceVersions, field selectors on any field
//!   (`spec.nodeName=...`, `metadata.name=...`), replay of history on resume, bookmarks,
//!   and compaction answered with 410 (as an ERROR event, the way the API server does it,
//!   or as an HTTP status);
//! - `GET` of one object, and `PATCH` of one: JSON patch (`test` and `replace`, all or
//!   nothing, a failed `test` is 422) on the object, JSON merge patch on its `status`;
//! - scripted trouble: conflicts (409), failing GETs (503), a change made by "someone
//!   else" right after a GET, and going away abruptly (every open connection is dropped).
//!
//! Every change made through the API or by the test is a watch event. The state outlives
//! a stop, like etcd behind an API server that restarts.

use std::{
    collections::BTreeMap,
    convert::Infallible,
    net::{Ipv4Addr, SocketAddr},
    sync::{Arc, Mutex, MutexGuard},
};

use bytes::Bytes;
use futures::{StreamExt as _, stream};
use http_body_util::{BodyExt as _, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::{
    Method, Request, Response, StatusCode, body::Frame, server::conn::http1, service::service_fn,
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

pub const PODS: &str = "/api/v1/pods";
pub const NODES: &str = "/api/v1/nodes";
pub const POLICIES: &str = "/apis/nodeward.io/v1alpha1/nodehardeningpolicies";
const COLLECTIONS: [&str; 3] = [PODS, NODES, POLICIES];

/// `apiVersion` and `kind` of a collection's objects.
fn type_meta(collection: &str) -> (&'static str, &'static str) {
    match collection {
        PODS => ("v1", "Pod"),
        NODES => ("v1", "Node"),
        _ => ("nodeward.io/v1alpha1", "NodeHardeningPolicy"),
    }
}

/// One request as the server saw it, with the status it answered.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub watch: bool,
    pub content_type: Option<String>,
    pub body: Value,
    pub status: u16,
}

/// One change: its resourceVersion, watch event type and the object after it.
#[derive(Clone)]
struct Change {
    rv: u64,
    collection: &'static str,
    kind: &'static str,
    object: Value,
}

type Edit = Box<dyn FnOnce(&mut Value) + Send>;

struct State {
    rv: u64,
    /// Collection path → objects by name.
    objects: BTreeMap<&'static str, BTreeMap<String, Value>>,
    /// Changes after `compacted`, oldest first, replayed to a watch that resumes.
    history: Vec<Change>,
    /// A watch from a resourceVersion older than this is answered 410 Gone.
    compacted: u64,
    gone_as_status: bool,
    seen: Vec<Seen>,
    live: broadcast::Sender<Change>,
    /// Cancelled to end every open watch (a new one replaces it).
    watches: CancellationToken,
    conflicts: usize,
    failing_gets: usize,
    after_get: Option<Edit>,
}

pub struct FakeApi {
    state: Arc<Mutex<State>>,
    addr: SocketAddr,
    server: Option<JoinHandle<()>>,
}

impl FakeApi {
    pub fn start() -> Self {
        let state = Arc::new(Mutex::new(State {
            rv: 100,
            objects: BTreeMap::new(),
            history: Vec::new(),
            compacted: 0,
            gone_as_status: false,
            seen: Vec::new(),
            live: broadcast::channel(64).0,
            watches: CancellationToken::new(),
            conflicts: 0,
            failing_gets: 0,
            after_get: None,
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

    /// Creates or replaces an object of `collection` (by name) and tells the watches. An
    /// object whose spec changed gets the next `metadata.generation`, and one given
    /// without a status keeps the stored one, as the API server does.
    pub fn apply(&self, collection: &'static str, mut object: Value) {
        let mut state = self.lock();
        let name = object["metadata"]["name"]
            .as_str()
            .expect("a name")
            .to_owned();
        let old = state
            .objects
            .get(collection)
            .and_then(|c| c.get(&name))
            .cloned();
        let generation = match &old {
            Some(old) if old["spec"] == object["spec"] => old["metadata"]["generation"].clone(),
            Some(old) => (old["metadata"]["generation"].as_i64().unwrap_or(0) + 1).into(),
            None => 1.into(),
        };
        object["metadata"]["generation"] = generation;
        if let Some(old) = &old
            && object.get("status").is_none()
            && let Some(status) = old.get("status")
        {
            object["status"] = status.clone();
        }
        let kind = if old.is_some() { "MODIFIED" } else { "ADDED" };
        state.store(collection, kind, object);
    }

    pub fn delete(&self, collection: &'static str, name: &str) {
        let mut state = self.lock();
        let mut object = state
            .objects
            .get_mut(collection)
            .and_then(|c| c.remove(name))
            .expect("the object exists");
        let rv = state.bump();
        object["metadata"]["resourceVersion"] = rv.to_string().into();
        state.record(Change {
            rv,
            collection,
            kind: "DELETED",
            object,
        });
    }

    /// Deletes an object while no watch sees it: the history is compacted past the
    /// deletion and open watches end, so a watcher that resumes is told its
    /// resourceVersion is gone and must relist to learn of it.
    pub fn delete_unseen(&self, collection: &'static str, name: &str) {
        let mut state = self.lock();
        state
            .objects
            .get_mut(collection)
            .and_then(|c| c.remove(name))
            .expect("the object exists");
        state.compacted = state.bump();
        state.history.clear();
        state.watches.cancel();
        state.watches = CancellationToken::new();
    }

    pub fn get(&self, collection: &'static str, name: &str) -> Option<Value> {
        self.lock().object(collection, name).cloned()
    }

    /// Answers an expired watch with HTTP 410 rather than an ERROR event.
    pub fn set_gone_as_status(&self, yes: bool) {
        self.lock().gone_as_status = yes;
    }

    /// The next `n` patches are refused with 409 Conflict.
    pub fn conflict_next_patches(&self, n: usize) {
        self.lock().conflicts = n;
    }

    /// The next `n` GETs of one object fail with 503.
    pub fn fail_next_gets(&self, n: usize) {
        self.lock().failing_gets = n;
    }

    /// Right after the next successful GET of one object, someone else changes it.
    pub fn after_next_get(&self, change: impl FnOnce(&mut Value) + Send + 'static) {
        self.lock().after_get = Some(Box::new(change));
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.lock().seen.clone()
    }

    pub fn patches(&self) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.method == Method::PATCH)
            .collect()
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
        self.server = Some(tokio::spawn(serve(bind(self.addr), self.state.clone())));
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

    fn object(&self, collection: &str, name: &str) -> Option<&Value> {
        self.objects.get(collection)?.get(name)
    }

    fn store(&mut self, collection: &'static str, kind: &'static str, mut object: Value) {
        let rv = self.bump();
        object["metadata"]["resourceVersion"] = rv.to_string().into();
        let name = object["metadata"]["name"]
            .as_str()
            .expect("a name")
            .to_owned();
        self.objects
            .entry(collection)
            .or_default()
            .insert(name, object.clone());
        self.record(Change {
            rv,
            collection,
            kind,
            object,
        });
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
            let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(respond(req, &state).await) }
            });
            // A client that hangs up mid-watch is not the test's business.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
        while connections.try_join_next().is_some() {}
    }
}

async fn respond(req: Request<hyper::body::Incoming>, state: &Mutex<State>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let bytes = body
        .collect()
        .await
        .map(http_body_util::Collected::to_bytes)
        .unwrap_or_default();
    let query = decode_query(parts.uri.query().unwrap_or_default());
    let request = Seen {
        method: parts.method.clone(),
        path: parts.uri.path().to_owned(),
        watch: query.get("watch").is_some_and(|w| w == "true"),
        query,
        content_type: parts
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        status: 0,
    };
    let mut state = state.lock().expect("fake API state");
    let response = route(&mut state, &request);
    state.seen.push(Seen {
        status: response.status().as_u16(),
        ..request
    });
    response
}

fn route(state: &mut State, req: &Seen) -> Response<Body> {
    if let Some(collection) = COLLECTIONS.iter().copied().find(|c| *c == req.path) {
        return match req.method {
            Method::GET => list_or_watch(state, collection, req),
            _ => status(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", "GET"),
        };
    }
    let Some((collection, rest)) = COLLECTIONS.iter().copied().find_map(|c| {
        let rest = req.path.strip_prefix(c)?.strip_prefix('/')?;
        Some((c, rest))
    }) else {
        return status(StatusCode::NOT_FOUND, "NotFound", "not served");
    };
    match (rest.split_once('/'), &req.method) {
        (Some((name, "status")), &Method::PATCH) => patch_status(state, collection, name, req),
        (None, &Method::GET) => get(state, collection, rest),
        (None, &Method::PATCH) => json_patch(state, collection, rest, req),
        _ => status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "GET or PATCH",
        ),
    }
}

/// Whether `object` passes a `a.b=value` field selector.
fn selected(object: &Value, selector: Option<&(String, String)>) -> bool {
    selector.is_none_or(|(path, value)| {
        let pointer = format!("/{}", path.replace('.', "/"));
        object.pointer(&pointer).and_then(Value::as_str) == Some(value.as_str())
    })
}

fn list_or_watch(state: &State, collection: &'static str, req: &Seen) -> Response<Body> {
    let selector = req
        .query
        .get("fieldSelector")
        .and_then(|s| s.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
    // The pod watcher must never ask for the pods of the whole cluster.
    if collection == PODS && selector.as_ref().is_none_or(|(k, _)| k != "spec.nodeName") {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "fieldSelector spec.nodeName=<node> is required",
        );
    }
    if !req.watch {
        let items: Vec<&Value> = state
            .objects
            .get(collection)
            .into_iter()
            .flat_map(BTreeMap::values)
            .filter(|o| selected(o, selector.as_ref()))
            .collect();
        let (api_version, kind) = type_meta(collection);
        let list = json!({
            "apiVersion": api_version, "kind": format!("{kind}List"),
            "metadata": {"resourceVersion": state.rv.to_string()},
            "items": items,
        });
        return json_response(StatusCode::OK, &list);
    }
    let from: u64 = req
        .query
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
        .filter(|c| c.rv > from && c.collection == collection)
        .filter(|c| selected(&c.object, selector.as_ref()))
        .map(|c| event(c.kind, &c.object))
        .collect();
    if req
        .query
        .get("allowWatchBookmarks")
        .is_some_and(|b| b == "true")
    {
        let (api_version, kind) = type_meta(collection);
        let bookmark = json!({"type": "BOOKMARK", "object": {
            "apiVersion": api_version, "kind": kind,
            "metadata": {"resourceVersion": state.rv.to_string()},
        }});
        lines.push(line(&bookmark));
    }
    let replayed = state.rv;
    let live = BroadcastStream::new(state.live.subscribe())
        .filter_map(move |change| {
            let change = change.ok().filter(|c| {
                c.rv > replayed
                    && c.collection == collection
                    && selected(&c.object, selector.as_ref())
            });
            async move { change.map(|c| event(c.kind, &c.object)) }
        })
        .take_until(state.watches.clone().cancelled_owned())
        .boxed();
    stream_response(lines, live)
}

fn get(state: &mut State, collection: &'static str, name: &str) -> Response<Body> {
    let Some(object) = state.object(collection, name).cloned() else {
        return status(StatusCode::NOT_FOUND, "NotFound", "no such object");
    };
    if state.failing_gets > 0 {
        state.failing_gets -= 1;
        return status(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "etcd is having a bad day",
        );
    }
    if let Some(change) = state.after_get.take() {
        let mut changed = object.clone();
        change(&mut changed);
        state.store(collection, "MODIFIED", changed);
    }
    json_response(StatusCode::OK, &object)
}

/// `PATCH <collection>/<name>` with `application/json-patch+json`.
fn json_patch(
    state: &mut State,
    collection: &'static str,
    name: &str,
    req: &Seen,
) -> Response<Body> {
    let Some(mut object) = state.object(collection, name).cloned() else {
        return status(StatusCode::NOT_FOUND, "NotFound", "no such object");
    };
    if req.content_type.as_deref() != Some("application/json-patch+json") {
        return status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            "this fake applies JSON patches to objects",
        );
    }
    if state.conflicts > 0 {
        state.conflicts -= 1;
        return status(
            StatusCode::CONFLICT,
            "Conflict",
            "Operation cannot be fulfilled: the object has been modified",
        );
    }
    if let Err(why) = apply_json_patch(&mut object, &req.body) {
        return status(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", &why);
    }
    state.store(collection, "MODIFIED", object);
    json_response(StatusCode::OK, &state.objects[collection][name])
}

/// `PATCH <collection>/<name>/status` with `application/merge-patch+json`: only `status`
/// changes, as on the real status subresource.
fn patch_status(
    state: &mut State,
    collection: &'static str,
    name: &str,
    req: &Seen,
) -> Response<Body> {
    if req.body.is_null() {
        return status(StatusCode::BAD_REQUEST, "BadRequest", "not JSON");
    }
    let Some(mut object) = state.object(collection, name).cloned() else {
        return status(StatusCode::NOT_FOUND, "NotFound", "no such object");
    };
    merge_patch(&mut object["status"], &req.body["status"]);
    state.store(collection, "MODIFIED", object);
    json_response(StatusCode::OK, &state.objects[collection][name])
}

/// RFC 6902 `test` and `replace` on object paths, all or nothing.
fn apply_json_patch(doc: &mut Value, ops: &Value) -> Result<(), String> {
    let mut next = doc.clone();
    for op in ops.as_array().ok_or("a JSON patch is an array")? {
        let path = op["path"].as_str().ok_or("an op without a path")?;
        let target = next
            .pointer_mut(path)
            .ok_or_else(|| format!("{path}: no such path"))?;
        match op["op"].as_str() {
            Some("test") if *target == op["value"] => {}
            Some("test") => return Err(format!("testing value {path} failed")),
            Some("replace") => *target = op["value"].clone(),
            other => return Err(format!("op {other:?} is not supported by the fake")),
        }
    }
    *doc = next;
    Ok(())
}

/// RFC 7386.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(fields) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    for (key, value) in fields {
        if value.is_null() {
            target.as_object_mut().expect("an object").remove(key);
        } else {
            merge_patch(&mut target[key], value);
        }
    }
}

fn event(kind: &str, object: &Value) -> Bytes {
    line(&json!({"type": kind, "object": object}))
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
