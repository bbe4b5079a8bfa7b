//! The control plane's keys: a CA, the apiserver's serving certificate (for 127.0.0.1 and
//! localhost, so clients verify TLS normally), and the service-account signing key.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use std::path::Path;

/// PEM texts of every key and certificate.
pub(crate) struct Pki {
    pub(crate) ca_pem: String,
    apiserver_pem: String,
    apiserver_key: String,
    sa_key: String,
    sa_pub: String,
}

impl Pki {
    pub(crate) fn generate() -> Result<Pki, rcgen::Error> {
        let ca_key = KeyPair::generate()?;
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, "kitsync test CA");
        ca.distinguished_name = name;
        let ca_cert = ca.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca, ca_key);

        let serving_key = KeyPair::generate()?;
        let mut serving = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])?;
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, "kube-apiserver");
        serving.distinguished_name = name;
        let serving_cert = serving.signed_by(&serving_key, &issuer)?;

        let sa_key = KeyPair::generate()?;
        Ok(Pki {
            ca_pem: ca_cert.pem(),
            apiserver_pem: serving_cert.pem(),
            apiserver_key: serving_key.serialize_pem(),
            sa_key: sa_key.serialize_pem(),
            sa_pub: sa_key.public_key_pem(),
        })
    }

    /// Writes `pki/{ca.crt, apiserver.crt, apiserver.key, sa.key, sa.pub}` under `dir`.
    pub(crate) fn write(&self, dir: &Path) -> std::io::Result<()> {
        let pki = dir.join("pki");
        std::fs::create_dir_all(&pki)?;
        std::fs::write(pki.join("ca.crt"), &self.ca_pem)?;
        std::fs::write(pki.join("apiserver.crt"), &self.apiserver_pem)?;
        crate::write_private(&pki.join("apiserver.key"), &self.apiserver_key)?;
        std::fs::write(pki.join("sa.pub"), &self.sa_pub)?;
        crate::write_private(&pki.join("sa.key"), &self.sa_key)
    }
}
