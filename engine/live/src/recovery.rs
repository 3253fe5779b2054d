//! Recovery: the state is a fold of the journal, checked as it goes, started
//! from the newest valid snapshots when there are some.
//!
//! With snapshots, the fold reads from the lowest covered offset of the set
//! used (one snapshot per shard of the count they were written with). A
//! domain restored from a snapshot skips its records below that snapshot's
//! covered offset, which its state already holds (checked: each must have a
//! sequence the state has passed); every other record is applied exactly as
//! in a full fold. A domain in no snapshot had no event below its shard's
//! covered offset, so reading from the lowest one finds all of its events.
//! If anything in that path fails, the snapshots are set aside and the whole
//! journal is folded: a snapshot is only a cache, never a reason not to start.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use prost::Message;
use switchboard_domain::{Envelope, Violation};
use switchboard_journal::{EmbeddedJournal, Journal, JournalOptions};

use crate::engine::shard_of;
use crate::error::{EngineError, SnapshotError};
use crate::shard::DomainEntry;
use crate::snapshot::{self, Chosen};

/// How the last start rebuilt the state: what it read, and which snapshots
/// it used or passed over. See [`Engine::recovery_report`](crate::Engine::recovery_report).
#[derive(Debug, Default)]
pub struct RecoveryReport {
    /// Records in the journal at start (after a torn tail was cut).
    pub journal_end: u64,
    /// The offset the fold started at: 0 without snapshots, else the lowest
    /// covered offset of the snapshots used.
    pub read_from: u64,
    /// Records read and decoded (from `read_from` to `journal_end`, twice
    /// that much if the snapshots were set aside halfway).
    pub records_read: u64,
    /// Records folded into a state; the rest were already in a snapshot.
    pub events_applied: u64,
    /// The snapshot files the state was rebuilt from.
    pub snapshots_used: Vec<PathBuf>,
    /// Snapshot files passed over, and why.
    pub snapshots_rejected: Vec<(PathBuf, SnapshotError)>,
}

/// What [`recover`] hands the engine.
pub(crate) struct Recovered {
    pub(crate) journal: EmbeddedJournal,
    pub(crate) domains: BTreeMap<String, DomainEntry>,
    pub(crate) report: RecoveryReport,
    /// Per shard of the engine's shard count: the covered offset of the
    /// snapshot it started from, if the snapshots used have that count.
    pub(crate) covered: Vec<Option<u64>>,
}

/// Opens the journal in `dir` for writing and rebuilds every domain's state:
/// from the newest valid snapshots and the journal after them if
/// `use_snapshots`, else (or if that fails) by folding every record.
/// Refuses any record it cannot explain, naming its offset. `window`
/// bounds each domain's [`crate::shard::Recent`], which is refilled from the
/// snapshot and the log so that a command retried across a restart is still
/// recognised. `shards` is the engine's shard count.
pub(crate) fn recover(dir: &Path, window: usize, use_snapshots: bool, shards: usize) -> Result<Recovered, EngineError> {
    let journal_error = |source| EngineError::Journal { dir: dir.to_path_buf(), source };
    let (journal, recovery) = EmbeddedJournal::open(dir, JournalOptions::default()).map_err(journal_error)?;
    if recovery.damage.is_some() || recovery.truncated_bytes > 0 {
        tracing::warn!(%recovery, "journal recovered");
    }
    let mut report = RecoveryReport { journal_end: journal.next_offset(), ..RecoveryReport::default() };
    let mut covered = vec![None; shards];
    let chosen = if use_snapshots {
        snapshot::choose(dir, report.journal_end, shard_of, &mut report.snapshots_rejected)
    } else {
        None
    };
    let mut folded = None;
    if let Some(chosen) = chosen {
        let files: Vec<PathBuf> = chosen.files.iter().map(|(path, _, _)| path.clone()).collect();
        let same_count = chosen.shards == shards;
        let offsets: Vec<u64> = chosen.files.iter().map(|(_, covered, _)| *covered).collect();
        match from_snapshots(&journal, chosen, window, &mut report) {
            Ok(domains) => {
                if same_count {
                    covered = offsets.into_iter().map(Some).collect();
                }
                report.snapshots_used = files;
                folded = Some(domains);
            }
            Err(e) => {
                tracing::warn!(error = %e, "the journal disagrees with the snapshots: folding the whole journal");
                let reason = e.to_string();
                report.snapshots_rejected.extend(
                    files
                        .into_iter()
                        .map(|path| (path.clone(), SnapshotError::Disagrees { path, reason: reason.clone() })),
                );
            }
        }
    }
    let domains = match folded {
        Some(domains) => domains,
        None => {
            report.read_from = 0;
            let mut domains = BTreeMap::new();
            fold(&journal, &mut domains, &HashMap::new(), window, &mut report)?;
            check(&domains)?;
            domains
        }
    };
    tracing::info!(
        records = report.journal_end,
        read_from = report.read_from,
        applied = report.events_applied,
        snapshots = report.snapshots_used.len(),
        domains = domains.len(),
        "journal folded"
    );
    Ok(Recovered { journal, domains, report, covered })
}

