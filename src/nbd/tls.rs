//! TLS for the NBD server (`NBD_OPT_STARTTLS`): the server's X.509 identity, the
//! optional check of client certificates (a CA they must chain to, and an allow-list
//! of names), and [`accept`], which runs the TLS handshake on a socket that has just
//! acknowledged `STARTTLS` and returns a reader and a writer that may be used from
//! different threads (the transmission phase reads requests on one thread while its
//! workers write replies).
//!
//! Built on rustls with the `ring` provider: TLS 1.3 and 1.2, no other versions.
//! rustls has no external pre-shared keys (qemu's and nbdkit's PSK mode): see
//! docs/cli.md.
//!
//! # Invariants
//! - Lock order: the socket's write lock, then the connection's lock. Records are
//!   encrypted and written under the write lock, so they reach the socket in the
//!   order of their sequence numbers; the connection's lock is never held across a
//!   blocking socket read or write, so the reader decrypting and a writer writing do
//!   not wait for each other.
//! - Memory per connection: one 16 KiB receive buffer, and rustls's own buffers;
//!   a writer encrypts at most [`WRITE_PIECE`] bytes before writing them out.
//! - A client certificate is checked during the handshake, so a certificate that
//!   does not chain to the client CA, or whose names are not allowed, fails the
//!   handshake with a TLS alert before any NBD option is read over TLS.
use crate::{Error, Result};
use parking_lot::Mutex;
use rustls::{
    client::danger::HandshakeSignatureValid,
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer, ServerName, UnixTime},
    server::{
        danger::{ClientCertVerified, ClientCertVerifier},
        ServerConnection, WebPkiClientVerifier,
    },
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig,
    SignatureScheme,
};
use std::{
    io::{self, Read, Write},
    path::{Path, PathBuf},
    sync::Arc,
};

/// Plaintext bytes a writer encrypts before writing them to the socket.
pub const WRITE_PIECE: usize = 64 * 1024;
/// The receive buffer of a connection's reader.
const READ_BUF: usize = 16 * 1024;

/// Where the TLS identity comes from (the daemon's command line).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// The server's certificate chain, PEM (leaf first).
    pub cert: PathBuf,
    /// The server's private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// Client certificates must chain to one of these CAs (PEM); `None`: clients
    /// are not asked for a certificate.
    pub client_ca: Option<PathBuf>,
    /// With `client_ca`: only certificates valid for one of these names (DNS names
    /// or IP addresses in the certificate's subjectAltName) are let in; empty: any
    /// certificate the CA signed.
    pub allow: Vec<String>,
}

/// A loaded TLS configuration, shared by every connection.
#[derive(Debug, Clone)]
pub struct Tls {
    config: Arc<ServerConfig>,
}

impl Tls {
    /// Load the certificates and key of `f` and check that they belong together.
    pub fn load(f: &TlsFiles) -> Result<Tls> {
        // ring, not aws-lc-rs (rustls's default, which builds aws-lc's C with cmake):
        // rustls 0.23.48 deprecates ring's provider for lacking post-quantum key
        // exchange, which none of the NBD clients (GnuTLS) would negotiate here anyway
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certs = read_certs(&f.cert)?;
        let key = PrivateKeyDer::from_pem_file(&f.key)
            .map_err(|e| Error::Invalid(format!("TLS key {}: {e}", f.key.display())))?;
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| Error::Invalid(format!("TLS versions: {e}")))?;
        let builder = match &f.client_ca {
            None => {
                if !f.allow.is_empty() {
                    return Err(Error::Invalid(
                        "an allow-list of client names needs a client CA".into(),
                    ));
                }
                builder.with_no_client_auth()
            }
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                for c in read_certs(ca)? {
                    roots
                        .add(c)
                        .map_err(|e| Error::Invalid(format!("client CA {}: {e}", ca.display())))?;
                }
                let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .map_err(|e| Error::Invalid(format!("client CA {}: {e}", ca.display())))?;
                let allow = f
                    .allow
                    .iter()
                    .map(|n| {
                        ServerName::try_from(n.as_str())
                            .map(|s| s.to_owned())
                            .map_err(|e| Error::Invalid(format!("client name {n:?}: {e}")))
                    })
                    .collect::<Result<Vec<_>>>()?;
                builder.with_client_cert_verifier(Arc::new(Allowed { inner, allow }))
            }
        };
        let config = builder
            .with_single_cert(certs, key)
            .map_err(|e| Error::Invalid(format!("TLS certificate and key: {e}")))?;
        Ok(Tls {
            config: Arc::new(config),
        })
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let bad = |e: &dyn std::fmt::Display| Error::Invalid(format!("{}: {e}", path.display()));
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(&e))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| bad(&e))?;
    if certs.is_empty() {
        return Err(bad(&"no certificate in the file"));
    }
    Ok(certs)
}

/// The client CA's verifier, plus the allow-list of names.
#[derive(Debug)]
struct Allowed {
    inner: Arc<dyn ClientCertVerifier>,
    allow: Vec<ServerName<'static>>,
}

