//! Registries for the tests: a real `docker-registry` (CNCF distribution) on 127.0.0.1,
//! optionally with htpasswd auth and TLS, killed by pid when dropped (also on panic); a
//! fault-injecting HTTP proxy in front of it; and images another tool made, pushed to it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::tools::{require, run_command, skopeo, umoci_layout};

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// How a test registry serves TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsSetup {
    /// A self-signed CA and a server certificate for `IP:127.0.0.1,DNS:localhost` signed by it.
    CaSigned,
    /// One self-signed certificate that is its own CA and the server's certificate, made the
    /// way Docker's docs make one (`openssl req -x509 -addext subjectAltName=...`), for the
    /// given subjectAltName (`IP:127.0.0.1`, or another name to test the name check).
    SelfSigned { subject_alt_name: &'static str },
}

/// TLS material: the certificate to trust (`ca`, what `--registry-ca` takes), the server's
/// certificate and key (the same file as `ca` for [`TlsSetup::SelfSigned`]).
pub struct Tls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A running `docker-registry`; stopped (by pid) when dropped.
pub struct Registry {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub tls: Option<Tls>,
    child: Option<Child>,
}

impl Registry {
    /// Plain HTTP, no auth.
    pub fn start() -> Self {
        Self::start_with(None, false)
    }

    /// With htpasswd auth (`user`, `password`) and/or TLS (a CA-signed server certificate).
    pub fn start_with(auth: Option<(&str, &str)>, tls: bool) -> Self {
        Self::start_with_tls(auth, tls.then_some(TlsSetup::CaSigned))
    }

    /// With htpasswd auth (`user`, `password`) and/or TLS set up as `tls` says.
    pub fn start_with_tls(auth: Option<(&str, &str)>, tls: Option<TlsSetup>) -> Self {
        require("docker-registry");
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut config = format!(
            "version: 0.1\nlog: {{level: info}}\nstorage: {{filesystem: {{rootdirectory: {}}}, delete: {{enabled: true}}}}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        let tls = tls.map(|setup| {
            require("openssl");
            let d = dir.path();
            let s = |p: &PathBuf| p.to_str().unwrap().to_string();
            if let TlsSetup::SelfSigned { subject_alt_name } = setup {
                // Docker's docs: `openssl req -x509 ... -addext subjectAltName=...`, the
                // certificate is given to the registry and to the clients as their CA.
                let (cert, key) = (d.join("ca.crt"), d.join("key.pem"));
                run_command(Command::new("openssl").args([
                    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1",
                    "-addext", &format!("subjectAltName={subject_alt_name}"),
                    "-keyout", &s(&key), "-out", &s(&cert),
                ])).ok();
                config.push_str(&format!(
                    "  tls: {{certificate: {}, key: {}}}\n",
                    cert.display(),
                    key.display()
                ));
                return Tls { ca: cert.clone(), cert, key };
            }
            // A CA (`openssl req -x509`) and a server certificate for 127.0.0.1 signed by it.
            let (ca, ca_key) = (d.join("ca.pem"), d.join("ca.key"));
            let (cert, key) = (d.join("cert.pem"), d.join("key.pem"));
            let (csr, ext) = (d.join("server.csr"), d.join("server.ext"));
            run_command(Command::new("openssl").args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                "-subj", "/CN=cargo-image-test-ca",
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                "-keyout", &s(&ca_key), "-out", &s(&ca),
            ])).ok();
            run_command(Command::new("openssl").args([
                "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
                "-keyout", &s(&key), "-out", &s(&csr),
            ])).ok();
            std::fs::write(
                &ext,
                "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature,keyEncipherment\n",
            )
            .unwrap();
            run_command(Command::new("openssl").args([
                "x509", "-req", "-in", &s(&csr), "-CA", &s(&ca), "-CAkey", &s(&ca_key),
                "-CAcreateserial", "-days", "2", "-out", &s(&cert), "-extfile", &s(&ext),
            ])).ok();
            config.push_str(&format!(
                "  tls: {{certificate: {}, key: {}}}\n",
                cert.display(),
                key.display()
            ));
            Tls { ca, cert, key }
        });
        if let Some((user, password)) = auth {
            require("htpasswd");
            let line = run_command(Command::new("htpasswd").args(["-Bbn", user, password]))
                .ok()
                .stdout;
            let htpasswd = dir.path().join("htpasswd");
            std::fs::write(&htpasswd, line).unwrap();
            config.push_str(&format!(
                "auth: {{htpasswd: {{realm: test, path: {}}}}}\n",
                htpasswd.display()
            ));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("failed to start docker-registry (run `just deps`)");
        let registry = Self {
            dir,
            port,
            tls,
            child: Some(child),
        };
        registry.wait_ready();
        registry
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "docker-registry did not listen on port {} in time; log:\n{}",
            self.port,
            self.log()
        );
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The registry's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Every request the registry answered so far, in order, from its access log
    /// (`127.0.0.1 - - [date] "METHOD URI HTTP/1.1" STATUS ...`).
    pub fn requests(&self) -> Vec<Request> {
        self.log()
            .lines()
            .filter_map(|line| {
                let (_, rest) = line.split_once("] \"")?;
                let (request, rest) = rest.split_once('"')?;
                let mut parts = request.split(' ');
                let method = parts.next()?.to_string();
                let uri = parts.next()?.to_string();
                let status = rest.split_whitespace().next()?.parse().ok()?;
                Some(Request {
                    method,
                    uri,
                    status,
                })
            })
            .collect()
    }

    /// A directory with the CA as `ca.crt` (what skopeo's `--*-cert-dir` wants).
    pub fn cert_dir(&self) -> PathBuf {
        let dir = self.dir.path().join("certs.d");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(&self.tls.as_ref().unwrap().ca, dir.join("ca.crt")).unwrap();
        dir
    }

    /// Stops the registry now.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One request of a registry's access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The path and query, as sent.
    pub uri: String,
    pub status: u16,
}

