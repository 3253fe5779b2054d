//! The engine's own log: what an operator reads on stderr when something
//! happens that no API caller sees (a recovery, a failed append, a rebuilt
//! partition), filtered by `SWITCHBOARD_LOG`.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

/// Starts `serve` on an empty data directory with `log` as the filter,
/// waits for its first stdout line, stops it, and returns that line and
/// everything it wrote to stderr.
fn serve_once(log: Option<&str>) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut serve = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    serve.args(["serve", "--listen", "127.0.0.1:0", "--data"]).arg(dir.path().join("data"));
    match log {
        Some(filter) => serve.env("SWITCHBOARD_LOG", filter),
        None => serve.env_remove("SWITCHBOARD_LOG"),
    };
    let mut child = serve.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    (first, stderr)
}

#[test]
fn serve_logs_its_recovery_to_stderr_and_keeps_stdout_for_its_address() {
    let (first, stderr) = serve_once(None);
    assert!(first.starts_with("listening on http://127.0.0.1:"), "first stdout line: {first:?}");
    assert!(stderr.contains("INFO") && stderr.contains("journal folded"), "stderr:\n{stderr}");

    let (first, stderr) = serve_once(Some("warn"));
    assert!(first.starts_with("listening on "), "first stdout line: {first:?}");
    assert!(!stderr.contains("journal folded"), "SWITCHBOARD_LOG=warn still logged info:\n{stderr}");
}

#[test]
fn a_log_filter_that_does_not_parse_is_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(&data)
        .env("SWITCHBOARD_LOG", "info,switchboard=loud")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("SWITCHBOARD_LOG") && stderr.contains("switchboard=loud"), "stderr:\n{stderr}");
    assert!(output.stdout.is_empty());
    assert!(!data.exists(), "a refused start created the data directory");
}
