//! The listener's TLS: its certificate, and with `client_ca_file` mutual TLS — client
//! certificates verified against that authority, required or optional. The files are
//! looked at again every few seconds ([`ListenerTls::refresh`]): a renewed
//! certificate or truststore is used by the next handshake, without a restart; files
//! that do not load leave the previous configuration serving.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;

use crate::client_cert::truststore_warnings;
use crate::config::ClientAuth;
use crate::tls::{pem_certificates, pem_key};

/// The files a listener's TLS is made from (resolved paths).
#[derive(Debug, Clone)]
pub struct ListenerFiles {
    /// `tls_cert`.
    pub cert: PathBuf,
    /// `tls_key`.
    pub key: PathBuf,
    /// `client_ca_file`: ask clients for certificates signed by these.
    pub client_ca: Option<PathBuf>,
    /// Whether a client without one is turned away.
    pub client_auth: ClientAuth,
}

/// The rustls configuration of `files`: TLS 1.2 and 1.3, HTTP/2 or HTTP/1.1 by ALPN.
/// An error names the setting whose file cannot be used.
pub fn server_config(files: &ListenerFiles) -> Result<rustls::ServerConfig, String> {
    let chain = pem_certificates("tls_cert", &files.cert)?;
    let key = pem_key("tls_key", &files.key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let shown = ca.display();
            let mut roots = RootCertStore::empty();
            for cert in pem_certificates("client_ca_file", ca)? {
                roots
                    .add(cert)
                    .map_err(|e| format!("client_ca_file {shown}: {e}"))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = match files.client_auth {
                ClientAuth::Required => verifier,
                ClientAuth::Optional => verifier.allow_unauthenticated(),
            };
            builder.with_client_cert_verifier(
                verifier
                    .build()
                    .map_err(|e| format!("client_ca_file {shown}: {e}"))?,
            )
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| format!("tls_cert and tls_key: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The configuration in force, and what its files looked like when it was read.
pub struct ListenerTls {
    files: ListenerFiles,
    current: ArcSwap<rustls::ServerConfig>,
    seen: Mutex<Vec<Stamp>>,
}

impl std::fmt::Debug for ListenerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerTls")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

/// A file's modification time and length, or nothing when it cannot be read.
type Stamp = Option<(SystemTime, u64)>;

fn stamps(files: &ListenerFiles) -> Vec<Stamp> {
    let stamp = |p: &Path| {
        std::fs::metadata(p)
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.len())))
    };
    [
        Some(&files.cert),
        Some(&files.key),
        files.client_ca.as_ref(),
    ]
    .into_iter()
    .flatten()
    .map(|p| stamp(p))
    .collect()
}

/// What is wrong with the certificates in `client_ca_file`, if set (see
/// [`truststore_warnings`]); each line names the file.
pub fn client_ca_warnings(files: &ListenerFiles) -> Vec<String> {
    let Some(ca) = &files.client_ca else {
        return Vec::new();
    };
    let Ok(certs) = pem_certificates("client_ca_file", ca) else {
        // The load itself reports a file that cannot be read.
        return Vec::new();
    };
    let ders: Vec<&[u8]> = certs.iter().map(|c| c.as_ref()).collect();
    truststore_warnings(&ders, SystemTime::now())
        .into_iter()
        .map(|w| format!("client_ca_file {}: {w}", ca.display()))
        .collect()
}

impl ListenerTls {
    /// Reads `files`; an error names the setting. What is wrong with the truststore's
    /// certificates is logged as warnings.
    pub fn load(files: ListenerFiles) -> Result<Self, String> {
        let seen = stamps(&files);
        let config = server_config(&files)?;
        for warning in client_ca_warnings(&files) {
            tracing::warn!("{warning}");
        }
        Ok(Self {
            files,
            current: ArcSwap::from_pointee(config),
            seen: Mutex::new(seen),
        })
    }

    /// The listener's TLS of `[server]` (`tls_cert`, `tls_key`, `client_ca_file`,
    /// relative to `base`), if it has any; an error names the setting.
    pub fn from_config(
        server: &crate::config::Server,
        base: &Path,
    ) -> Result<Option<Self>, String> {
        let (cert, key) = match (&server.tls_cert, &server.tls_key) {
            (None, None) if server.client_ca_file.is_some() => {
                return Err("client_ca_file needs tls_cert and tls_key".into());
            }
            (None, None) => return Ok(None),
            (Some(cert), Some(key)) => (base.join(cert), base.join(key)),
            (Some(_), None) => return Err("tls_cert needs tls_key".into()),
            (None, Some(_)) => return Err("tls_key needs tls_cert".into()),
        };
        Self::load(ListenerFiles {
            cert,
            key,
            client_ca: server.client_ca_file.as_ref().map(|f| base.join(f)),
            client_auth: server.client_auth,
        })
        .map(Some)
    }

    /// Looks at the files every 2 s on a thread of its own, so a renewed certificate
    /// or truststore serves the next handshake.
    pub fn watch(self: Arc<Self>) {
        let spawned = std::thread::Builder::new()
            .name("weir-tls-files".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(std::time::Duration::from_secs(2));
                    match self.refresh() {
                        Ok(true) => {
                            tracing::info!("listener TLS files changed: new handshakes use them")
                        }
                        Ok(false) => {}
                        Err(e) => tracing::error!(
                            error = %e,
                            "listener TLS files changed but cannot be used; the previous ones stay"
                        ),
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "listener TLS files will not be watched");
        }
    }

    /// What the next handshake uses.
    pub fn config(&self) -> Arc<rustls::ServerConfig> {
        self.current.load_full()
    }

    /// What is wrong with the truststore's certificates (`weir validate` prints it).
    pub fn warnings(&self) -> Vec<String> {
        client_ca_warnings(&self.files)
    }

    /// Whether clients are asked for certificates.
    pub fn mutual(&self) -> bool {
        self.files.client_ca.is_some()
    }

    /// Reads the files again if one changed since the last look: `Ok(true)` when a new
    /// configuration took over, `Err` (the old one staying) when they do not load.
    pub fn refresh(&self) -> Result<bool, String> {
        let now = stamps(&self.files);
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if *seen == now {
            return Ok(false);
        }
        *seen = now;
        drop(seen);
        let config = server_config(&self.files)?;
        for warning in client_ca_warnings(&self.files) {
            tracing::warn!("{warning}");
        }
        self.current.store(Arc::new(config));
        Ok(true)
    }
}
