//! Certificates for the NBD TLS tests, made with GnuTLS's `certtool` (Debian's
//! `gnutls-bin`) in a temporary directory: a CA, the server's certificate (for
//! `localhost` and 127.0.0.1), client certificates, and a second, unrelated CA.
//! Each client identity is a directory laid out as qemu's `tls-creds-x509` and
//! libnbd's `tls-certificates` expect: `ca-cert.pem`, `client-cert.pem`,
//! `client-key.pem`.
use std::{
    path::{Path, PathBuf},
    process::Command,
};
use ublk_snapd::nbd::TlsFiles;

pub struct Pki {
    pub dir: tempfile::TempDir,
}

fn certtool(args: &[&str]) {
    let out = Command::new("certtool")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("certtool (apt-get install gnutls-bin): {e}"));
    assert!(
        out.status.success(),
        "certtool {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn key(path: &Path) {
    certtool(&[
        "--generate-privkey",
        "--key-type=rsa",
        "--bits=2048",
        "--no-text",
        "--outfile",
        path.to_str().unwrap(),
    ]);
}

impl Pki {
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A CA named `name` (`NAME-cert.pem`, `NAME-key.pem`).
    fn ca(&self, name: &str) {
        let k = self.path(&format!("{name}-key.pem"));
        key(&k);
        let t = self.path(&format!("{name}.tmpl"));
        std::fs::write(
            &t,
            format!("cn = \"{name}\"\nca\ncert_signing_key\nexpiration_days = 2\n"),
        )
        .unwrap();
        certtool(&[
            "--generate-self-signed",
            "--load-privkey",
            k.to_str().unwrap(),
            "--template",
            t.to_str().unwrap(),
            "--outfile",
            self.path(&format!("{name}-cert.pem")).to_str().unwrap(),
        ]);
    }

    /// A certificate `name` signed by CA `ca`, with template lines `extra`.
    fn leaf(&self, name: &str, ca: &str, extra: &str) {
        let k = self.path(&format!("{name}-key.pem"));
        key(&k);
        let t = self.path(&format!("{name}.tmpl"));
        std::fs::write(
            &t,
            format!("cn = \"{name}\"\nexpiration_days = 2\nsigning_key\nencryption_key\n{extra}"),
        )
        .unwrap();
        certtool(&[
            "--generate-certificate",
            "--load-privkey",
            k.to_str().unwrap(),
            "--load-ca-certificate",
            self.path(&format!("{ca}-cert.pem")).to_str().unwrap(),
            "--load-ca-privkey",
            self.path(&format!("{ca}-key.pem")).to_str().unwrap(),
            "--template",
            t.to_str().unwrap(),
            "--outfile",
            self.path(&format!("{name}-cert.pem")).to_str().unwrap(),
        ]);
    }

    /// A client directory `dir` that trusts `ca` and presents `leaf` (if any).
    fn client_dir(&self, dir: &str, ca: &str, leaf: Option<&str>) {
        let d = self.path(dir);
        std::fs::create_dir(&d).unwrap();
        std::fs::copy(self.path(&format!("{ca}-cert.pem")), d.join("ca-cert.pem")).unwrap();
        if let Some(l) = leaf {
            std::fs::copy(
                self.path(&format!("{l}-cert.pem")),
                d.join("client-cert.pem"),
            )
            .unwrap();
            std::fs::copy(self.path(&format!("{l}-key.pem")), d.join("client-key.pem")).unwrap();
        }
    }

    /// Everything the tests use:
    /// - `ca`, `server` (localhost, 127.0.0.1), `client1` (client1.test) and
    ///   `client2` (client2.test) signed by `ca`; `rogue-ca` and `rogue` (client1.test,
    ///   signed by `rogue-ca`);
    /// - client dirs: `good` (ca, client1), `other` (ca, client2), `rogue` (ca,
    ///   and rogue-ca, rogue), `anon` (ca, no certificate), `distrust` (trusts rogue-ca only,
    ///   presents rogue).
    pub fn new() -> Pki {
        let p = Pki {
            dir: tempfile::tempdir().unwrap(),
        };
        p.ca("ca");
        p.ca("rogue-ca");
        p.leaf(
            "server",
            "ca",
            "dns_name = \"localhost\"\nip_address = \"127.0.0.1\"\ntls_www_server\n",
        );
        p.leaf(
            "client1",
            "ca",
            "dns_name = \"client1.test\"\ntls_www_client\n",
        );
        p.leaf(
            "client2",
            "ca",
            "dns_name = \"client2.test\"\ntls_www_client\n",
        );
        p.leaf(
            "rogue",
            "rogue-ca",
            "dns_name = \"client1.test\"\ntls_www_client\n",
        );
        p.client_dir("good", "ca", Some("client1"));
        p.client_dir("other", "ca", Some("client2"));
        p.client_dir("rogue", "ca", Some("rogue"));
        // it trusts our CA (for the server) and its own (qemu checks its own
        // certificate against the CAs it trusts before it connects)
        let mut both = std::fs::read(p.path("ca-cert.pem")).unwrap();
        both.extend(std::fs::read(p.path("rogue-ca-cert.pem")).unwrap());
        std::fs::write(p.path("rogue").join("ca-cert.pem"), both).unwrap();
        p.client_dir("anon", "ca", None);
        p.client_dir("distrust", "rogue-ca", Some("rogue"));
        p
    }

    /// The server's files: its certificate, mutual TLS with `ca` if `mutual`, and
    /// the allow-list `allow`.
    pub fn server_files(&self, mutual: bool, allow: &[&str]) -> TlsFiles {
        TlsFiles {
            cert: self.path("server-cert.pem"),
            key: self.path("server-key.pem"),
            client_ca: mutual.then(|| self.path("ca-cert.pem")),
            allow: allow.iter().map(|s| s.to_string()).collect(),
        }
    }
}
