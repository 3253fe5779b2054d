//! The behaviour every [`Journal`] must have, as a reusable test suite.
//!
//! Each check takes a factory `FnMut(Option<J>) -> J`: called with `None` it
//! must return an empty journal on fresh storage; called with `Some(journal)`
//! it must close that journal and return one reopened on the same storage.
//! Checks panic on the first violation, so call them from `#[test]`s:
//!
//! ```ignore
//! switchboard_journal::conformance::run_all(|previous| match previous {
//!     None => MyJournal::create_fresh(),
//!     Some(journal) => journal.reopen(),
//! });
//! ```

use crate::{Journal, Record};

/// Runs every check below, each on its own fresh journal.
pub fn run_all<J: Journal>(mut factory: impl FnMut(Option<J>) -> J) {
    append_then_read_round_trips(&mut factory);
    offsets_are_dense_across_batches(&mut factory);
    reads_start_at_any_offset(&mut factory);
    empty_batch_is_a_no_op(&mut factory);
    large_record_round_trips(&mut factory);
    multi_record_batches_read_back_whole_and_in_order(&mut factory);
    reopen_sees_every_acknowledged_record(&mut factory);
    reading_past_the_end_is_an_error(&mut factory);
}

fn read_all<J: Journal + ?Sized>(journal: &J, from: u64) -> Vec<Record> {
    journal
        .read_from(from)
        .unwrap_or_else(|e| panic!("read_from({from}) failed: {e}"))
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("reading from {from} failed: {e}"))
}

fn append<J: Journal + ?Sized>(journal: &mut J, records: &[Vec<u8>]) -> u64 {
    let slices: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
    journal.append(&slices).unwrap_or_else(|e| panic!("append of {} records failed: {e}", records.len()))
}

/// Records of varied lengths (including empty) with contents tied to `seed`.
fn sample(seed: u8, count: usize) -> Vec<Vec<u8>> {
    (0..count).map(|i| (0..(i * 7) % 50).map(|j| seed ^ (i as u8).wrapping_mul(31) ^ j as u8).collect()).collect()
}

fn numbered(from: u64, records: &[Vec<u8>]) -> Vec<Record> {
    (from..).zip(records.iter().cloned()).collect()
}

/// Given a fresh journal, when a batch is appended, then it reads back
/// byte-for-byte from offset 0.
pub fn append_then_read_round_trips<J: Journal>(factory: &mut impl FnMut(Option<J>) -> J) {
    let mut journal = factory(None);
    assert_eq!(journal.next_offset(), 0, "a fresh journal must be empty");
    let records = sample(1, 20);
    assert_eq!(append(&mut journal, &records), 0);
    assert_eq!(journal.next_offset(), 20);
    assert_eq!(read_all(&journal, 0), numbered(0, &records));
}

/// Given several batches, then each starts where the previous ended and
/// offsets run 0, 1, 2, … with no gap.
pub fn offsets_are_dense_across_batches<J: Journal>(factory: &mut impl FnMut(Option<J>) -> J) {
    let mut journal = factory(None);
    let mut all = Vec::new();
    for (seed, size) in [(1u8, 1usize), (2, 5), (3, 1), (4, 17)] {
        let batch = sample(seed, size);
        let first = append(&mut journal, &batch);
        assert_eq!(first, all.len() as u64, "batch must start at the next offset");
        all.extend(batch);
    }
    assert_eq!(journal.next_offset(), all.len() as u64);
    let offsets: Vec<u64> = read_all(&journal, 0).iter().map(|(o, _)| *o).collect();
    assert_eq!(offsets, (0..all.len() as u64).collect::<Vec<_>>());
}

/// Given records, when reading from the start, the middle, the last record
/// and the end, then exactly the records from there on come back.
pub fn reads_start_at_any_offset<J: Journal>(factory: &mut impl FnMut(Option<J>) -> J) {
    let mut journal = factory(None);
    let records = sample(7, 40);
    for chunk in records.chunks(9) {
        append(&mut journal, chunk);
    }
    let expected = numbered(0, &records);
    for from in 0..=records.len() {
        assert_eq!(read_all(&journal, from as u64), expected[from..].to_vec(), "read_from({from})");
    }
}

/// Given a journal with records, when an empty batch is appended, then
/// nothing is written and the next offset is returned.
pub fn empty_batch_is_a_no_op<J: Journal>(factory: &mut impl FnMut(Option<J>) -> J) {
    let mut journal = factory(None);
    assert_eq!(journal.append(&[]).expect("empty append"), 0);
    append(&mut journal, &sample(3, 3));
    assert_eq!(journal.append(&[]).expect("empty append"), 3);
    assert_eq!(journal.next_offset(), 3);
    assert_eq!(read_all(&journal, 0).len(), 3);
}

/// Given a 1 MiB record between small ones, then it reads back intact.
pub fn large_record_round_trips<J: Journal>(factory: &mut impl FnMut(Option<J>) -> J) {
    let mut journal = factory(None);
    let large: Vec<u8> = (0..1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let records = vec![b"before".to_vec(), large, b"after".to_vec()];
    append(&mut journal, &records);
    assert_eq!(read_all(&journal, 0), numbered(0, &records));
    assert_eq!(read_all(&journal, 1), numbered(1, &records[1..]));
}

/// Given batches of several records, when read back (also after a reopen and
/// from an offset inside a batch), then every record of every batch is there,
/// in the order it was appended.
pub fn multi_record_batches_read_back_whole_and_in_order<J: Journal>(factory: &mut impl FnMut(Option<J>) -> J) {
    let mut journal = factory(None);
    let batches: Vec<Vec<Vec<u8>>> =
        [3usize, 1, 4, 2].iter().enumerate().map(|(b, &n)| (0..n).map(|r| vec![b as u8, r as u8]).collect()).collect();
    for batch in &batches {
        append(&mut journal, batch);
    }
    let expected = numbered(0, &batches.concat());
    assert_eq!(read_all(&journal, 0), expected);
    let journal = factory(Some(journal));
    assert_eq!(journal.next_offset(), 10, "every record of every acknowledged batch survives a reopen");
    assert_eq!(read_all(&journal, 0), expected);
    assert_eq!(read_all(&journal, 5), expected[5..].to_vec(), "read_from inside a batch");
}

/// Given acknowledged appends, when the journal is closed and reopened, then
/// every record is there and new appends continue the offsets.
pub fn reopen_sees_every_acknowledged_record<J: Journal>(factory: &mut impl FnMut(Option<J>) -> J) {
    let mut journal = factory(None);
    let first = sample(5, 12);
    append(&mut journal, &first);
    let mut journal = factory(Some(journal));
    assert_eq!(journal.next_offset(), 12);
    assert_eq!(read_all(&journal, 0), numbered(0, &first));

    let second = sample(6, 4);
    assert_eq!(append(&mut journal, &second), 12);
    let journal = factory(Some(journal));
    let mut all = first;
    all.extend(second);
    assert_eq!(read_all(&journal, 0), numbered(0, &all));
}

/// Given records, then reading from one past `next_offset` is an error.
pub fn reading_past_the_end_is_an_error<J: Journal>(factory: &mut impl FnMut(Option<J>) -> J) {
    let mut journal = factory(None);
    append(&mut journal, &sample(9, 2));
    assert!(read_all(&journal, 2).is_empty());
    assert!(journal.read_from(3).is_err(), "read_from past next_offset must fail");
}
