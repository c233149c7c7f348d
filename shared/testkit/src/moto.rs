//! A moto server for the AWS contract tests: the one named by `GOLOS_MOTO_ENDPOINT` (how
//! `.ci/run` shares one server between test processes), or one this process starts itself
//! from `moto_server.py` on a free loopback port, which exits when this process does.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const ENDPOINT_ENV: &str = "GOLOS_MOTO_ENDPOINT";

struct Server {
    endpoint: String,
    _child: Option<ChildGuard>,
}

struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

static SERVER: OnceLock<Server> = OnceLock::new();

/// The endpoint URL of a running moto server, starting one if needed.
///
/// # Panics
/// When moto is not installed (`pip install 'moto[server]'`) or does not start within 30 s:
/// the AWS suites must run, never be skipped.
pub fn endpoint() -> String {
    SERVER.get_or_init(start).endpoint.clone()
}

fn start() -> Server {
    if let Ok(endpoint) = std::env::var(ENDPOINT_ENV) {
        if !endpoint.is_empty() {
            wait_until_listening(&endpoint);
            return Server { endpoint, _child: None };
        }
    }
    let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/moto_server.py");
    let child = Command::new("python3")
        .args([script, "--host", "127.0.0.1", "--port", &port.to_string(), "--exit-with-parent"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 must be installed to run moto (pip install 'moto[server]')");
    let endpoint = format!("http://127.0.0.1:{port}");
    let guard = ChildGuard(child);
    wait_until_listening(&endpoint);
    Server { endpoint, _child: Some(guard) }
}

fn wait_until_listening(endpoint: &str) {
    let addr = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(addr).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("moto server at {endpoint} did not start within 30 s; is moto installed? (pip install 'moto[server]')");
}

/// A name unique to this test run, for tables and queues.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}
