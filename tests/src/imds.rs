//! A stand-in for the cloud instance metadata service: a tiny HTTP server on a thread inside
//! the simulated node's `imds` namespace, which records every connection and request, and
//! also counts the UDP datagrams and ICMP echo requests that reach the served addresses
//! (see the `capture` module).

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, poll};

use crate::capture::{Capture, ImdsPacket, Received};
use crate::netns::{NetNs, enter_netns};

/// The IPv4 instance metadata address.
pub const IMDS_V4: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);
/// The IPv6 instance metadata address (EC2 Nitro).
pub const IMDS_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);
/// The IPv4 EKS Pod Identity agent address, which pods must still reach.
pub const POD_IDENTITY_V4: Ipv4Addr = Ipv4Addr::new(169, 254, 170, 23);
/// The IPv6 EKS Pod Identity agent address.
pub const POD_IDENTITY_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x23);

/// The body of every metadata GET.
pub const METADATA_BODY: &str = "ami-id\ninstance-id\n";
/// The token `PUT /latest/api/token` hands out.
pub const TOKEN: &str = "nodeward-testkit-imdsv2-token";

/// How often the server thread looks at its stop flag while idle.
const POLL_MS: u16 = 20;
/// How long one client may take to send its request or read the answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long [`ImdsServer::settle`] waits for the server to go quiet.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(5);

/// One HTTP request the server received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImdsRequest {
    /// The client's address, e.g. a pod's 10.200.1.2.
    pub peer: SocketAddr,
    /// The address the client connected to, e.g. 169.254.169.254:80.
    pub local: SocketAddr,
    /// The HTTP method.
    pub method: String,
    /// The request path.
    pub path: String,
}

#[derive(Debug, Default)]
struct Shared {
    stop: AtomicBool,
    running: AtomicBool,
    /// Poll rounds that timed out with every socket empty.
    quiet_rounds: AtomicU64,
    connections: AtomicU64,
    requests: Mutex<Vec<ImdsRequest>>,
    udp: Mutex<Vec<ImdsPacket>>,
    icmp: Mutex<Vec<ImdsPacket>>,
}

/// Reports whether a server thread still runs; it stays valid after the server is dropped.
#[derive(Debug, Clone)]
pub struct ServerLiveness(Arc<Shared>);

impl ServerLiveness {
    /// Whether the server thread is still running.
    #[must_use]
    pub fn is_running(&self) -> bool {
        self.0.running.load(Ordering::SeqCst)
    }
}

