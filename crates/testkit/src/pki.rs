//! Certificates made in the test (rcgen): a CA, certificates it signs with explicit validity,
//! and the files a service's `[tls]` section reads, which a test can replace to rotate them.
//!
//! ```text
//! let ca = TestCa::new("CRS test CA");
//! let files = TlsFiles::write(&ca, &ca.issue("triage"));
//! let env = files.apply(ServiceEnv::new::<crs_triage::Application>(Backend::Sqlite).await);
//! let triage = crs_testkit::service::start::<crs_triage::Application>(&env).await;   // https://
//! let client = ca.client(Some(&ca.issue("intake")));                                  // a ClientTls
//! ```

use std::path::{Path, PathBuf};

use crs_platform::tls::ClientTls;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

/// A certificate authority that lives for the test.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate, PEM: what `tls.ca_file` holds.
    pub cert_pem: String,
}

/// A certificate and its private key, PEM.
#[derive(Clone, Debug)]
pub struct Identity {
    pub cert_pem: String,
    pub key_pem: String,
}

impl TestCa {
    /// A CA named `name`, valid from an hour ago for thirty days.
    pub fn new(name: &str) -> TestCa {
        let now = OffsetDateTime::now_utc();
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        params.not_before = now - Duration::hours(1);
        params.not_after = now + Duration::days(30);
        let key = KeyPair::generate().expect("a CA key");
        let cert = params.self_signed(&key).expect("a self-signed CA certificate");
        TestCa { cert_pem: cert.pem(), issuer: Issuer::new(params, key) }
    }

    /// A certificate for `name`, usable as a server certificate for `localhost` and `127.0.0.1`
    /// and as a client certificate, valid from an hour ago for a day.
    pub fn issue(&self, name: &str) -> Identity {
        let now = OffsetDateTime::now_utc();
        self.issue_valid(name, now - Duration::hours(1), now + Duration::days(1))
    }

    /// Like [`TestCa::issue`], valid from `not_before` to `not_after`.
    pub fn issue_valid(&self, name: &str, not_before: OffsetDateTime, not_after: OffsetDateTime) -> Identity {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).expect("leaf parameters");
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        params.not_before = not_before;
        params.not_after = not_after;
        let key = KeyPair::generate().expect("a leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("a certificate signed by the CA");
        Identity { cert_pem: cert.pem(), key_pem: key.serialize_pem() }
    }

    /// A certificate for `name` that expired an hour ago.
    pub fn issue_expired(&self, name: &str) -> Identity {
        let now = OffsetDateTime::now_utc();
        self.issue_valid(name, now - Duration::days(2), now - Duration::hours(1))
    }

    /// A client that trusts this CA and presents `identity`, if any.
    pub fn client(&self, identity: Option<&Identity>) -> ClientTls {
        client(&self.cert_pem, identity)
    }
}

/// A client that trusts `ca_pem` and presents `identity`, if any.
pub fn client(ca_pem: &str, identity: Option<&Identity>) -> ClientTls {
    ClientTls::from_pem(ca_pem.as_bytes(), identity.map(|i| (i.cert_pem.as_bytes(), i.key_pem.as_bytes())))
        .expect("valid client TLS material")
}

/// The three files of a `[tls]` section, in a directory of their own.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub dir: PathBuf,
}

impl TlsFiles {
    /// Writes `identity` and the CA certificate of `ca` to a fresh directory.
    pub fn write(ca: &TestCa, identity: &Identity) -> TlsFiles {
        let dir = std::env::temp_dir().join(format!("crs-tls-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("a directory for TLS files");
        let files = TlsFiles { dir };
        files.replace(&ca.cert_pem, identity);
        files
    }

    pub fn cert_file(&self) -> PathBuf {
        self.dir.join("tls.crt")
    }

    pub fn key_file(&self) -> PathBuf {
        self.dir.join("tls.key")
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// Replaces the files (each written aside, then renamed over the old one), as a rotation does.
    pub fn replace(&self, ca_pem: &str, identity: &Identity) {
        write_atomically(&self.key_file(), &identity.key_pem);
        write_atomically(&self.cert_file(), &identity.cert_pem);
        write_atomically(&self.ca_file(), ca_pem);
    }

    /// The `CRS_TLS__*` settings that turn TLS on with these files, reloaded every second.
    pub fn vars(&self) -> Vec<(String, String)> {
        [
            ("CRS_TLS__ENABLED", "true".to_owned()),
            ("CRS_TLS__CERT_FILE", self.cert_file().display().to_string()),
            ("CRS_TLS__KEY_FILE", self.key_file().display().to_string()),
            ("CRS_TLS__CA_FILE", self.ca_file().display().to_string()),
            ("CRS_TLS__RELOAD_INTERVAL_SECS", "1".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// `env` with TLS on, from these files.
    pub fn apply(&self, mut env: crate::ServiceEnv) -> crate::ServiceEnv {
        for (key, value) in self.vars() {
            env = env.set(&key, value);
        }
        env
    }
}

fn write_atomically(path: &Path, content: &str) {
    let aside = path.with_extension("new");
    std::fs::write(&aside, content).expect("write a TLS file");
    std::fs::rename(&aside, path).expect("move a TLS file into place");
}
