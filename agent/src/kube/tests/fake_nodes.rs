//! A fake Kubernetes API server on loopback serving Nodes: `GET` and JSON-patch `PATCH` of
//! `/api/v1/nodes/{name}`, applying `test` and `replace` the way the API server does (a
//! failed `test` is 422), with scripted trouble: conflicts (409), failing GETs (503), and
//! a change made by "someone else" right after a GET.

use std::{
    collections::BTreeMap,
    convert::Infallible,
    net::{Ipv4Addr, SocketAddr},
    sync::{Arc, Mutex, MutexGuard},
};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{Method, Request, Response, StatusCode, body::Incoming, server::conn::http1};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use super::fake_api::bind;

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub content_type: Option<String>,
    pub body: Value,
    pub status: u16,
}

type Change = Box<dyn FnOnce(&mut Value) + Send>;

#[derive(Default)]
struct State {
    rv: u64,
    nodes: BTreeMap<String, Value>,
    seen: Vec<Seen>,
    conflicts: usize,
    failing_gets: usize,
    after_get: Option<Change>,
}

pub struct FakeNodes {
    state: Arc<Mutex<State>>,
    addr: SocketAddr,
    server: JoinHandle<()>,
}

impl FakeNodes {
    pub fn start() -> Self {
        let state = Arc::new(Mutex::new(State {
            rv: 100,
            ..State::default()
        }));
        let listener = bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
        let addr = listener.local_addr().expect("a bound address");
        let shared = state.clone();
        let server = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = shared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(respond(req, &state).await) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            state,
            addr,
            server,
        }
    }

    pub fn client(&self) -> kube::Client {
        let url = format!("http://{}", self.addr).parse().expect("a URL");
        kube::Client::try_from(kube::Config::new(url)).expect("a client")
    }

    /// Creates a Node with these taints (`(key, effect)`).
    pub fn node(&self, name: &str, taints: &[(&str, &str)]) {
        let taints: Vec<Value> = taints
            .iter()
            .map(|(key, effect)| json!({"key": key, "effect": effect}))
            .collect();
        let mut spec = json!({"providerID": format!("aws:///eu-west-1a/i-{name}")});
        if !taints.is_empty() {
            spec["taints"] = taints.into();
        }
        let mut state = self.lock();
        state.rv += 1;
        let node = json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "resourceVersion": state.rv.to_string(),
                "labels": {"kubernetes.io/hostname": name}},
            "spec": spec,
        });
        state.nodes.insert(name.to_owned(), node);
    }

    /// The keys of a Node's taints, in order.
    pub fn taint_keys(&self, name: &str) -> Vec<String> {
        self.lock().nodes[name]["spec"]["taints"]
            .as_array()
            .map(|taints| {
                taints
                    .iter()
                    .map(|t| t["key"].as_str().expect("a key").to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn get(&self, name: &str) -> Value {
        self.lock().nodes[name].clone()
    }

    /// The next `n` patches are refused with 409 Conflict.
    pub fn conflict_next_patches(&self, n: usize) {
        self.lock().conflicts = n;
    }

    /// The next `n` GETs fail with 503.
    pub fn fail_next_gets(&self, n: usize) {
        self.lock().failing_gets = n;
    }

    /// Right after the next successful GET, someone else changes the Node.
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

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("fake API state")
    }
}

impl Drop for FakeNodes {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn respond(req: Request<Incoming>, state: &Mutex<State>) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = req
        .into_body()
        .collect()
        .await
        .map(http_body_util::Collected::to_bytes)
        .unwrap_or_default();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let mut state = state.lock().expect("fake API state");
    let (code, answer) = handle(&mut state, &method, &path, content_type.as_deref(), &body);
    state.seen.push(Seen {
        method,
        path,
        content_type,
        body,
        status: code.as_u16(),
    });
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(answer.to_string())))
        .expect("a response")
}

fn handle(
    state: &mut State,
    method: &Method,
    path: &str,
    content_type: Option<&str>,
    body: &Value,
) -> (StatusCode, Value) {
    let Some(name) = path.strip_prefix("/api/v1/nodes/") else {
        return status(StatusCode::NOT_FOUND, "NotFound", "only nodes are served");
    };
    if !state.nodes.contains_key(name) {
        return status(StatusCode::NOT_FOUND, "NotFound", "no such node");
    }
    match *method {
        Method::GET if state.failing_gets > 0 => {
            state.failing_gets -= 1;
            status(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "etcd is having a bad day",
            )
        }
        Method::GET => {
            let node = state.nodes[name].clone();
            if let Some(change) = state.after_get.take() {
                let stored = state.nodes.get_mut(name).expect("the node");
                change(stored);
                state.rv += 1;
                stored["metadata"]["resourceVersion"] = state.rv.to_string().into();
            }
            (StatusCode::OK, node)
        }
        Method::PATCH if content_type != Some("application/json-patch+json") => status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            "this fake only applies JSON patches",
        ),
        Method::PATCH if state.conflicts > 0 => {
            state.conflicts -= 1;
            status(
                StatusCode::CONFLICT,
                "Conflict",
                "Operation cannot be fulfilled on nodes: the object has been modified",
            )
        }
        Method::PATCH => {
            let mut node = state.nodes[name].clone();
            if let Err(why) = apply(&mut node, body) {
                return status(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", &why);
            }
            state.rv += 1;
            node["metadata"]["resourceVersion"] = state.rv.to_string().into();
            state.nodes.insert(name.to_owned(), node.clone());
            (StatusCode::OK, node)
        }
        _ => status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "GET or PATCH",
        ),
    }
}

/// RFC 6902 `test` and `replace` on object paths, all or nothing.
fn apply(doc: &mut Value, ops: &Value) -> Result<(), String> {
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

fn status(code: StatusCode, reason: &str, message: &str) -> (StatusCode, Value) {
    let body = json!({
        "apiVersion": "v1", "kind": "Status", "metadata": {},
        "status": "Failure", "reason": reason, "message": message, "code": code.as_u16(),
    });
    (code, body)
}
