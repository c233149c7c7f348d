//! Many workers behind one SIP address (issue #19): Debian's Kamailio runs the repository's SIP
//! front (`infra/sip-front/`, rendered by its own `render` script) on 127.0.0.3 in front of two
//! `golos serve --backend aws` workers of one deployment on moto (one store for routing and
//! billing), and SIPp is the trunk at 127.0.0.1. golos sees the front's address as every call's
//! source, so the trunk's `source_networks` in golos is the front's address, and the front keeps
//! the trunk's IP allowlist.
//!
//! Which worker took a call is told by where its RTP comes from: each worker has an RTP range
//! of its own, and the media goes direct between the trunk and the worker (the front never
//! touches the SDP). A call ends with golos's BYE once the test's media falls silent (the media
//! timeout), through the front as the front's Record-Route says.

use golos_tests::sip::{free_sip_port, stream_silence, Operator, Sipp};
use golos_tests::{AwsDeployment, RunningGolos};
use serde_json::json;
use std::fmt::Write as _;
use std::net::{SocketAddr, UdpSocket};
use std::ops::RangeInclusive;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The front's address: loopback, but neither the trunk's (127.0.0.1) nor an unknown one (127.0.0.2).
const FRONT_IP: &str = "127.0.0.3";
/// golos hangs up this long after the trunk's media falls silent.
const MEDIA_TIMEOUT_SECS: &str = "2";
const DEADLINE: Duration = Duration::from_secs(30);

/// The repository's SIP front (`infra/sip-front/run`: Kamailio in the foreground), in its own
/// process group, stopped on drop, looking its workers up again every second.
struct Front {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

/// How the front finds its workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Discovery {
    /// The lines of a file the test rewrites (`SIP_FRONT_WORKERS_COMMAND`).
    File,
    /// An SRV name (`SIP_FRONT_WORKERS_SRV`), as on AWS with Cloud Map, answered by a `dig` of
    /// the test's first on the PATH: SRV targets `worker-<i>.golos.internal.`, each an A record.
    Srv,
}

/// `dig +short SRV <name>` and `dig +short A <host>` from the files `srv` and `hosts` next to it.
const FAKE_DIG: &str = r#"#!/usr/bin/env bash
here=$(dirname "$0")
for arg in "$@"; do case $arg in SRV|A) type=$arg ;; +*) ;; *) name=$arg ;; esac; done
case $type in
  SRV) [ "$name" = _sip._udp.workers.golos.internal ] && cat "$here/srv" ;;
  A) awk -v name="$name" '$1 == name { print $2 }' "$here/hosts" ;;
esac
"#;

impl Front {
    /// The front probes each worker every `probe_secs`.
    fn start(workers: &[SocketAddr], trunk_networks: &str, discovery: Discovery, probe_secs: u32) -> Self {
        let port = UdpSocket::bind((FRONT_IP, 0)).expect("bind").local_addr().expect("address").port();
        let addr: SocketAddr = format!("{FRONT_IP}:{port}").parse().expect("an address");
        let dir = tempfile::tempdir().expect("tempdir");
        let run = Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/sip-front/run");
        let mut command = Command::new(run);
        match discovery {
            Discovery::File => {
                write_workers(dir.path(), workers);
                let workers_file = dir.path().join("workers");
                command.env("SIP_FRONT_WORKERS_COMMAND", format!("cat {}", workers_file.display()));
            }
            Discovery::Srv => {
                let bin = dir.path().join("bin");
                std::fs::create_dir(&bin).expect("bin");
                let (mut srv, mut hosts) = (String::new(), String::new());
                for (i, worker) in workers.iter().enumerate() {
                    let _ = writeln!(srv, "10 50 {} worker-{i}.golos.internal.", worker.port());
                    let _ = writeln!(hosts, "worker-{i}.golos.internal. {}", worker.ip());
                }
                std::fs::write(bin.join("srv"), srv).expect("srv");
                std::fs::write(bin.join("hosts"), hosts).expect("hosts");
                std::fs::write(bin.join("dig"), FAKE_DIG).expect("dig");
                let chmod = Command::new("chmod").arg("+x").arg(bin.join("dig")).status().expect("chmod");
                assert!(chmod.success());
                let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
                command.env("PATH", path).env("SIP_FRONT_WORKERS_SRV", "_sip._udp.workers.golos.internal");
            }
        }
        let child = command
            .env("SIP_FRONT_CONFIG", dir.path().join("kamailio.cfg"))
            .env("SIP_FRONT_LISTEN", addr.to_string())
            .env("SIP_FRONT_TRUNK_NETWORKS", trunk_networks)
            .env("SIP_FRONT_PROBE_INTERVAL", probe_secs.to_string())
            .env("SIP_FRONT_FAILOVER_TIMEOUT_MS", "1500")
            .env("SIP_FRONT_REFRESH_SECS", "1")
            .env("SIP_FRONT_KAMAILIO_ARGS", "-m 32 -M 4")
            .stderr(std::fs::File::create(dir.path().join("front.log")).expect("the front's log"))
            .process_group(0)
            .spawn()
            .expect("infra/sip-front/run (kamailio must be installed: scripts/install-deps)");
        Self { child, addr, dir }
    }