impl Request {
    /// A `GET` of a blob (its bytes downloaded).
    pub fn is_blob_download(&self) -> bool {
        self.method == "GET" && self.uri.contains("/blobs/sha256:")
    }

    /// A request that sends blob bytes (`PATCH` or `PUT` of an upload session).
    pub fn is_blob_upload(&self) -> bool {
        matches!(self.method.as_str(), "PATCH" | "PUT") && self.uri.contains("/blobs/uploads/")
    }

    /// A cross-repository mount (`POST .../blobs/uploads/?mount=...&from=...`).
    pub fn is_mount(&self) -> bool {
        self.method == "POST" && self.uri.contains("mount=")
    }

    /// Whether it is about repository `repo` (`/v2/<repo>/...`).
    pub fn in_repository(&self, repo: &str) -> bool {
        self.uri.starts_with(&format!("/v2/{repo}/"))
    }
}

/// What the proxy does with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward it.
    Pass,
    /// Close the connection without answering.
    Drop,
    /// Answer this status without forwarding (with `Retry-After: 0`).
    Status(u16),
    /// Answer this status without forwarding, with `Retry-After:` this many seconds.
    StatusRetryAfter(u16, u64),
    /// Forward it and flip one byte of the response body.
    Corrupt,
}

/// One request seen by the proxy.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub fault: Fault,
    /// When the proxy had read the whole request.
    pub at: Instant,
}

type Schedule = dyn Fn(usize, &str, &str) -> Fault + Send + Sync;

/// An HTTP/1.1 proxy on 127.0.0.1 in front of a plain-HTTP registry: one request per
/// connection (`Connection: close` both ways), faults from a deterministic schedule of
/// (request number, method, path).
pub struct Proxy {
    pub port: u16,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    pub fn start(
        upstream: u16,
        schedule: impl Fn(usize, &str, &str) -> Fault + Send + Sync + 'static,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let schedule: Arc<Schedule> = Arc::new(schedule);
        let counter = Arc::new(AtomicUsize::new(0));
        {
            let seen = seen.clone();
            let stop = stop.clone();
            thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let seen = seen.clone();
                    let schedule = schedule.clone();
                    let counter = counter.clone();
                    thread::spawn(move || {
                        let _ = handle(conn, upstream, &*schedule, &counter, &seen);
                    });
                }
            });
        }
        Self { port, seen, stop }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// How many requests had each fault.
    pub fn count(&self, fault: Fault) -> usize {
        self.seen().iter().filter(|s| s.fault == fault).count()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port)); // wake the accept loop
    }
}

