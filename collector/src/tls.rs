//! The TLS side of the listener: every connection must complete a mutual TLS handshake
//! with a client certificate from the configured CA before gRPC sees it. The handshake is
//! done here rather than inside tonic so that a refused client (no certificate, another
//! CA, an expired certificate) is logged with its address and the reason: a SOC wants
//! to know who knocked.
//!
//! The CA, certificate and key are read again when they change on disk (cert-manager
//! renewing the collector's certificate, a rotated CA): [`ServerTls::watch_files`] polls
//! them and swaps the configuration new handshakes use; open connections keep theirs. A
//! set of files that does not make a configuration (a half-written renewal, a key that
//! does not parse) is logged and the previous configuration kept.

use std::{
    net::SocketAddr,
    sync::{Arc, RwLock},
    time::Duration,
};

use nodeward_runtime::tls::{ClientAuth, TlsError, TlsFiles, TlsMaterial, peer_identity};
use rustls::ServerConfig;
use tokio::{
    net::{TcpListener, TcpStream},
    sync::mpsc,
};
use tokio_rustls::{TlsAcceptor, server::TlsStream};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// A client that connects and says nothing is dropped after this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the certificate files are looked at for changes.
pub const RELOAD_POLL: Duration = Duration::from_secs(2);

/// The server's TLS configuration, and the files it was built from. Clones share the
/// configuration: a reload is seen by every acceptor.
#[derive(Clone)]
pub struct ServerTls {
    files: TlsFiles,
    client_auth: ClientAuth,
    current: Arc<RwLock<Loaded>>,
}

/// A configuration and the file contents it was built from.
struct Loaded {
    config: Arc<ServerConfig>,
    /// The CA, certificate and key it came from.
    pem: [Vec<u8>; 3],
}

impl ServerTls {
    /// Reads `files` and builds the configuration; errors name the file. With
    /// [`ClientAuth::Optional`] a client without a certificate completes the handshake,
    /// and `auth` refuses it every call but enrollment.
    pub fn load(files: TlsFiles, client_auth: ClientAuth) -> Result<Self, TlsError> {
        let material = files.read()?;
        let config = material.server_config_for(client_auth)?;
        Ok(Self {
            files,
            client_auth,
            current: Arc::new(RwLock::new(Loaded {
                config,
                pem: contents(material),
            })),
        })
    }

    /// The configuration a new connection's handshake uses.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .config
            .clone()
    }

    /// Reads the files again and, when their contents changed and make a configuration,
    /// swaps it in. `Ok(true)`: swapped; `Ok(false)`: nothing changed; an error: the
    /// previous configuration stays.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let material = self.files.read()?;
        let pem = contents(material.clone());
        if self
            .current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pem
            == pem
        {
            return Ok(false);
        }
        let config = material.server_config_for(self.client_auth)?;
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Loaded { config, pem };
        Ok(true)
    }

    /// Reloads every `every` until `token` is cancelled, logging each swap and each set
    /// of files it had to refuse (once per distinct error, not at every poll).
    pub async fn watch_files(self, every: Duration, token: CancellationToken) {
        let mut last_error: Option<String> = None;
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            tokio::select! {
                () = token.cancelled() => return,
                _ = ticks.tick() => {}
            }
            match self.reload() {
                Ok(true) => {
                    last_error = None;
                    info!(
                        cert = %self.files.cert_file.display(),
                        ca = %self.files.ca_file.display(),
                        "TLS certificate files changed: new connections use them"
                    );
                }
                Ok(false) => last_error = None,
                Err(err) => {
                    let reason = format!("{:#}", anyhow::Error::new(err));
                    if last_error.as_ref() != Some(&reason) {
                        warn!(
                            error = reason,
                            "TLS certificate files changed but cannot be used; keeping the previous configuration"
                        );
                        last_error = Some(reason);
                    }
                }
            }
        }
    }
}

fn contents(material: TlsMaterial) -> [Vec<u8>; 3] {
    [material.ca, material.cert, material.key]
}

/// Accepts on `listener` and yields the connections whose handshake succeeded, until
/// `token` is cancelled; each handshake uses `tls`'s configuration of the moment.
/// Handshakes run concurrently so a slow client cannot hold up the others.
pub fn incoming(
    listener: TcpListener,
    tls: ServerTls,
    token: CancellationToken,
) -> ReceiverStream<std::io::Result<TlsStream<TcpStream>>> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let (tcp, addr) = tokio::select! {
                () = token.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        // Out of file descriptors and the like: keep serving the
                        // connections already open and try again shortly.
                        warn!(error = %err, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            // The configuration of the moment: a reload applies from the next connection.
            let acceptor = TlsAcceptor::from(tls.config());
            let tx = tx.clone();
            tokio::spawn(async move {
                if let Some(stream) = handshake(&acceptor, tcp, addr).await {
                    let _ = tx.send(Ok(stream)).await;
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

async fn handshake(
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
    addr: SocketAddr,
) -> Option<TlsStream<TcpStream>> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => {
            let peer = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .map(|cert| peer_identity(cert));
            match peer {
                Some(Ok(peer)) => debug!(%addr, %peer, "TLS client authenticated"),
                Some(Err(reason)) => {
                    info!(%addr, reason, "TLS client has no nodeward identity; its calls will be refused");
                }
                None => {}
            }
            Some(stream)
        }
        Ok(Err(err)) => {
            warn!(%addr, error = %err, "TLS handshake refused");
            None
        }
        Err(_) => {
            warn!(%addr, timeout_s = HANDSHAKE_TIMEOUT.as_secs(), "TLS handshake timed out");
            None
        }
    }
}

#[cfg(test)]
mod tests;
