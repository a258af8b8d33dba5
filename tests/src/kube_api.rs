//! A fake Kubernetes API server for the collector's agent enrollment: `POST
//! /apis/authentication.k8s.io/v1/tokenreviews` answers from the tokens the test
//! registered (as the API server would for a projected service account token: the
//! service account's username and the bound pod's name, UID and node in `extra`), and
//! `GET /api/v1/namespaces/{ns}/pods/{name}` serves the pods the test added, or a 404
//! `Status`. Plain HTTP on loopback, one thread, every response closes its connection.
//!
//! Real clients (kube-rs) are pointed at it with [`FakeKubeApi::write_kubeconfig`] or its
//! [`FakeKubeApi::url`].

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{Value, json};

const TOKEN_REVIEWS: &str = "/apis/authentication.k8s.io/v1/tokenreviews";

/// What the API server knows about one token.
#[derive(Debug, Clone)]
pub struct FakeToken {
    /// `system:serviceaccount:<ns>:<name>`.
    pub username: String,
    /// The audiences the token was issued for.
    pub audiences: Vec<String>,
    /// The pod it is bound to: name and UID.
    pub pod: Option<(String, String)>,
    /// The node bound into it (`authentication.kubernetes.io/node-name`).
    pub node: Option<String>,
}

impl FakeToken {
    /// A projected token of service account `namespace/name`, for `audience`, bound to pod
    /// `pod` (UID `uid`) on `node`.
    #[must_use]
    pub fn projected(sa: &str, audience: &str, pod: &str, uid: &str, node: &str) -> Self {
        let (ns, name) = sa.split_once('/').expect("namespace/name");
        Self {
            username: format!("system:serviceaccount:{ns}:{name}"),
            audiences: vec![audience.to_owned()],
            pod: Some((pod.to_owned(), uid.to_owned())),
            node: Some(node.to_owned()),
        }
    }
}

#[derive(Default)]
struct State {
    tokens: BTreeMap<String, FakeToken>,
    /// By (namespace, name).
    pods: BTreeMap<(String, String), Value>,
    /// Every request line served, e.g. `GET /api/v1/namespaces/a/pods/b`.
    requests: Vec<String>,
}

/// The running fake; stopped when dropped.
pub struct FakeKubeApi {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeKubeApi {
    /// Listens on a free loopback port.
    #[must_use]
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        listener.set_nonblocking(true).expect("non-blocking accept");
        let addr = listener.local_addr().expect("its address");
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (state, stop) = (state.clone(), stop.clone());
            std::thread::spawn(move || serve(&listener, &state, &stop))
        };
        Self {
            addr,
            state,
            stop,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:<port>`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Writes a kubeconfig whose cluster is this server (no credentials).
    pub fn write_kubeconfig(&self, path: &Path) {
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\n\
             users:\n- name: fake\n  user: {{}}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n\
             current-context: fake\n",
            self.url()
        );
        std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    /// Makes `token` authenticate as `what` says.
    pub fn add_token(&self, token: &str, what: FakeToken) {
        self.lock().tokens.insert(token.to_owned(), what);
    }

    /// Adds (or replaces) a pod in `phase` on `node`.
    pub fn add_pod(&self, namespace: &str, name: &str, uid: &str, node: &str, phase: &str) {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "uid": uid},
            "spec": {"nodeName": node, "containers": [{"name": "agent"}]},
            "status": {"phase": phase},
        });
        self.lock()
            .pods
            .insert((namespace.to_owned(), name.to_owned()), pod);
    }

    /// Deletes a pod.
    pub fn remove_pod(&self, namespace: &str, name: &str) {
        self.lock()
            .pods
            .remove(&(namespace.to_owned(), name.to_owned()));
    }

    /// The request lines served so far.
    #[must_use]
    pub fn requests(&self) -> Vec<String> {
        self.lock().requests.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for FakeKubeApi {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(listener: &TcpListener, state: &Mutex<State>, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                // A client that misbehaves only loses its own request.
                let _ = handle(stream, state);
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

fn handle(stream: TcpStream, state: &Mutex<State>) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, path) = (
        parts.next().unwrap_or_default().to_owned(),
        parts.next().unwrap_or_default().to_owned(),
    );
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header)?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    let path = path.split('?').next().unwrap_or_default().to_owned();
    let (status, response) = {
        let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
        state.requests.push(format!("{method} {path}"));
        route(&state, &method, &path, &body)
    };
    let body = response.to_string();
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

fn route(state: &State, method: &str, path: &str, body: &[u8]) -> (&'static str, Value) {
    if method == "POST" && path == TOKEN_REVIEWS {
        let review: Value = serde_json::from_slice(body).unwrap_or_default();
        return ("201 Created", token_review(state, &review));
    }
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    if method == "GET"
        && let ["api", "v1", "namespaces", ns, "pods", name] = segments.as_slice()
    {
        return match state.pods.get(&((*ns).to_owned(), (*name).to_owned())) {
            Some(pod) => ("200 OK", pod.clone()),
            None => (
                "404 Not Found",
                status(404, "NotFound", &format!("pods \"{name}\" not found")),
            ),
        };
    }
    (
        "404 Not Found",
        status(
            404,
            "NotFound",
            "the server could not find the requested resource",
        ),
    )
}

/// What the API server answers: authenticated only for a known token whose audiences
/// include one asked for.
fn token_review(state: &State, review: &Value) -> Value {
    let token = review["spec"]["token"].as_str().unwrap_or_default();
    let wanted: Vec<&str> = review["spec"]["audiences"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let found = state
        .tokens
        .get(token)
        .filter(|t| wanted.is_empty() || t.audiences.iter().any(|a| wanted.contains(&a.as_str())));
    let status = match found {
        None => json!({
            "authenticated": false,
            "error": "[invalid bearer token, token audiences do not match or token is unknown]",
        }),
        Some(t) => {
            let mut extra = serde_json::Map::new();
            if let Some((pod, uid)) = &t.pod {
                extra.insert("authentication.kubernetes.io/pod-name".into(), json!([pod]));
                extra.insert("authentication.kubernetes.io/pod-uid".into(), json!([uid]));
            }
            if let Some(node) = &t.node {
                extra.insert(
                    "authentication.kubernetes.io/node-name".into(),
                    json!([node]),
                );
            }
            json!({
                "authenticated": true,
                "audiences": wanted,
                "user": {"username": t.username, "uid": "sa-uid", "groups": ["system:serviceaccounts"], "extra": extra},
            })
        }
    };
    json!({
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
        "metadata": {"creationTimestamp": null},
        "spec": review["spec"],
        "status": status,
    })
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Status", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code,
    })
}