    /// What `run` and Kamailio have written to stderr so far.
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("front.log")).unwrap_or_default()
    }

    /// The workers the front dispatches to from its next look-up on.
    fn set_workers(&self, workers: &[SocketAddr]) {
        write_workers(self.dir.path(), workers);
    }

    /// Polls the front with OPTIONS until it answers `status` (200: a worker is active; 503:
    /// none is).
    async fn until_options(&self, status: u16, what: &str) {
        let until = Instant::now() + DEADLINE;
        loop {
            let front = self.addr;
            let answer = tokio::task::spawn_blocking(move || options(front)).await.expect("options");
            if answer == Some(status) {
                return;
            }
            assert!(Instant::now() < until, "{what}: the front answers OPTIONS {answer:?}, not {status}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

/// `dir/workers`: one ip:port a line, replaced at once.
fn write_workers(dir: &Path, workers: &[SocketAddr]) {
    let lines: String = workers.iter().map(|w| w.to_string() + "\n").collect();
    let staged = dir.join("workers.new");
    std::fs::write(&staged, lines).expect("write the workers");
    std::fs::rename(staged, dir.join("workers")).expect("replace the workers");
}

/// An OPTIONS from 127.0.0.1 (the trunk's network) to `to`: the status of its answer.
fn options(to: SocketAddr) -> Option<u16> {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.set_read_timeout(Some(Duration::from_millis(500))).expect("timeout");
    let local = socket.local_addr().expect("address");
    let nonce = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_nanos();
    let request = format!(
        "OPTIONS sip:{to} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{nonce}\r\nMax-Forwards: 70\r\n\
         From: <sip:probe@{local}>;tag={nonce}\r\nTo: <sip:{to}>\r\nCall-ID: {nonce}@trunk\r\nCSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    );
    socket.send_to(request.as_bytes(), to).expect("send");
    let mut buf = [0u8; 4096];
    let (len, _) = socket.recv_from(&mut buf).ok()?;
    std::str::from_utf8(&buf[..len]).ok()?.split(' ').nth(1)?.parse().ok()
}

/// A `golos serve --backend aws` worker with SIP on `sip` and the RTP range `rtp`.
fn start_worker(env: &[(&str, &str)], sip: SocketAddr, rtp: &RangeInclusive<u16>) -> RunningGolos {
    let sip_listen = sip.to_string();
    let rtp_ports = format!("{}-{}", rtp.start(), rtp.end());
    let mut env = env.to_vec();
    env.extend([
        ("GOLOS_EGRESS_ALLOW", "127.0.0.1/32"),
        ("GOLOS_SIP_LISTEN", sip_listen.as_str()),
        ("GOLOS_RTP_PORTS", rtp_ports.as_str()),
        ("GOLOS_RTP_MEDIA_TIMEOUT_SECS", MEDIA_TIMEOUT_SECS),
        ("GOLOS_DRAIN_SECS", "60"),
    ]);
    tokio::task::block_in_place(|| RunningGolos::start_aws(&env))
}

/// A trunk's call through the front, answered, with the test's media streaming silence.
struct LiveCall {
    sipp: tokio::task::JoinHandle<(bool, String)>,
    /// Where the worker's RTP comes from.
    worker_media: SocketAddr,
    stop: Arc<AtomicBool>,
    streaming: std::thread::JoinHandle<()>,
}

impl LiveCall {
    async fn open(front: SocketAddr) -> Self {
        let media = UdpSocket::bind("127.0.0.1:0").expect("bind the media socket");
        let port = media.local_addr().expect("address").port();
        let sipp = tokio::spawn(Sipp::new(front, "front-call.xml").set("rtpport", port).run_async());
        let (media, worker_media) = tokio::task::spawn_blocking(move || {
            media.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
            let mut buf = [0u8; 1500];
            let from = media.recv_from(&mut buf).map(|(_, from)| from);
            (media, from)
        })
        .await
        .expect("the media thread");
        let Ok(worker_media) = worker_media else {
            let (_, log) = sipp.await.expect("sipp");
            panic!("no worker sent the call's greeting: {log}");
        };
        let stop = Arc::new(AtomicBool::new(false));
        let streaming = std::thread::spawn({
            let stop = Arc::clone(&stop);
            move || stream_silence(&media, worker_media, 0x0f0f_0f0f, &stop)
        });
        Self { sipp, worker_media, stop, streaming }
    }

    /// Falls silent; golos hangs up (BYE through the front) after the media timeout.
    async fn hang_up(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.streaming.join().expect("the streaming thread");
        let (ok, log) = self.sipp.await.expect("sipp's task");
        assert!(ok, "the call must be answered through the front and hung up by golos through it:\n{log}");
    }
}

/// Which worker (its index in `workers`) sends the call's media.
fn worker_of(call: &LiveCall, workers: &[&RangeInclusive<u16>]) -> usize {
    let port = call.worker_media.port();
    workers.iter().position(|range| range.contains(&port)).unwrap_or_else(|| panic!("media from {port}: no worker's"))
}

fn distinct_sip_ports() -> (SocketAddr, SocketAddr) {
    loop {
        let (a, b) = (free_sip_port(), free_sip_port());
        if a != b {
            return (format!("127.0.0.1:{a}").parse().expect("addr"), format!("127.0.0.1:{b}").parse().expect("addr"));
        }
    }
}

/// Two workers of one deployment behind the front, and the café line whose trunk golos knows
/// by `identification` (its `source_networks` is the front's address).
struct Pool {
    aws: AwsDeployment,
    workers: [Option<RunningGolos>; 2],
    sip: [SocketAddr; 2],
    rtp: [RangeInclusive<u16>; 2],
    front: Front,
    operator: Operator,
    /// The org's admin key.
    key: String,
}

impl Pool {
    async fn start(name: &str, identification: &serde_json::Value, discovery: Discovery, probe_secs: u32) -> Self {
        let aws = AwsDeployment::provision(name).await;
        let operator_key = aws.init_secrets().await;
        let rtp_first = 40_000 + (std::process::id() % 100) as u16 * 200;
        let rtp = [rtp_first..=rtp_first + 99, rtp_first + 100..=rtp_first + 199];
        let (sip_a, sip_b) = distinct_sip_ports();
        let env = aws.env();
        let workers = [Some(start_worker(&env, sip_a, &rtp[0])), Some(start_worker(&env, sip_b, &rtp[1]))];
        let front = Front::start(&[sip_a, sip_b], "127.0.0.1/32", discovery, probe_secs);

        let base = workers[0].as_ref().expect("worker").base_url();
        let operator = Operator { http: reqwest::Client::new(), base, operator: operator_key.clone() };
        let org = operator.post("/v1/orgs", &operator_key, &json!({"name": "Café"})).await;
        let org_id = org["id"].as_str().expect("org id").to_owned();
        let key = operator
            .post(&format!("/v1/orgs/{org_id}/api-keys"), &operator_key, &json!({"name": "owner", "role": "admin"}))
            .await;
        let key = key["token"].as_str().expect("token").to_owned();
        let org = golos_domain::OrgId::parse(org_id.clone()).expect("org id");
        let credit = golos_testkit::fixtures::credit(&format!("{name}-1"), 100_000);
        aws.platform.stores().ledger.apply(&org, &credit, golos_testkit::fixtures::T0).await.expect("credit");
        let agent = golos_tests::cafe_agent(10, &json!([{"kind": "pocketsphinx"}]));
        operator.agent_line(&org_id, &key, &agent, identification).await;
        front.until_options(200, "the front must take calls once its workers answer its probes").await;
        Self { aws, workers, sip: [sip_a, sip_b], rtp, front, operator, key }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_spread_over_workers_behind_the_front_and_fail_over_when_one_drains_or_dies() {
    // The trunk, as golos sees it, sends from the front's address.
    let trunk = json!({"source_networks": [format!("{FRONT_IP}/32")]});
    let Pool { aws, mut workers, sip: [sip_a, sip_b], rtp: [rtp_a, rtp_b], front, operator, key } =
        Pool::start("front", &trunk, Discovery::File, 1).await;
    let env = aws.env();
    let ranges = [&rtp_a, &rtp_b];

    // The trunk's allowlist is the front's; past the front, golos takes calls from it only.
    let (ok, log) = Sipp::new(front.addr, "inbound-refused.xml").from_ip("127.0.0.2").run_async().await;
    assert!(ok, "the front must refuse 403 an INVITE from outside the trunks' networks:\n{log}");
    let (ok, log) = Sipp::new(sip_a, "inbound-refused.xml").run_async().await;
    assert!(ok, "a worker must refuse 403 the trunk calling it around the front:\n{log}");
    let mut placed = 0;

    // Calls at once spread over both workers (by a hash of their Call-IDs: two calls share a
    // worker half the time, twelve all do once in 2,048 runs).
    let mut spread = Vec::new();
    while !(spread.iter().any(|(on, _)| *on == 0) && spread.iter().any(|(on, _)| *on == 1)) {
        assert!(spread.len() < 12, "twelve calls, all on one worker");
        let call = LiveCall::open(front.addr).await;
        placed += 1;
        spread.push((worker_of(&call, &ranges), call));
    }
    for (_, call) in spread {
        call.hang_up().await;
    }

    // One worker drains (SIGTERM) with a call on it: its OPTIONS and INVITEs are answered 503,
    // so new calls go to the other; its own call goes on and ends; then it exits.
    let live = LiveCall::open(front.addr).await;
    placed += 1;
    let drained = worker_of(&live, &ranges);
    let survivor = 1 - drained;
    let draining = workers[drained].take().expect("the worker");
    let pid = draining.pid().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().expect("kill").success());
    let until = Instant::now() + DEADLINE;
    while golos_tests::get_from(draining.addr, "/ready", "").0 != 503 {
        assert!(Instant::now() < until, "the worker did not start draining");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..3 {
        let call = LiveCall::open(front.addr).await;
        placed += 1;
        assert_eq!(worker_of(&call, &ranges), survivor, "a new call while a worker drains goes to the other");
        call.hang_up().await;
    }
    live.hang_up().await;
    let exit = tokio::task::spawn_blocking(move || draining.wait()).await.expect("wait");
    assert!(exit.success(), "the drained worker exits once its call is over: {exit:?}");

    // A new worker in its place, at a new address (as ECS replaces a task), joins the front's
    // list (`dispatcher.reload`) and gets calls once it answers the probes.
    let replacement = loop {
        let port = free_sip_port();
        if port != sip_a.port() && port != sip_b.port() {
            break format!("127.0.0.1:{port}").parse().expect("an address");
        }
    };
    let rtp = if drained == 0 { &rtp_a } else { &rtp_b };
    workers[drained] = Some(start_worker(&env, replacement, rtp));
    let sip_survivor = if drained == 0 { sip_b } else { sip_a };
    front.set_workers(&[replacement, sip_survivor]);
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let call = LiveCall::open(front.addr).await;
        placed += 1;
        let on = worker_of(&call, &ranges);
        call.hang_up().await;
        if on == drained {
            break;
        }
        assert!(Instant::now() < until, "the restarted worker never got a call");
    }

    // The other worker dies (SIGKILL): new calls go to the survivor at once (a worker not
    // answering an INVITE at all fails over to the next), and the probes mark it down.
    let killed = workers[survivor].take().expect("the worker");
    drop(killed.crash());
    for _ in 0..3 {
        let call = LiveCall::open(front.addr).await;
        placed += 1;
        assert_eq!(worker_of(&call, &ranges), drained, "a new call after a worker died goes to the survivor");
        call.hang_up().await;
    }

    // Every call is one call of the shared store, ended and billed: as the survivor
    // tells it (the first worker's API may be gone).
    let mut operator = operator;
    operator.base = workers[drained].as_ref().expect("the survivor").base_url();
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let calls = operator.get("/v1/calls?limit=100", &key).await;
        let items = calls["items"].as_array().cloned().unwrap_or_default();
        // Over and billed; golos hung up each one after its media timeout, which it records as
        // `failed` (the trunk's line went silent).
        let ended = items.iter().filter(|c| c["status"] != "in_progress" && c["cost_kopecks"].is_i64()).count();
        if ended == placed {
            assert_eq!(items.len(), placed, "{calls}");
            break;
        }
        assert!(Instant::now() < until, "{placed} calls placed, {ended} ended: {calls}");
        tokio::time::sleep(Duration::from_millis(700)).await;
    }

    // With no worker left the front answers its trunk's OPTIONS and INVITEs 503 itself: only
    // its probes can tell.
    let last = workers[drained].take().expect("the worker");
    drop(last.crash());
    front.until_options(503, "the front must see its last worker die through its probes").await;
    let (ok, log) = Sipp::new(front.addr, "invite-draining.xml").run_async().await;
    assert!(ok, "with no worker the front refuses a new call 503 with Retry-After:\n{log}");
}

/// A trunk known by digest credentials behind the front: golos's 401 goes back through the
/// front, and the trunk's second INVITE (same Call-ID, the answer to the challenge) reaches
/// the worker that issued the nonce — the only one that accepts it — call after call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_trunk_behind_the_front_answers_its_challenge_to_the_worker_that_sent_it() {
    let trunk = json!({
        "source_networks": [format!("{FRONT_IP}/32")],
        "digest_username": "exolve-test",
        "digest_password": "trunk-s3cret"
    });
    // The front finds its workers by SRV, as on AWS.
    let pool = Pool::start("front-digest", &trunk, Discovery::Srv, 1).await;
    let media = UdpSocket::bind("127.0.0.1:0").expect("bind the media socket");
    let port = media.local_addr().expect("address").port();
    // Two workers: a retry sent to either at random would fail this one time in sixteen.
    for _ in 0..4 {
        let (ok, log) = Sipp::new(pool.front.addr, "front-digest-call.xml").set("rtpport", port).run_async().await;
        assert!(ok, "the challenge (401) through the front, then the answer accepted (200):\n{log}");
    }
    let records = pool.operator.ended_calls(&pool.key, 4).await;
    assert_eq!(records.len(), 4, "{records:?}");
}

/// A worker that starts draining between two probes still gets the calls the front sends it
/// before the next one: it refuses them `503`, and the front takes each to the other worker
/// (failure_route, ds_next_dst). The probes are a minute apart here, so only that failover
/// can keep those calls off the draining worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_to_a_worker_draining_between_probes_is_refused_503_and_fails_over_to_the_other() {
    let trunk = json!({"source_networks": [format!("{FRONT_IP}/32")]});
    let pool = Pool::start("front-503", &trunk, Discovery::File, 60).await;
    let ranges = [&pool.rtp[0], &pool.rtp[1]];

    // A call on worker 0 keeps it draining (rather than gone) once it is told to stop.
    let mut others = Vec::new();
    let live = loop {
        assert!(others.len() < 12, "twelve calls, none on worker 0");
        let call = LiveCall::open(pool.front.addr).await;
        if worker_of(&call, &ranges) == 0 {
            break call;
        }
        others.push(call);
    };
    for call in others {
        call.hang_up().await;
    }
    let draining = pool.workers[0].as_ref().expect("worker 0");
    let pid = draining.pid().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().expect("kill").success());
    let until = Instant::now() + DEADLINE;
    while golos_tests::get_from(draining.addr, "/ready", "").0 != 503 {
        assert!(Instant::now() < until, "the worker did not start draining");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // New calls until the front has sent one to the draining worker and taken it to the other
    // (about every second call hashes there): every one is answered, by worker 1.
    let failed_over = |log: &str| log.contains("failed the call (503): trying the next one");
    let mut calls = Vec::new();
    while !failed_over(&pool.front.log()) {
        assert!(calls.len() < 16, "sixteen calls, none sent to the draining worker:\n{}", pool.front.log());
        let call = LiveCall::open(pool.front.addr).await;
        assert_eq!(worker_of(&call, &ranges), 1, "a new call goes to the worker that is not draining");
        calls.push(call);
    }
    for call in calls {
        call.hang_up().await;
    }
    live.hang_up().await;
}
