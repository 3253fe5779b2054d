//! Recovery: the state is a fold of the whole journal, checked as it goes.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use prost::Message;
use switchboard_domain::Envelope;
use switchboard_journal::{EmbeddedJournal, Journal, JournalOptions};

use crate::error::EngineError;
use crate::shard::DomainEntry;

/// Opens the journal in `dir` for writing and folds every record into the
/// state of its domain, refusing any record it cannot explain.
/// `window` bounds each domain's [`crate::shard::Recent`], which is refilled
/// from the log so that a command retried across a restart is still
/// recognised.
pub(crate) fn recover(
    dir: &Path,
    window: usize,
) -> Result<(EmbeddedJournal, BTreeMap<String, DomainEntry>), EngineError> {
    let journal_error = |source| EngineError::Journal { dir: dir.to_path_buf(), source };
    let (journal, recovery) = EmbeddedJournal::open(dir, JournalOptions::default()).map_err(journal_error)?;
    if recovery.damage.is_some() || recovery.truncated_bytes > 0 {
        tracing::warn!(%recovery, "journal recovered");
    }
    let mut domains: BTreeMap<String, DomainEntry> = BTreeMap::new();
    for record in journal.read_from(0).map_err(journal_error)? {
        let (offset, bytes) = record.map_err(journal_error)?;
        let envelope =
            Envelope::decode(bytes.as_slice()).map_err(|source| EngineError::Undecodable { offset, source })?;
        let entry =
            domains.entry(envelope.domain.clone()).or_insert_with(|| DomainEntry::new(&envelope.domain, window));
        entry.state.apply(&envelope).map_err(|violation| EngineError::Violation { offset, violation })?;
        entry.recent.record(Arc::new(envelope));
    }
    for (domain, entry) in &domains {
        entry
            .state
            .check_invariants()
            .map_err(|violation| EngineError::Invariant { domain: domain.clone(), violation })?;
    }
    tracing::info!(records = journal.next_offset(), domains = domains.len(), "journal folded");
    Ok((journal, domains))
}
