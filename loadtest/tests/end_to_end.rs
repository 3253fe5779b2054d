//! End to end: the real server (`switchboard serve`) on a generated
//! configuration, a short low-rate load from the real binary, replies only
//! and then with WebSockets; no errors, every conversation finished, and
//! the journal verifies afterwards (`switchboard replay --verify`).
//!
//! The server binary is `target/<profile>/switchboard` beside this test's
//! own directory, which `cargo test --workspace` builds (the switchboard
//! package has integration tests) and `cargo build --workspace` too; or
//! the path in `SWITCHBOARD_BIN`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const LOADTEST: &str = env!("CARGO_BIN_EXE_switchboard-loadtest");

fn server_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("SWITCHBOARD_BIN") {
        return PathBuf::from(path);
    }
    // target/<profile>/deps/end_to_end-<hash> -> target/<profile>/switchboard
    let exe = std::env::current_exe().expect("the test knows where it is");
    let profile_dir = exe.parent().and_then(Path::parent).expect("the test runs from target/<profile>/deps");
    let server = profile_dir.join(format!("switchboard{}", std::env::consts::EXE_SUFFIX));
    assert!(
        server.exists(),
        "{} is missing: build it first (`cargo build --bin switchboard`, or `cargo test --workspace`), \
         or point SWITCHBOARD_BIN at a switchboard binary",
        server.display()
    );
    server
}

/// The server, stopped (and killed if need be) when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(binary: &Path, config: &Path, data: &Path) -> Self {
        let mut child = Command::new(binary)
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(config)
            .arg("--data")
            .arg(data)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the server starts");
        let stdout = child.stdout.take().expect("piped");
        let (lines, first) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
        let line = first.recv_timeout(Duration::from_secs(60)).expect("the server prints where it listens");
        let url = line.strip_prefix("listening on ").expect("`listening on URL` comes first").trim().to_owned();
        Self { child, url }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then up to 10 s for a clean stop (then `Drop` kills it).
    fn stop(mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.pid().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// How the simulated agents talk to the engine.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Agents {
    /// HTTP only.
    Http,
    /// HTTP, and listening on their WebSockets.
    Listening,
    /// Commands on their WebSockets too.
    OnSockets,
}

fn load(server: &Server, seed: u64, agents: Agents) -> serde_json::Value {
    let mut command = Command::new(LOADTEST);
    command.args(["--target", &server.url, "--rate", "50", "--duration", "3", "--seed", &seed.to_string()]);
    command.args(["--agents", "40", "--tenant", "e2e", "--offer-timeout-ms", "1000", "--drain", "20", "--quiet"]);
    command.args(["--engine-pid", &server.pid().to_string()]);
    match agents {
        Agents::Http => {}
        Agents::Listening => {
            command.arg("--ws");
        }
        Agents::OnSockets => {
            command.arg("--ws-commands");
        }
    }
    let output = command.output().expect("the load generator runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "the load generator failed");
    let last = stdout.lines().last().expect("output");
    serde_json::from_str(last).expect("the output ends with one line of JSON")
}

#[test]
fn a_short_load_finishes_every_conversation_without_errors_and_the_journal_verifies() {
    let server_bin = server_binary();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("load.toml");
    let data = dir.path().join("data");
    let generated = Command::new(LOADTEST)
        .args(["config", "--agents", "40", "--tenant", "e2e", "--offer-timeout-ms", "1000"])
        .output()
        .unwrap();
    assert!(generated.status.success());
    std::fs::write(&config, &generated.stdout).unwrap();

    let server = Server::start(&server_bin, &config, &data);
    for (seed, agents) in [(11, Agents::Http), (12, Agents::Listening), (13, Agents::OnSockets)] {
        let summary = load(&server, seed, agents);
        assert_eq!(summary["errors"], 0, "{agents:?}: {summary}");
        assert_eq!(summary["unfinished"], 0, "{agents:?}: {summary}");
        // Only agents' commands go on their sockets, and only when asked to.
        let on_sockets = summary["requests_on_socket"].as_u64().unwrap();
        let arrivals = summary["arrivals"].as_u64().unwrap();
        match agents {
            Agents::OnSockets => assert!(on_sockets > 3 * arrivals, "{summary}"),
            _ => assert_eq!(on_sockets, 0, "{summary}"),
        }
        let completed = summary["lifecycles_completed"].as_u64().unwrap();
        assert!(arrivals > 100, "~150 customers in 3 s at 50/s: {summary}");
        assert!(completed > arrivals * 8 / 10, "most conversations complete: {summary}");
        assert!(summary["events"].as_u64().unwrap() >= 8 * completed, "at least 8 events a lifecycle: {summary}");
        assert!(summary["lifecycles_per_s"].as_f64().unwrap() > 0.0);
        assert!(summary["offer_p99_ms"].as_f64().is_some() && summary["ack_p99_ms"].as_f64().is_some());
        assert!(summary["engine_peak_rss_mb"].as_f64().unwrap() > 0.0, "{summary}");
    }
    server.stop();

    let replay = Command::new(&server_bin).args(["replay", "--verify", "--data"]).arg(&data).output().unwrap();
    assert!(
        replay.status.success(),
        "replay --verify failed:\n{}{}",
        String::from_utf8_lossy(&replay.stdout),
        String::from_utf8_lossy(&replay.stderr)
    );
}
