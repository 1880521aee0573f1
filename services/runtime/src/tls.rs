//! TLS for a service's API, with rustls. A service listens on loopback by default and serves
//! plain HTTP there (a TLS-terminating proxy on the same host can front it); to listen on any
//! other address it must be given a certificate and key (`HUB_TLS_CERT`, `HUB_TLS_KEY`, PEM
//! files), or it refuses to start and says why.

use std::{path::PathBuf, sync::Arc};

use anyhow::Context as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _};

/// Where a service's certificate chain and private key are (PEM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    /// `HUB_TLS_CERT` and `HUB_TLS_KEY`: both or neither.
    pub fn from_env() -> anyhow::Result<Option<TlsFiles>> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        match (var("HUB_TLS_CERT"), var("HUB_TLS_KEY")) {
            (Some(cert), Some(key)) => Ok(Some(TlsFiles { cert: cert.into(), key: key.into() })),
            (None, None) => Ok(None),
            _ => anyhow::bail!("HUB_TLS_CERT and HUB_TLS_KEY go together: set both (PEM files) or neither"),
        }
    }

    /// The acceptor of connections to the service: TLS 1.2 and 1.3, no client certificates.
    pub fn acceptor(&self) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.cert)
            .with_context(|| format!("reading the certificate {}", self.cert.display()))?
            .collect::<Result<_, _>>()
            .with_context(|| format!("the certificate {} is not PEM", self.cert.display()))?;
        anyhow::ensure!(!certs.is_empty(), "the certificate file {} holds no certificate", self.cert.display());
        let key = PrivateKeyDer::from_pem_file(&self.key).with_context(|| format!("reading the private key {}", self.key.display()))?;
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .context("the certificate and the private key do not make a TLS configuration")?;
        Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
    }
}