fn handle(
    mut client: TcpStream,
    upstream: u16,
    schedule: &Schedule,
    counter: &AtomicUsize,
    seen: &Mutex<Vec<Seen>>,
) -> std::io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(client.try_clone()?);
    // Request line and headers.
    let mut head = Vec::new();
    let mut request_line = String::new();
    if reader.read_line(&mut request_line)? == 0 {
        return Ok(());
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    head.extend_from_slice(request_line.as_bytes());
    let mut content_length = 0usize;
    let mut chunked = false;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        if line == "\r\n" || line == "\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            content_length = v.trim().parse().unwrap_or(0);
        }
        if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
            chunked = true;
        }
        if lower.starts_with("connection:") {
            continue;
        }
        head.extend_from_slice(line.as_bytes());
    }
    head.extend_from_slice(b"Connection: close\r\n\r\n");
    // Body (raw, as sent).
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size_line = String::new();
            reader.read_line(&mut size_line)?;
            body.extend_from_slice(size_line.as_bytes());
            let size = usize::from_str_radix(size_line.trim().split(';').next().unwrap_or("0"), 16)
                .unwrap_or(0);
            let mut chunk = vec![0u8; size + 2];
            reader.read_exact(&mut chunk)?;
            body.extend_from_slice(&chunk);
            if size == 0 {
                break;
            }
        }
    } else {
        let mut buf = vec![0u8; content_length];
        reader.read_exact(&mut buf)?;
        body = buf;
    }
    let n = counter.fetch_add(1, Ordering::SeqCst);
    let fault = schedule(n, &method, &path);
    seen.lock().unwrap().push(Seen {
        method: method.clone(),
        path: path.clone(),
        fault,
        at: Instant::now(),
    });
    match fault {
        Fault::Drop => {
            let _ = client.shutdown(Shutdown::Both);
            return Ok(());
        }
        Fault::Status(code) | Fault::StatusRetryAfter(code, _) => {
            let retry_after = match fault {
                Fault::StatusRetryAfter(_, seconds) => seconds,
                _ => 0,
            };
            let reason = match code {
                429 => "Too Many Requests",
                500 => "Internal Server Error",
                502 => "Bad Gateway",
                503 => "Service Unavailable",
                _ => "Error",
            };
            let body = format!("injected {code}\n");
            let response = format!(
                "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain\r\nRetry-After: {retry_after}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            client.write_all(response.as_bytes())?;
            let _ = client.shutdown(Shutdown::Both);
            return Ok(());
        }
        Fault::Pass | Fault::Corrupt => {}
    }
    let mut up = TcpStream::connect(("127.0.0.1", upstream))?;
    up.write_all(&head)?;
    up.write_all(&body)?;
    let mut response = Vec::new();
    up.read_to_end(&mut response)?;
    if fault == Fault::Corrupt {
        if let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") {
            let body_start = end + 4;
            if response.len() > body_start {
                let last = response.len() - 1;
                response[last] ^= 0xff;
            }
        }
    }
    client.write_all(&response)?;
    let _ = client.shutdown(Shutdown::Both);
    Ok(())
}

/// Makes an image with umoci holding the file `dest` with `content` (in `dir`) and pushes it
/// with skopeo to `reference` (`HOST:PORT/REPO:TAG`) on a plain-HTTP registry; returns the
/// reference. An image "built by another tool", as a base or to pull.
pub fn push_umoci_image(dir: &Path, reference: &str, dest: &str, content: &str) -> String {
    let layout = umoci_layout(dir, "1", dest, content);
    skopeo([
        "copy".to_string(),
        "--quiet".to_string(),
        "--dest-tls-verify=false".to_string(),
        format!("oci:{}:1", layout.display()),
        format!("docker://{reference}"),
    ]);
    reference.to_string()
}
