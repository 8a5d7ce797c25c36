//! A client certificate from a mutual TLS handshake, in the parts AWS names
//! (`$context.identity.clientCert`): for plugins (`host.client-cert`), Lambda events,
//! WebSocket events and the access log.

use base64::Engine;

/// A verified client certificate as AWS describes it (`$context.identity.clientCert`).
#[derive(Debug, Clone)]
pub struct ClientCert {
    /// SHA-256 of its DER: what tells two certificates apart (equality and hashing use
    /// it alone, so the authorizer cache's key hashes 32 bytes, not the PEM).
    pub fingerprint: [u8; 32],
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

impl PartialEq for ClientCert {
    fn eq(&self, other: &Self) -> bool {
        self.fingerprint == other.fingerprint
    }
}

impl Eq for ClientCert {}

impl std::hash::Hash for ClientCert {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.fingerprint.hash(state);
    }
}

impl ClientCert {
    /// From the DER of the certificate the handshake verified; `None` if it does not
    /// parse (it did for the verifier, so this is not expected).
    pub fn from_der(der: &[u8]) -> Option<Self> {
        use sha2::Digest;
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
            fingerprint: sha2::Sha256::digest(der).into(),
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

/// What is wrong with the certificates of a truststore (`client_ca_file`, as DER), for
/// `weir validate` and the log: each line names the certificate (its place in the file
/// and its subject) and why clients it signed may be refused, or it should not be
/// trusted. Empty when all is well.
pub fn truststore_warnings(certs: &[&[u8]], now: std::time::SystemTime) -> Vec<String> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    use x509_parser::public_key::PublicKey;
    let now = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let mut warnings = Vec::new();
    for (i, der) in certs.iter().enumerate() {
        let n = i + 1;
        let cert = match X509Certificate::from_der(der) {
            Ok((_, cert)) => cert,
            Err(e) => {
                warnings.push(format!("certificate {n}: does not parse as X.509: {e}"));
                continue;
            }
        };
        let mut warn =
            |why: String| warnings.push(format!("certificate {n} ({}): {why}", cert.subject()));
        let validity = cert.validity();
        if validity.not_after.timestamp() < now {
            warn(format!("expired on {}", validity.not_after));
        } else if validity.not_before.timestamp() > now {
            warn(format!("not valid before {}", validity.not_before));
        }
        let is_ca = matches!(cert.basic_constraints(), Ok(Some(bc)) if bc.value.ca);
        if !is_ca {
            warn("not a CA certificate (no basicConstraints CA:TRUE)".into());
        }
        if let Ok(Some(ku)) = cert.key_usage()
            && !ku.value.key_cert_sign()
        {
            warn("its key usage does not include certificate signing (keyCertSign)".into());
        }
        match cert.public_key().parsed() {
            Ok(PublicKey::RSA(rsa)) if rsa.key_size() < 2048 => warn(format!(
                "an RSA key of {} bits: signatures by it are refused (2048 at least)",
                rsa.key_size()
            )),
            Ok(PublicKey::RSA(_)) => {}
            Ok(PublicKey::EC(point)) if matches!(point.key_size(), 256 | 384) => {}
            Ok(PublicKey::EC(point)) => warn(format!(
                "an EC key of {} bits: only P-256 and P-384 signatures are verified",
                point.key_size()
            )),
            _ if cert.public_key().algorithm.algorithm.to_id_string() == "1.3.101.112" => {}
            _ => warn(format!(
                "its key type ({}) cannot verify client certificates",
                cert.public_key().algorithm.algorithm.to_id_string()
            )),
        }
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca(params: impl FnOnce(&mut rcgen::CertificateParams)) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "clients CA");
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params(&mut p);
        p.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn unusable_truststore_certificates_are_named() {
        let now = std::time::SystemTime::now();
        let good = ca(|_| {});
        assert_eq!(truststore_warnings(&[&good], now), Vec::<String>::new());

        let expired = ca(|p| {
            p.not_before = rcgen::date_time_ymd(2001, 1, 1);
            p.not_after = rcgen::date_time_ymd(2002, 1, 1);
        });
        let leaf = ca(|p| p.is_ca = rcgen::IsCa::ExplicitNoCa);
        let w = truststore_warnings(&[&good, &expired, &leaf, b"junk"], now);
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(
            w[0].starts_with("certificate 2 (CN=clients CA): expired on "),
            "{w:?}"
        );
        assert!(
            w[1].contains("certificate 3") && w[1].contains("not a CA"),
            "{w:?}"
        );
        assert!(w[2].starts_with("certificate 4: does not parse"), "{w:?}");
    }
}
