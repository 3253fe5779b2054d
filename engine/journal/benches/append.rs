//! Append throughput of the embedded journal beside a baseline of the same
//! payload bytes written with one plain `write_all` + `sync_data` per batch
//! (no framing, no checksum), at batches of 1, 100 and 10,000 records of 256
//! bytes. Both write to a growing file in a temp dir. After criterion's own
//! output it prints the medians and the journal/baseline ratio.

use std::fs::OpenOptions;
use std::io::Write;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use switchboard_journal::{EmbeddedJournal, Journal, JournalOptions};

const RECORD_BYTES: usize = 256;
const BATCH_SIZES: [usize; 3] = [1, 100, 10_000];
const SAMPLES: usize = 10;

/// Per-iteration times (ns) of every call criterion made, warm-up included;
/// the last `SAMPLES` are the measured samples criterion's median is taken over.
#[derive(Default)]
struct Timings(Vec<f64>);

impl Timings {
    fn record(&mut self, iters: u64, elapsed: Duration) -> Duration {
        self.0.push(elapsed.as_nanos() as f64 / iters as f64);
        elapsed
    }

    fn median(&self) -> Option<f64> {
        if self.0.len() < SAMPLES {
            return None; // filtered out, or `cargo test --benches` mode
        }
        let mut samples = self.0[self.0.len() - SAMPLES..].to_vec();
        samples.sort_by(f64::total_cmp);
        Some((samples[SAMPLES / 2 - 1] + samples[SAMPLES / 2]) / 2.0)
    }
}

fn main() {
    let mut criterion = Criterion::default()
        .sample_size(SAMPLES)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let mut summary = Vec::new();

    for batch in BATCH_SIZES {
        let records: Vec<Vec<u8>> = (0..batch).map(|i| vec![(i % 251) as u8; RECORD_BYTES]).collect();
        let slices: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
        let flat = records.concat();
        let dir = tempfile::tempdir().expect("temp dir");

        let mut group = criterion.benchmark_group(format!("append_batch_{batch}"));
        group.throughput(Throughput::Bytes(flat.len() as u64));

        let (mut journal, _) =
            EmbeddedJournal::open(dir.path().join("journal"), JournalOptions::default()).expect("open journal");
        let mut journal_times = Timings::default();
        group.bench_function("journal", |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    journal.append(&slices).expect("append");
                }
                journal_times.record(iters, start.elapsed())
            })
        });
        drop(journal);

        let path = dir.path().join("baseline.bin");
        let mut file = OpenOptions::new().create(true).append(true).open(&path).expect("open baseline file");
        let mut baseline_times = Timings::default();
        group.bench_function("baseline_write_sync", |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    file.write_all(&flat).expect("write");
                    file.sync_data().expect("sync");
                }
                baseline_times.record(iters, start.elapsed())
            })
        });
        group.finish();

        if let (Some(j), Some(b)) = (journal_times.median(), baseline_times.median()) {
            summary.push((batch, flat.len() as f64, j, b));
        }
    }

    criterion.final_summary();
    if !summary.is_empty() {
        println!("\nmedians (payload bytes/s; baseline = write_all + sync_data, no framing)");
        println!("{:>7} {:>14} {:>14} {:>7}", "batch", "journal", "baseline", "ratio");
        for (batch, bytes, journal_ns, baseline_ns) in summary {
            let mib_s = |ns: f64| bytes / (ns / 1e9) / (1024.0 * 1024.0);
            println!(
                "{batch:>7} {:>10.2} MiB/s {:>8.2} MiB/s {:>6.1}%",
                mib_s(journal_ns),
                mib_s(baseline_ns),
                100.0 * baseline_ns / journal_ns
            );
        }
    }
}
