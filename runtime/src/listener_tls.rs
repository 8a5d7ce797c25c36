//! The listener's TLS: its certificate, and with `client_ca_file` mutual TLS — client
//! certificates verified against that authority, required or optional. The files are
//! looked at again every few seconds ([`ListenerTls::refresh`]): a renewed
//! certificate or truststore is used by the next handshake, without a restart; files
//! that do not load leave the previous configuration serving.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use base64::Engine;
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;

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

impl ListenerTls {
    /// Reads `files`; an error names the setting.
    pub fn load(files: ListenerFiles) -> Result<Self, String> {
        let seen = stamps(&files);
        let config = server_config(&files)?;
        Ok(Self {
            files,
            current: ArcSwap::from_pointee(config),
            seen: Mutex::new(seen),
        })
    }

    /// What the next handshake uses.
    pub fn config(&self) -> Arc<rustls::ServerConfig> {
        self.current.load_full()
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
        self.current.store(Arc::new(config));
        Ok(true)
    }
}

/// A verified client certificate as AWS describes it (`$context.identity.clientCert`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    /// The certificate, PEM.
    pub pem: String,
    /// Its subject, `CN=…, O=…`.
    pub subject_dn: String,
    /// Its issuer.
    pub issuer_dn: String,
    /// Its serial number, hex pairs joined by `:`.
    pub serial_number: String,
    /// Start of validity, `May 28 12:30:02 2019 GMT`.
    pub not_before: String,
    /// End of validity.
    pub not_after: String,
}

impl ClientCert {
    /// From the DER of the certificate the handshake verified; `None` if it does not
    /// parse (it did for the verifier, so this is not expected).
    pub fn from_der(der: &[u8]) -> Option<Self> {
        use x509_parser::prelude::{FromDer, X509Certificate};
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).ok()?);
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
        let time = |t: x509_parser::time::ASN1Time| {
            let t = t.to_datetime();
            let month = [
                "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
            ][usize::from(u8::from(t.month())) - 1];
            format!(
                "{month} {:>2} {:02}:{:02}:{:02} {} GMT",
                t.day(),
                t.hour(),
                t.minute(),
                t.second(),
                t.year()
            )
        };
        Some(ClientCert {
            pem,
            subject_dn: cert.subject().to_string(),
            issuer_dn: cert.issuer().to_string(),
            serial_number: cert
                .raw_serial()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":"),
            not_before: time(cert.validity().not_before),
            not_after: time(cert.validity().not_after),
        })
    }

    /// As Lambda events carry it (`clientCert`).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "clientCertPem": self.pem,
            "subjectDN": self.subject_dn,
            "issuerDN": self.issuer_dn,
            "serialNumber": self.serial_number,
            "validity": { "notBefore": self.not_before, "notAfter": self.not_after },
        })
    }
}
