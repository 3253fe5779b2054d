//! How long the disk under a data directory takes to make an append
//! durable: the journal's own pattern (append a record, `fdatasync`, at a
//! steady pace), timed call by call.
//!
//! Every decision the engine makes waits for such an fsync before anyone
//! hears of it, so the disk's slowest fsyncs are a floor under the offer
//! latency's tail: a stall of 50 ms holds every decision of those 50 ms.
//! Run it on the engine's disk, with the engine stopped, to know that floor
//! before reading a load test's p99.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::stats::{format_ms as ms, Latency, LatencySummary};

/// What to probe and how.
#[derive(Debug, Clone)]
pub struct ProbeOptions {
    /// The directory whose disk is probed; the probe's file is made there
    /// and removed at the end.
    pub dir: PathBuf,
    /// How long to probe.
    pub duration: Duration,
    /// Bytes appended before each fsync (a group commit's worth).
    pub record_bytes: usize,
    /// The pause after each fsync before the next append.
    pub interval: Duration,
}

/// What the probe measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeReport {
    /// The fsyncs' latency.
    pub fsync: LatencySummary,
    /// Fsyncs longer than 5 ms.
    pub over_5ms: u64,
    /// Fsyncs longer than 10 ms.
    pub over_10ms: u64,
    /// Bytes appended in all: one record a fsync.
    pub bytes: u64,
}

impl ProbeReport {
    /// One line of JSON for tools.
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).expect("a report serializes")
    }

    /// One paragraph for people.
    pub fn render_text(&self) -> String {
        format!(
            "{} fsyncs: p50 {}, p99 {}, p99.9 {}, max {}; {} over 5 ms, {} over 10 ms ({} bytes appended)\n",
            self.fsync.count,
            ms(self.fsync.p50_ms),
            ms(self.fsync.p99_ms),
            ms(self.fsync.p999_ms),
            ms(self.fsync.max_ms),
            self.over_5ms,
            self.over_10ms,
            self.bytes,
        )
    }
}

/// Appends `record_bytes`, calls `fdatasync` and pauses `interval`, again
/// and again for `duration`, in a new file in `dir` that is removed
/// afterwards.
pub fn probe(options: &ProbeOptions) -> io::Result<ProbeReport> {
    let path = options.dir.join(format!("switchboard-disk-probe-{}", std::process::id()));
    let file = OpenOptions::new().append(true).create_new(true).open(&path)?;
    let measured = run(&file, options);
    drop(file);
    let removed = fs::remove_file(&path);
    let report = measured?;
    removed?;
    Ok(report)
}

fn run(mut file: &File, options: &ProbeOptions) -> io::Result<ProbeReport> {
    let record = vec![b'x'; options.record_bytes];
    let mut latency = Latency::default();
    let (mut over_5ms, mut over_10ms) = (0, 0);
    let end = Instant::now() + options.duration;
    while Instant::now() < end {
        file.write_all(&record)?;
        let started = Instant::now();
        file.sync_data()?;
        let took = started.elapsed();
        latency.record(took);
        over_5ms += u64::from(took > Duration::from_millis(5));
        over_10ms += u64::from(took > Duration::from_millis(10));
        thread::sleep(options.interval);
    }
    let bytes = latency.count() * record.len() as u64;
    Ok(ProbeReport { fsync: latency.summary(), over_5ms, over_10ms, bytes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_times_fsyncs_and_leaves_nothing_behind() {
        // given an empty directory
        let dir = tempfile::tempdir().unwrap();
        let options = ProbeOptions {
            dir: dir.path().to_owned(),
            duration: Duration::from_millis(200),
            record_bytes: 100,
            interval: Duration::from_millis(1),
        };

        // when it is probed for 200 ms
        let report = probe(&options).unwrap();

        // then fsyncs were timed, and the probe's file is gone
        assert!(report.fsync.count > 0);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_directory_that_is_not_there_is_an_error_and_nothing_is_made() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let options = ProbeOptions {
            dir: missing.clone(),
            duration: Duration::from_millis(10),
            record_bytes: 100,
            interval: Duration::ZERO,
        };
        assert_eq!(probe(&options).unwrap_err().kind(), io::ErrorKind::NotFound);
        assert!(!missing.exists());
    }
}