/// The metadata server; dropping it stops its thread.
#[derive(Debug)]
pub struct ImdsServer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl ImdsServer {
    /// Starts serving HTTP on port 80 of every address in `addrs`, from a thread that joins
    /// `netns` before it binds. Returns once all are bound; panics if any bind fails.
    #[must_use]
    pub fn start(netns: &NetNs, addrs: &[IpAddr]) -> Self {
        let shared = Arc::new(Shared::default());
        let (ready_tx, ready_rx) = mpsc::channel();
        let file = netns.open();
        let name = netns.name().to_owned();
        let addrs = addrs.to_vec();
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("imds-{name}"))
            .spawn(move || {
                // Set before anything can fail, cleared by the guard however the thread ends.
                thread_shared.running.store(true, Ordering::SeqCst);
                let _running = ClearOnDrop(&thread_shared.running);
                enter_netns(&file, &name);
                let listeners: Result<Vec<_>, _> = addrs
                    .iter()
                    .map(|ip| {
                        TcpListener::bind((*ip, 80))
                            .map_err(|e| format!("bind {ip}:80 in {name}: {e}"))
                    })
                    .collect();
                match listeners.and_then(|l| Capture::bind(&addrs).map(|c| (l, c))) {
                    Ok((listeners, capture)) => {
                        let _ = ready_tx.send(Ok(()));
                        serve(&listeners, &capture, &thread_shared);
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            })
            .expect("spawn the IMDS server thread");
        let server = Self {
            shared,
            thread: Some(thread),
        };
        match ready_rx.recv() {
            Ok(Ok(())) => server,
            Ok(Err(e)) => panic!("IMDS server: {e}"),
            Err(mpsc::RecvError) => panic!("IMDS server thread died before it was ready"),
        }
    }

    /// Every HTTP request received so far.
    #[must_use]
    pub fn requests(&self) -> Vec<ImdsRequest> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// How many HTTP requests arrived; 0 means no request reached the metadata service.
    #[must_use]
    pub fn request_count(&self) -> usize {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Every UDP datagram that arrived on port 80 of a served address, in arrival order.
    #[must_use]
    pub fn udp_datagrams(&self) -> Vec<ImdsPacket> {
        self.shared
            .udp
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// How many UDP datagrams arrived; see [`ImdsServer::settle`] before asserting none did.
    #[must_use]
    pub fn udp_datagram_count(&self) -> usize {
        self.shared
            .udp
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Every ICMP (or ICMPv6) echo request that arrived for a served address, in arrival
    /// order. The `imds` namespace's kernel answers them too, after they are counted.
    #[must_use]
    pub fn icmp_packets(&self) -> Vec<ImdsPacket> {
        self.shared
            .icmp
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// How many echo requests arrived; see [`ImdsServer::settle`] before asserting none did.
    #[must_use]
    pub fn icmp_packet_count(&self) -> usize {
        self.shared
            .icmp
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// How many TCP connections were accepted, with or without a request on them.
    #[must_use]
    pub fn connection_count(&self) -> u64 {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Waits until the server has read and counted everything waiting on its sockets, so
    /// that counts read next include all the traffic a finished sender put on the wire.
    ///
    /// Every count is recorded as soon as the server reads it, before any reply, but the
    /// server thread reads a moment after the kernel queued the data: a probe that has
    /// exited may have a datagram, echo request or connection still unread. `settle`
    /// returns once one whole poll round (20 ms) that started after the call found all
    /// sockets empty. Traffic from a sender that has returned is delivered synchronously
    /// across the veths in practice; only a packet held in a softirq backlog for longer
    /// than that round could still be missed. Use it before asserting that nothing
    /// arrived; to wait for something that should arrive, use
    /// [`wait_until`](crate::wait_until) on the count instead.
    ///
    /// Panics if the server does not go quiet within 5 s or its thread has died.
    pub fn settle(&self) {
        let seen = self.shared.quiet_rounds.load(Ordering::SeqCst);
        // The round that ends at `seen + 1` may have started before this call; the next
        // one cannot have.
        crate::wait_until(SETTLE_TIMEOUT, "the IMDS server to go quiet", || {
            assert!(
                self.shared.running.load(Ordering::SeqCst),
                "the IMDS server thread is not running"
            );
            (self.shared.quiet_rounds.load(Ordering::SeqCst) >= seen + 2).then_some(())
        });
    }

    /// A handle that tells whether the server thread still runs, even after `self` is gone.
    #[must_use]
    pub fn liveness(&self) -> ServerLiveness {
        ServerLiveness(Arc::clone(&self.shared))
    }
}

impl Drop for ImdsServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            eprintln!("testkit: the IMDS server thread panicked");
        }
    }
}

struct ClearOnDrop<'a>(&'a AtomicBool);

impl Drop for ClearOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// Accepts and answers connections one at a time, and records datagrams and echo
/// requests, until the stop flag is set.
fn serve(listeners: &[TcpListener], capture: &Capture, shared: &Shared) {
    let others = capture.fds();
    while !shared.stop.load(Ordering::SeqCst) {
        let mut fds: Vec<_> = listeners
            .iter()
            .map(|l| PollFd::new(l.as_fd(), PollFlags::POLLIN))
            .chain(others.iter().map(|fd| PollFd::new(*fd, PollFlags::POLLIN)))
            .collect();
        match poll(&mut fds, POLL_MS) {
            Ok(0) => {
                shared.quiet_rounds.fetch_add(1, Ordering::SeqCst);
                continue;
            }
            Ok(_) => {}
            Err(_) => continue, // EINTR
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|fd| fd.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        for (index, _) in ready
            .iter()
            .enumerate()
            .skip(listeners.len())
            .filter(|(_, ready)| **ready)
        {
            match capture.receive(index - listeners.len()) {
                Received::Udp(packet) => shared
                    .udp
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(packet),
                Received::Icmp(packet) => shared
                    .icmp
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(packet),
                Received::Nothing => {}
            }
        }
        for (listener, _) in listeners.iter().zip(ready).filter(|(_, ready)| *ready) {
            if let Ok((stream, peer)) = listener.accept() {
                shared.connections.fetch_add(1, Ordering::SeqCst);
                if let Err(e) = answer(stream, peer, shared) {
                    eprintln!("testkit: IMDS server, client {peer}: {e}");
                }
            }
        }
    }
}

/// Reads one request and writes the response, recording the request.
fn answer(mut stream: TcpStream, peer: SocketAddr, shared: &Shared) -> std::io::Result<()> {
    stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 || buf.len() > 64 * 1024 {
            return Ok(()); // a bare connect, or not HTTP
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]);
    let mut words = head.lines().next().unwrap_or_default().split_whitespace();
    let (method, path) = (
        words.next().unwrap_or_default(),
        words.next().unwrap_or_default(),
    );
    shared
        .requests
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(ImdsRequest {
            peer,
            local: stream.local_addr()?,
            method: method.to_owned(),
            path: path.to_owned(),
        });
    let body = if method == "PUT" && path == "/latest/api/token" {
        TOKEN
    } else {
        METADATA_BODY
    };
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes())
}