/// Restores the domains of `chosen` and folds the journal after them.
fn from_snapshots(
    journal: &EmbeddedJournal,
    chosen: Chosen,
    window: usize,
    report: &mut RecoveryReport,
) -> Result<BTreeMap<String, DomainEntry>, EngineError> {
    report.read_from = chosen.files.iter().map(|(_, covered, _)| *covered).min().unwrap_or(0);
    let mut domains = BTreeMap::new();
    let mut restored = HashMap::new();
    for (_, covered, loaded) in chosen.files {
        for domain in loaded {
            restored.insert(domain.state.domain.clone(), covered);
            domains.insert(domain.state.domain.clone(), DomainEntry::restored(domain, window));
        }
    }
    fold(journal, &mut domains, &restored, window, report)?;
    check(&domains)?;
    Ok(domains)
}

/// Folds every record from `report.read_from` into the state of its domain.
/// `restored` gives, per domain restored from a snapshot, the offset that
/// snapshot covers: the domain's records below it are in its state already.
fn fold(
    journal: &EmbeddedJournal,
    domains: &mut BTreeMap<String, DomainEntry>,
    restored: &HashMap<String, u64>,
    window: usize,
    report: &mut RecoveryReport,
) -> Result<(), EngineError> {
    let journal_error = |source| EngineError::Journal { dir: journal.dir().to_path_buf(), source };
    for record in journal.read_from(report.read_from).map_err(journal_error)? {
        let (offset, bytes) = record.map_err(journal_error)?;
        report.records_read += 1;
        let envelope =
            Envelope::decode(bytes.as_slice()).map_err(|source| EngineError::Undecodable { offset, source })?;
        if restored.get(&envelope.domain).is_some_and(|&covered| offset < covered) {
            let last_sequence = domains.get(&envelope.domain).map_or(0, |entry| entry.state.last_sequence);
            if envelope.sequence > last_sequence {
                let detail = format!(
                    "the snapshot's state ends at sequence {last_sequence}, but covers offset {offset}, holding sequence {}",
                    envelope.sequence
                );
                let rule = "a snapshot holds every event of its domains below its covered offset";
                let violation =
                    Violation { sequence: envelope.sequence, event_id: envelope.event_id.clone(), rule, detail };
                return Err(EngineError::Violation { offset, violation });
            }
            continue;
        }
        DomainEntry::fold_logged(domains, Arc::new(envelope), window)
            .map_err(|violation| EngineError::Violation { offset, violation })?;
        report.events_applied += 1;
    }
    Ok(())
}

/// Checks every domain's whole state against the invariants.
fn check(domains: &BTreeMap<String, DomainEntry>) -> Result<(), EngineError> {
    for (domain, entry) in domains {
        entry
            .state
            .check_invariants()
            .map_err(|violation| EngineError::Invariant { domain: domain.clone(), violation })?;
    }
    Ok(())
}
