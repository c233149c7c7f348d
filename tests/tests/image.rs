//! The images. The worker's Dockerfile is checked without building it (a release build inside
//! a container is 10-20 minutes: `scripts/build-image` does that on demand): it parses with
//! BuildKit's own parser, and what it says agrees with the code — the binary it builds, the
//! programs golos runs, the ports it listens on, a non-root user, SIGTERM for the drain, and a
//! health check that works against a real `golos serve`. The SIP front's image
//! (infra/sip-front/Dockerfile) is small enough to build on every run, and is then run.

use golos_tests::RunningGolos;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the repository").to_path_buf()
}

/// One instruction: its keyword (upper case) and the rest, continuation lines joined.
#[derive(Debug)]
struct Instruction {
    keyword: String,
    args: String,
}

fn instructions() -> Vec<Instruction> {
    instructions_of("Dockerfile")
}

/// The instructions of the Dockerfile at `path` (from the repository's root).
fn instructions_of(path: &str) -> Vec<Instruction> {
    let text = std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
        } else {
            current.push_str(trimmed);
            let (keyword, args) = current.split_once(char::is_whitespace).unwrap_or((&current, ""));
            out.push(Instruction { keyword: keyword.to_uppercase(), args: args.trim().to_owned() });
            current.clear();
        }
    }
    out
}

/// The instructions of each stage, by stage (the `FROM` first).
fn stages() -> Vec<Vec<Instruction>> {
    let mut stages: Vec<Vec<Instruction>> = Vec::new();
    for instruction in instructions() {
        if instruction.keyword == "FROM" {
            stages.push(Vec::new());
        }
        if let Some(stage) = stages.last_mut() {
            stage.push(instruction);
        }
    }
    stages
}

fn args_of<'a>(stage: &'a [Instruction], keyword: &str) -> Vec<&'a str> {
    stage.iter().filter(|i| i.keyword == keyword).map(|i| i.args.as_str()).collect()
}