impl ClientCertVerifier for Allowed {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> std::result::Result<ClientCertVerified, rustls::Error> {
        let ok = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        if self.allow.is_empty() {
            return Ok(ok);
        }
        let ee = webpki::EndEntityCert::try_from(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        if self
            .allow
            .iter()
            .any(|n| ee.verify_is_valid_for_subject_name(n).is_ok())
        {
            Ok(ok)
        } else {
            tracing::warn!("NBD TLS client certificate not in the allow-list");
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The state both halves of a connection share.
struct Shared<W> {
    conn: Mutex<ServerConnection>,
    sock: Mutex<W>,
}

impl<W: Write> Shared<W> {
    /// Write out whatever TLS records the connection has queued (alerts, tickets,
    /// key updates, handshake messages).
    fn flush_records(&self) -> io::Result<()> {
        // mostly nothing: then do not wait for a writer's long socket write
        if !self.conn.lock().wants_write() {
            return Ok(());
        }
        let mut sock = self.sock.lock();
        let mut out = Vec::new();
        {
            let mut c = self.conn.lock();
            while c.wants_write() {
                c.write_tls(&mut out)?;
            }
        }
        if !out.is_empty() {
            sock.write_all(&out)?;
            sock.flush()?;
        }
        Ok(())
    }
}

/// The reading half: decrypts what the client sent.
pub struct TlsReader<R, W> {
    raw: R,
    shared: Arc<Shared<W>>,
    buf: Box<[u8]>,
    /// `buf[at..end]` was received but not yet given to rustls.
    at: usize,
    end: usize,
    /// The socket reached end of file (told to rustls).
    eof: bool,
}

/// The writing half: encrypts replies.
pub struct TlsWriter<W> {
    shared: Arc<Shared<W>>,
}

impl<R, W> std::fmt::Debug for TlsReader<R, W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsReader")
    }
}

impl<W> std::fmt::Debug for TlsWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsWriter")
    }
}

impl<R: Read, W: Write> TlsReader<R, W> {
    /// The socket underneath (to change its timeouts).
    pub fn raw_mut(&mut self) -> &mut R {
        &mut self.raw
    }

    /// Give rustls the next received bytes (reading the socket if none are
    /// pending); `Ok(false)`: nothing more will come.
    fn feed(&mut self) -> io::Result<bool> {
        if self.at == self.end {
            if self.eof {
                return Ok(false);
            }
            let n = self.raw.read(&mut self.buf)?;
            (self.at, self.end) = (0, n);
            if n == 0 {
                self.eof = true;
            }
        }
        let res = {
            let mut c = self.shared.conn.lock();
            let mut pending = &self.buf[self.at..self.end];
            let n = c.read_tls(&mut pending)?;
            self.at += n;
            c.process_new_packets().map(|_| ())
        };
        // alerts on failure, session tickets or key updates on success
        let flushed = self.shared.flush_records();
        res.map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        flushed?;
        Ok(true)
    }
}

impl<R: Read, W: Write> Read for TlsReader<R, W> {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        if b.is_empty() {
            return Ok(0);
        }
        loop {
            match self.shared.conn.lock().reader().read(b) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            if !self.feed()? {
                // the reader saw end of file: its next read says clean or not
                return self.shared.conn.lock().reader().read(b);
            }
        }
    }
}

impl<W: Write> Write for TlsWriter<W> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        let mut sock = self.shared.sock.lock();
        let mut out = Vec::with_capacity(WRITE_PIECE.min(b.len()) + 1024);
        for piece in b.chunks(WRITE_PIECE) {
            {
                let mut c = self.shared.conn.lock();
                let mut rest = piece;
                while !rest.is_empty() {
                    let n = c.writer().write(rest)?;
                    rest = &rest[n..];
                    while c.wants_write() {
                        c.write_tls(&mut out)?;
                    }
                    if n == 0 && !rest.is_empty() {
                        return Err(io::Error::new(
                            io::ErrorKind::WriteZero,
                            "the TLS connection takes no more data",
                        ));
                    }
                }
            }
            sock.write_all(&out)?;
            out.clear();
        }
        sock.flush()?;
        Ok(b.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Both halves, for the part of the handshake that runs over TLS.
pub struct Duplex<R, W> {
    /// The reading half.
    pub r: TlsReader<R, W>,
    /// The writing half.
    pub w: TlsWriter<W>,
}

impl<R: Read, W: Write> Read for Duplex<R, W> {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        self.r.read(b)
    }
}

impl<R: Read, W: Write> Write for Duplex<R, W> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.w.write(b)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }
}

/// Run the server side of a TLS handshake over `raw` (reads) and `sock` (writes),
/// two handles of one socket. A failure (a certificate refused, garbage, a
/// timeout of `raw`) is an error; the alert, if any, has been sent.
pub fn accept<R: Read, W: Write>(tls: &Tls, raw: R, sock: W) -> io::Result<Duplex<R, W>> {
    let conn = ServerConnection::new(tls.config.clone()).map_err(io::Error::other)?;
    let shared = Arc::new(Shared {
        conn: Mutex::new(conn),
        sock: Mutex::new(sock),
    });
    let mut r = TlsReader {
        raw,
        shared: shared.clone(),
        buf: vec![0u8; READ_BUF].into_boxed_slice(),
        at: 0,
        end: 0,
        eof: false,
    };
    loop {
        shared.flush_records()?;
        if !shared.conn.lock().is_handshaking() {
            break;
        }
        if !r.feed()? {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the client left during the TLS handshake",
            ));
        }
    }
    Ok(Duplex {
        r,
        w: TlsWriter { shared },
    })
}
