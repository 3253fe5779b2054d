//! The group committer keeps nothing of an append once it has answered it,
//! refused ones included: the engine appends a thousand times a second for
//! as long as it runs. In a test binary of its own, as it counts every
//! allocation of the process.

use std::alloc::System;

use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use switchboard_journal::{GroupCommitter, Journal, JournalError, RecordIter};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Takes every append, or panics on the first.
struct Stub {
    next: u64,
    panics: bool,
}

impl Journal for Stub {
    fn append(&mut self, records: &[&[u8]]) -> Result<u64, JournalError> {
        assert!(!self.panics, "the disk driver panicked");
        self.next += records.len() as u64;
        Ok(self.next - records.len() as u64)
    }
    fn next_offset(&self) -> u64 {
        self.next
    }
    fn read_from(&self, _: u64) -> Result<RecordIter, JournalError> {
        Ok(Box::new(std::iter::empty()))
    }
}

/// Allocations made and not freed while `appends` ran.
fn kept(appends: impl FnOnce()) -> isize {
    let region = Region::new(GLOBAL);
    appends();
    let change = region.change();
    change.allocations as isize - change.deallocations as isize
}

#[test]
fn appends_answered_or_refused_leave_no_allocation_behind() {
    // given a committer warmed up (its queue and results at their working size)
    let committer = GroupCommitter::new(Stub { next: 0, panics: false });
    for _ in 0..100 {
        committer.append(vec![b"warm".to_vec()]).unwrap();
    }
    // when a thousand more are answered, then they keep nothing
    let answered = kept(|| {
        for _ in 0..1000 {
            committer.append(vec![b"x".to_vec()]).unwrap();
        }
    });
    assert!(answered < 10, "{answered} allocations kept by 1000 appends");

    // given a committer whose journal panicked
    let broken = std::sync::Arc::new(GroupCommitter::new(Stub { next: 0, panics: true }));
    let leader = broken.clone();
    assert!(std::thread::spawn(move || leader.append(vec![b"x".to_vec()])).join().is_err());
    // when a thousand more are refused, then they keep nothing either
    let refused = kept(|| {
        for _ in 0..1000 {
            assert!(matches!(broken.append(vec![b"y".to_vec()]), Err(JournalError::CommitterStopped)));
        }
    });
    assert!(refused < 10, "{refused} allocations kept by 1000 refused appends");
}