/// How many instructions BuildKit's own parser reads in the Dockerfile at `path` (through its
/// Python binding, which scripts/install-deps installs).
fn buildkit_instruction_count(path: &str) -> usize {
    let output = Command::new("python3")
        .args(["-c", "import dockerfile, sys; print(len(dockerfile.parse_file(sys.argv[1])))"])
        .arg(repo().join(path))
        .output()
        .expect("python3");
    assert!(output.status.success(), "{path}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().parse().unwrap()
}

#[test]
fn the_dockerfile_parses_with_buildkits_parser() {
    let count = buildkit_instruction_count("Dockerfile");
    assert_eq!(count, instructions().len(), "our reading of the Dockerfile agrees with BuildKit's");
}

#[test]
fn a_builder_stage_builds_the_golos_binary_and_a_slim_runtime_runs_it() {
    let stages = stages();
    assert_eq!(stages.len(), 2, "builder and runtime");
    let (builder, runtime) = (&stages[0], &stages[1]);
    assert!(builder[0].args.contains("rust:") && builder[0].args.ends_with("AS builder"), "{:?}", builder[0]);
    let build = args_of(builder, "RUN").join(" ");
    assert!(build.contains("cargo build --release --locked -p golos --bin golos"), "{build}");
    // The binary is named `golos` by media-pool/worker's package, which the workspace builds.
    let manifest = std::fs::read_to_string(repo().join("media-pool/worker/Cargo.toml")).unwrap();
    assert!(manifest.contains("name = \"golos\""));
    assert!(runtime[0].args.contains("debian:") && runtime[0].args.contains("-slim"), "{:?}", runtime[0]);
    assert!(
        args_of(runtime, "COPY").iter().any(|c| c.starts_with("--from=builder") && c.ends_with("/usr/local/bin/golos")),
        "the runtime gets the built binary"
    );
    assert_eq!(args_of(runtime, "ENTRYPOINT"), [r#"["golos"]"#]);
    assert_eq!(args_of(runtime, "CMD"), [r#"["serve"]"#]);
}

#[test]
fn the_runtime_has_the_programs_golos_runs_and_nothing_for_tests() {
    let stages = stages();
    let packages = installed_packages(&stages[1]);
    // espeak-ng: the local TTS tier; pocketsphinx_continuous and its model directory: the
    // local STT tier; CA certificates for every HTTPS provider and webhook.
    assert_eq!(golos_providers::pocketsphinx::DEFAULT_MODEL_DIR, "/usr/share/pocketsphinx/model/en-us");
    for needed in ["ca-certificates", "espeak-ng", "pocketsphinx", "pocketsphinx-en-us"] {
        assert!(packages.iter().any(|p| p == needed), "{needed} missing from {packages:?}");
    }
    for test_only in ["sox", "sip-tester", "baresip-core", "chromium", "curl", "python3"] {
        assert!(!packages.iter().any(|p| p == test_only), "{test_only} is a test tool: {packages:?}");
    }
}

#[test]
fn the_worker_runs_unprivileged_drains_on_sigterm_and_exposes_its_ports() {
    let stages = stages();
    let runtime = &stages[1];
    let users = args_of(runtime, "USER");
    assert_eq!(users.len(), 1);
    let user = users[0].split(':').next().unwrap();
    assert!(!["root", "0", ""].contains(&user), "runs as {user}");
    assert_eq!(args_of(runtime, "STOPSIGNAL"), ["SIGTERM"], "SIGTERM starts the drain (lifecycle.rs)");

    let env = args_of(runtime, "ENV").join(" ");
    let listen_port = env
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("GOLOS_LISTEN="))
        .and_then(|addr| addr.rsplit(':').next())
        .expect("GOLOS_LISTEN set: golos listens on loopback by default");
    let exposed: Vec<&str> = args_of(runtime, "EXPOSE").iter().flat_map(|e| e.split_whitespace()).collect();
    let rtp = golos_bootstrap::settings::SipSettings::default().rtp_ports;
    for port in [format!("{listen_port}/tcp"), "5060/udp".to_owned(), format!("{}-{}/udp", rtp.first, rtp.last)] {
        assert!(exposed.contains(&port.as_str()), "{port} not in EXPOSE {exposed:?}");
    }
    let default_listen = golos_bootstrap::settings::ServerSettings::default().listen;
    assert_eq!(listen_port, default_listen.port().to_string(), "the same port as outside a container");
}

#[test]
fn the_build_context_has_every_copied_file_and_no_target_dir() {
    let ignore = std::fs::read_to_string(repo().join(".dockerignore")).expect(".dockerignore");
    assert!(ignore.lines().any(|l| l.trim() == "target/"), "the target dir would be sent as context");
    for stage in stages() {
        for copy in args_of(&stage, "COPY") {
            let words: Vec<&str> = copy.split_whitespace().filter(|w| !w.starts_with("--")).collect();
            if copy.contains("--from=") || words[0] == "." {
                continue;
            }
            for source in &words[..words.len() - 1] {
                assert!(repo().join(source).exists(), "COPY {source}: no such file");
            }
        }
    }
}

/// The image's HEALTHCHECK script, run here against a real `golos serve`: 0 while it answers
/// `/health`, non-zero when nothing listens.
#[test]
fn the_health_check_passes_on_a_serving_golos_and_fails_without_one() {
    let stages = stages();
    let check = args_of(&stages[1], "HEALTHCHECK").join(" ");
    assert!(check.ends_with(r#"CMD ["golos-healthcheck"]"#), "{check}");
    assert!(args_of(&stages[1], "COPY")
        .iter()
        .any(|c| c.contains("infra/image/healthcheck /usr/local/bin/golos-healthcheck")));
    let script = repo().join("infra/image/healthcheck");
    let golos = RunningGolos::start(&[]);
    let run = |listen: &str| Command::new(&script).env("GOLOS_LISTEN", listen).output().expect("the script");
    let up = run(&golos.addr.to_string());
    assert!(up.status.success(), "{up:?}");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    assert!(!run(&format!("127.0.0.1:{port}")).status.success());
}

/// The packages an image's `apt-get install --no-install-recommends` line installs.
fn installed_packages(stage: &[Instruction]) -> Vec<String> {
    let install = args_of(stage, "RUN").join(" ");
    install
        .split("--no-install-recommends")
        .nth(1)
        .unwrap_or_else(|| panic!("no apt-get install --no-install-recommends in {install}"))
        .split_whitespace()
        .take_while(|word| !word.starts_with("&&"))
        .map(str::to_owned)
        .collect()
}

const SIP_FRONT: &str = "infra/sip-front/Dockerfile";

/// The SIP front's image (infra/sip-front/Dockerfile; its build context is that directory):
/// BuildKit reads it as we do, it copies every file `run` uses from the directory, installs
/// the programs `run` calls, starts `run`, and runs Kamailio as an unprivileged user that may
/// still bind the SIP port.
#[test]
fn the_sip_front_image_runs_its_entrypoint_unprivileged_with_the_programs_it_calls() {
    let instructions = instructions_of(SIP_FRONT);
    assert_eq!(buildkit_instruction_count(SIP_FRONT), instructions.len(), "our reading agrees with BuildKit's");
    assert!(instructions[0].keyword == "ARG" || instructions[0].keyword == "FROM");
    let from = args_of(&instructions, "FROM");
    assert_eq!(from.len(), 1, "one stage");
    assert!(from[0].contains("debian:") && from[0].contains("-slim"), "{from:?}");

    let context = repo().join("infra/sip-front");
    let mut copied = Vec::new();
    for copy in args_of(&instructions, "COPY") {
        let words: Vec<&str> = copy.split_whitespace().filter(|w| !w.starts_with("--")).collect();
        for source in &words[..words.len() - 1] {
            assert!(context.join(source).is_file(), "COPY {source}: not in infra/sip-front");
            copied.push((*source).to_owned());
        }
    }
    for needed in ["run", "render", "kamailio.cfg", "dispatcher.list.tmpl"] {
        assert!(copied.iter().any(|c| c == needed), "{needed} is not copied into the image: {copied:?}");
    }
    assert_eq!(args_of(&instructions, "ENTRYPOINT"), [r#"["/opt/sip-front/run"]"#]);

    // The programs run and render call beyond the base image's coreutils, grep, sed and awk.
    let packages = installed_packages(&instructions);
    let run = std::fs::read_to_string(context.join("run")).unwrap();
    for (program, package) in [("kamailio ", "kamailio"), ("kamcmd ", "kamailio"), ("dig ", "bind9-dnsutils")] {
        assert!(run.contains(program), "run no longer calls {program}: drop the check");
        assert!(packages.iter().any(|p| p == package), "{package} (for {program}) missing from {packages:?}");
    }

    let users = args_of(&instructions, "USER");
    assert_eq!(users.len(), 1);
    let user = users[0].split(':').next().unwrap();
    assert!(!["root", "0", ""].contains(&user), "runs as {user}");
    let setup = args_of(&instructions, "RUN").join(" ");
    assert!(
        setup.contains("setcap cap_net_bind_service=+ep /usr/sbin/kamailio"),
        "an unprivileged Kamailio needs the capability to bind 5060"
    );
    let exposed: Vec<&str> = args_of(&instructions, "EXPOSE").iter().flat_map(|e| e.split_whitespace()).collect();
    // The front speaks UDP only (kamailio.cfg: disable_tcp=yes): nothing else is exposed.
    assert_eq!(exposed, ["5060/udp"]);
    let config = std::fs::read_to_string(context.join("kamailio.cfg")).unwrap();
    assert!(config.lines().any(|l| l.trim() == "disable_tcp=yes"), "kamailio.cfg listens on TCP now: expose it");
    assert_eq!(args_of(&instructions, "STOPSIGNAL"), ["SIGTERM"], "run passes SIGTERM on to Kamailio");
}

/// The SIP front's container, stopped with its process group on drop and its buildah
/// container removed.
struct FrontContainer {
    child: std::process::Child,
    container: String,
}

impl Drop for FrontContainer {
    fn drop(&mut self) {
        // buildah run stops its container on SIGTERM; the processes inside do not take
        // signals from outside (buildah's chroot runtime blocks them), so the group is
        // killed after that, and whatever is left with it.
        let pid = self.child.id();
        let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
        let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::time::Instant::now() < until && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = Command::new("kill").args(["-KILL", "--", &format!("-{pid}")]).status();
        let _ = self.child.wait();
        let _ = Command::new("buildah").args(BUILDAH_STORAGE).args(["rm", &self.container]).output();
    }
}

/// buildah's vfs storage works on any file system (overlay needs kernel support a VM may lack).
const BUILDAH_STORAGE: [&str; 2] = ["--storage-driver", "vfs"];

/// The pids of the processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|line| String::from_utf8_lossy(&line).replace('\0', " ").contains(needle))
        })
        .collect()
}

/// A SIP response to `request` with the status line `status` and its Via, From, To, Call-ID
/// and CSeq (what RFC 3261 §8.2.6 copies).
fn sip_response(request: &str, status: &str) -> String {
    let mut response = format!("SIP/2.0 {status}\r\n");
    for line in request.lines() {
        let name = line.split(':').next().unwrap_or("").to_ascii_lowercase();
        if ["via", "from", "call-id", "cseq"].contains(&name.as_str()) {
            response.push_str(line.trim_end());
            response.push_str("\r\n");
        } else if name == "to" {
            response.push_str(line.trim_end());
            response.push_str(";tag=worker\r\n");
        }
    }
    response.push_str("Content-Length: 0\r\n\r\n");
    response
}

/// The SIP front's image built for real — buildah without a daemon, its `debian:bookworm-slim`
/// base bootstrapped from the Debian archive because no container registry is reachable here —
/// and run: its `run` renders the configuration, Kamailio starts as the image's unprivileged
/// user yet binds port 5060, probes a worker (this test answers the probes 200) and then
/// answers a trunk's OPTIONS 200, which it does only with a worker active.
#[test]
fn the_sip_front_image_builds_and_its_kamailio_answers_on_5060_as_an_unprivileged_user() {
    let build = Command::new(repo().join("scripts/build-image"))
        .args(["--bootstrap-base", "--sip-front", "golos-sip-front:test", "--pull-never"])
        .env("GOLOS_BUILDAH_STORAGE", "vfs")
        .output()
        .expect("scripts/build-image");
    assert!(build.status.success(), "the build failed: {}", String::from_utf8_lossy(&build.stderr));

    let worker = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    worker.set_read_timeout(Some(std::time::Duration::from_millis(200))).unwrap();
    let worker_addr = worker.local_addr().unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let probes = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let prober = std::thread::spawn({
        let (stop, probes) = (stop.clone(), probes.clone());
        move || {
            let mut buffer = [0u8; 4096];
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok((n, from)) = worker.recv_from(&mut buffer) else { continue };
                let request = String::from_utf8_lossy(&buffer[..n]).into_owned();
                if request.starts_with("OPTIONS ") {
                    worker.send_to(sip_response(&request, "200 OK").as_bytes(), from).unwrap();
                    probes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
    });

    let created = Command::new("buildah")
        .args(BUILDAH_STORAGE)
        .args(["from", "--pull-never", "localhost/golos-sip-front:test"])
        .output()
        .expect("buildah from");
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let container = String::from_utf8_lossy(&created.stdout).trim().to_owned();
    // Port 5060 on an address of its own, so the test needs no free port and the capability
    // on the binary is what lets an unprivileged Kamailio bind it.
    let front_addr = "127.0.0.61:5060";
    let child = {
        use std::os::unix::process::CommandExt;
        Command::new("buildah")
            .args(BUILDAH_STORAGE)
            .args(["run", "--isolation", "chroot", "--network", "host"])
            .args(["--env", &format!("SIP_FRONT_WORKERS={worker_addr}")])
            .args(["--env", "SIP_FRONT_TRUNK_NETWORKS=127.0.0.1/32"])
            .args(["--env", &format!("SIP_FRONT_LISTEN={front_addr}")])
            .args(["--env", "SIP_FRONT_PROBE_INTERVAL=1"])
            .args([&container, "--", "/opt/sip-front/run"])
            .process_group(0)
            .spawn()
            .expect("buildah run")
    };
    let front = FrontContainer { child, container };

    let trunk = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    trunk.set_read_timeout(Some(std::time::Duration::from_millis(300))).unwrap();
    let trunk_port = trunk.local_addr().unwrap().port();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut last = String::from("nothing");
    // The front answers its own OPTIONS 200 only while a worker is active; it has probed this
    // one (through the image's rendered dispatcher list) by the time the answer counts.
    for attempt in 1.. {
        let probed = probes.load(std::sync::atomic::Ordering::Relaxed);
        assert!(
            std::time::Instant::now() < deadline,
            "the front never answered 200 after probing its worker (last: {last}; probes answered: {probed})"
        );
        let options = format!(
            "OPTIONS sip:{front_addr} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{trunk_port};branch=z9hG4bK-image-{attempt};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:trunk@127.0.0.1>;tag=trunk\r\nTo: <sip:{front_addr}>\r\n\
             Call-ID: image-test-{attempt}\r\nCSeq: {attempt} OPTIONS\r\nContent-Length: 0\r\n\r\n"
        );
        trunk.send_to(options.as_bytes(), front_addr).unwrap();
        let mut buffer = [0u8; 4096];
        if let Ok(n) = trunk.recv(&mut buffer) {
            last = String::from_utf8_lossy(&buffer[..n]).lines().next().unwrap_or("").to_owned();
            if last == "SIP/2.0 200 OK" && probed > 0 {
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }

    let kamailio: Vec<u32> = processes_mentioning("-f /var/lib/sip-front/kamailio.cfg")
        .into_iter()
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "kamailio"))
        .collect();
    assert!(!kamailio.is_empty(), "no Kamailio process found");
    for pid in &kamailio {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let uid = status.lines().find_map(|l| l.strip_prefix("Uid:")).unwrap().split_whitespace().next().unwrap();
        assert_ne!(uid, "0", "Kamailio {pid} runs as root");
    }

    drop(front);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    prober.join().unwrap();
    let left = processes_mentioning("-f /var/lib/sip-front/kamailio.cfg");
    for pid in &left {
        let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
    }
    assert!(left.is_empty(), "Kamailio outlived its container: {left:?}");
}
