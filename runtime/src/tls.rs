//! Reading the PEM files that `[server]`'s TLS settings name, for the listener and
//! for `https://` upstreams alike.

/// The private key in the PEM file `path`, for the setting `key`.
pub fn pem_key(
    key: &str,
    path: &std::path::Path,
) -> Result<rustls::pki_types::PrivateKeyDer<'static>, String> {
    use rustls::pki_types::PrivateKeyDer;
    use rustls::pki_types::pem::PemObject;
    PrivateKeyDer::from_pem_file(path).map_err(|e| format!("{key} {}: {e}", path.display()))
}

/// Every certificate in the PEM file `path` (at least one), for the setting `key`.
pub fn pem_certificates(
    key: &str,
    path: &std::path::Path,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let shown = path.display();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{key} {shown}: {e}"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{key} {shown}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{key} {shown}: no certificates in it"));
    }
    Ok(certs)
}
