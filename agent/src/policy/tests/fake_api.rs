//! A fake Kubernetes API server on loopback for the policy watcher: list and watch of
//! `/api/v1/nodes` (with a `metadata.name` field selector) and of the cluster-scoped
//! `nodehardeningpolicies`, and JSON merge patches on a policy's status subresource. Like
//! the pod fake beside the pod watcher (`kube/tests/fake_api.rs`), it keeps its state
//! across a stop, and stopping drops every open connection.

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

type Body = UnsyncBoxBody<Bytes, Infallible>;

pub const NODES: &str = "/api/v1/nodes";
pub const POLICIES: &str = "/apis/nodeward.io/v1alpha1/nodehardeningpolicies";

#[derive(Clone)]
struct Change {
    rv: u64,
    collection: &'static str,
    kind: &'static str,
    object: Value,
}

struct State {
    rv: u64,
    /// Collection path → objects by name.
    objects: BTreeMap<&'static str, BTreeMap<String, Value>>,
    history: Vec<Change>,
    live: broadcast::Sender<Change>,
    /// Status merge patches received: (policy name, patch body).
    patches: Vec<(String, Value)>,
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
            live: broadcast::channel(64).0,
            patches: Vec::new(),
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

    pub fn client(&self) -> kube::Client {
        let url = format!("http://{}", self.addr).parse().expect("a URL");
        kube::Client::try_from(kube::Config::new(url)).expect("a client")
    }

    /// Creates or replaces an object of `collection`; a policy whose spec changed gets
    /// the next `metadata.generation`, as the API server does.
    pub fn apply(&self, collection: &'static str, mut object: Value) {
        let mut state = self.lock();
        let name = object["metadata"]["name"]
            .as_str()
            .expect("a name")
            .to_owned();
        let old = state
            .objects
            .entry(collection)
            .or_default()
            .get(&name)
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
        let object = state
            .objects
            .get_mut(collection)
            .and_then(|c| c.remove(name))
            .expect("the object exists");
        let rv = state.bump();
        state.record(Change {
            rv,
            collection,
            kind: "DELETED",
            object,
        });
    }

    pub fn get(&self, collection: &'static str, name: &str) -> Option<Value> {
        self.lock().objects.get(collection)?.get(name).cloned()
    }

    pub fn patches(&self) -> Vec<(String, Value)> {
        self.lock().patches.clone()
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
        let _ = self.live.send(change);
    }
}

/// Binds with `SO_REUSEADDR`, so a restarted server gets its port back.
pub fn bind(addr: SocketAddr) -> TcpListener {
    let socket = TcpSocket::new_v4().expect("a socket");
    socket.set_reuseaddr(true).expect("SO_REUSEADDR");
    socket.bind(addr).expect("bind on loopback");
    socket.listen(64).expect("listen")
}

async fn serve(listener: TcpListener, state: Arc<Mutex<State>>) {
    let mut connections = JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let state = state.clone();
        connections.spawn(async move {
            let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                let state = state.clone();
                async move {
                    let (parts, body) = req.into_parts();
                    let body = body
                        .collect()
                        .await
                        .map(http_body_util::Collected::to_bytes)
                        .unwrap_or_default();
                    Ok::<_, Infallible>(respond(&parts, &body, &state))
                }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
        while connections.try_join_next().is_some() {}
    }
}

fn respond(req: &hyper::http::request::Parts, body: &[u8], state: &Mutex<State>) -> Response<Body> {
    let mut state = state.lock().expect("fake API state");
    let path = req.uri.path();
    if req.method == Method::PATCH {
        return patch_status(&mut state, path, body);
    }
    let collection = match path {
        NODES => NODES,
        POLICIES => POLICIES,
        _ => return status(StatusCode::NOT_FOUND, "NotFound", "not served"),
    };
    let query = decode_query(req.uri.query().unwrap_or_default());
    let name = query
        .get("fieldSelector")
        .and_then(|s| s.strip_prefix("metadata.name="))
        .map(str::to_owned);
    let selected = move |c: &Value| name.as_deref().is_none_or(|n| c["metadata"]["name"] == n);
    if query.get("watch").is_none_or(|w| w != "true") {
        let items: Vec<Value> = state
            .objects
            .get(collection)
            .into_iter()
            .flat_map(BTreeMap::values)
            .filter(|o| selected(o))
            .cloned()
            .collect();
        let list = json!({"metadata": {"resourceVersion": state.rv.to_string()}, "items": items});
        return json_response(StatusCode::OK, &list);
    }
    let from: u64 = query
        .get("resourceVersion")
        .and_then(|rv| rv.parse().ok())
        .unwrap_or(state.rv);
    let lines: Vec<Bytes> = state
        .history
        .iter()
        .filter(|c| c.rv > from && c.collection == collection && selected(&c.object))
        .map(|c| line(&json!({"type": c.kind, "object": c.object})))
        .collect();
    let replayed = state.rv;
    let live = BroadcastStream::new(state.live.subscribe())
        .filter_map(move |change| {
            let change = change
                .ok()
                .filter(|c| c.rv > replayed && c.collection == collection && selected(&c.object));
            async move { change.map(|c| line(&json!({"type": c.kind, "object": c.object}))) }
        })
        .boxed();
    let body = stream::iter(lines)
        .chain(live)
        .map(|bytes| Ok::<_, Infallible>(Frame::data(bytes)));
    Response::builder()
        .header("content-type", "application/json")
        .body(UnsyncBoxBody::new(StreamBody::new(body)))
        .expect("a response")
}

/// `PATCH <policies>/<name>/status` with `application/merge-patch+json`: only `status`
/// changes, as on the real status subresource.
fn patch_status(state: &mut State, path: &str, body: &[u8]) -> Response<Body> {
    let Some(name) = path
        .strip_prefix(POLICIES)
        .and_then(|p| p.strip_prefix('/'))
        .and_then(|p| p.strip_suffix("/status"))
    else {
        return status(StatusCode::NOT_FOUND, "NotFound", "not served");
    };
    let Ok(merge) = serde_json::from_slice::<Value>(body) else {
        return status(StatusCode::BAD_REQUEST, "BadRequest", "not JSON");
    };
    let Some(mut object) = state
        .objects
        .get(POLICIES)
        .and_then(|c| c.get(name))
        .cloned()
    else {
        return status(StatusCode::NOT_FOUND, "NotFound", "no such policy");
    };
    state.patches.push((name.to_owned(), merge.clone()));
    merge_patch(&mut object["status"], &merge["status"]);
    state.store(POLICIES, "MODIFIED", object.clone());
    let stored = state.objects[POLICIES][name].clone();
    json_response(StatusCode::OK, &stored)
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

fn line(value: &Value) -> Bytes {
    let mut text = value.to_string();
    text.push('\n');
    Bytes::from(text)
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

fn status(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    let body = json!({
        "apiVersion": "v1", "kind": "Status", "metadata": {},
        "status": "Failure", "reason": reason, "message": message, "code": code.as_u16(),
    });
    json_response(code, &body)
}

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
