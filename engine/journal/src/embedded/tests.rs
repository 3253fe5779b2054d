use super::*;
use crate::conformance;
use proptest::prelude::*;
use tempfile::TempDir;

fn open(dir: &Path) -> (EmbeddedJournal, Recovery) {
    EmbeddedJournal::open(dir, JournalOptions::default()).expect("open")
}

/// Small enough that a handful of records spans several segments.
fn tiny() -> JournalOptions {
    JournalOptions { segment_bytes: 100, index_interval: 3 }
}

fn sample(count: usize) -> Vec<Vec<u8>> {
    (0..count).map(|i| (0..10 + 3 * i).map(|j| (i * 17 + j) as u8).collect()).collect()
}

fn append_each(journal: &mut EmbeddedJournal, records: &[Vec<u8>]) {
    for record in records {
        journal.append(&[record]).expect("append");
    }
}

/// Appends `records` as consecutive batches of the given sizes.
fn append_batches(journal: &mut EmbeddedJournal, records: &[Vec<u8>], sizes: &[usize]) {
    assert_eq!(sizes.iter().sum::<usize>(), records.len());
    let mut rest = records;
    for &size in sizes {
        let (batch, later) = rest.split_at(size);
        let slices: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
        journal.append(&slices).expect("append");
        rest = later;
    }
}

/// Record counts at which a batch ends, from 0: sizes 1, 3 give 0, 1, 4.
fn batch_ends(sizes: &[usize]) -> Vec<usize> {
    let mut ends = vec![0];
    for size in sizes {
        ends.push(ends.last().unwrap() + size);
    }
    ends
}

fn collect(iter: RecordIter) -> Vec<Vec<u8>> {
    iter.map(|r| r.expect("record").1).collect()
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| matches!(classify(p.file_name().unwrap().to_str().unwrap()), EntryKind::Segment(_)))
        .collect();
    files.sort();
    files
}

/// Byte position of each frame in a single segment holding `records`, plus the end.
fn frame_positions(records: &[Vec<u8>]) -> Vec<u64> {
    let mut positions = vec![SEGMENT_HEADER_LEN];
    for record in records {
        let last = *positions.last().unwrap();
        positions.push(last + (FRAME_HEADER_LEN + record.len()) as u64);
    }
    positions
}

fn copy_dir(from: &Path) -> TempDir {
    let to = tempfile::tempdir().unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), to.path().join(entry.file_name())).unwrap();
    }
    to
}

fn cut(path: &Path, len: u64) {
    OpenOptions::new().write(true).open(path).unwrap().set_len(len).unwrap();
}

fn flip_bit(path: &Path, position: u64, bit: u8) {
    let mut bytes = fs::read(path).unwrap();
    bytes[position as usize] ^= 1 << bit;
    fs::write(path, bytes).unwrap();
}

#[test]
fn embedded_journal_passes_the_conformance_suite() {
    for options in [JournalOptions::default(), tiny()] {
        let mut dirs = Vec::new();
        conformance::run_all(|previous: Option<EmbeddedJournal>| {
            let dir = match previous {
                Some(journal) => journal.dir().to_path_buf(),
                None => {
                    dirs.push(tempfile::tempdir().unwrap());
                    dirs.last().unwrap().path().to_path_buf()
                }
            };
            EmbeddedJournal::open(dir, options.clone()).expect("open").0
        });
    }
}

/// The crash tests' batches: the last two records are one batch, as are
/// records 4 and 5, so cuts fall inside and exactly between their records.
const CRASH_BATCHES: [usize; 4] = [1, 3, 2, 2];

#[test]
fn crash_inside_the_last_two_batches_keeps_exactly_the_complete_batches_before_the_cut() {
    // given 8 acknowledged records in one segment, in batches of 1, 3, 2 and 2
    let original = tempfile::tempdir().unwrap();
    let records = sample(8);
    {
        let (mut journal, _) = open(original.path());
        append_batches(&mut journal, &records, &CRASH_BATCHES);
    }
    let positions = frame_positions(&records);
    let ends = batch_ends(&CRASH_BATCHES);
    let segment_name = segment_files(original.path())[0].file_name().unwrap().to_owned();

    for at in positions[4]..=positions[8] {
        // when the file is cut at that byte (as a crash mid-write leaves it)
        let dir = copy_dir(original.path());
        let segment = dir.path().join(&segment_name);
        cut(&segment, at);
        let whole = positions.iter().rposition(|&p| p <= at).unwrap();
        let kept = *ends.iter().rev().find(|&&end| positions[end] <= at).unwrap();
        let dropped = at - positions[kept];
        let unfinished = (whole - kept) as u64;

        // then a read-only open sees only the complete batches, reports the tail and changes nothing
        let (reader, seen) = EmbeddedJournal::open_read_only(dir.path()).unwrap();
        assert_eq!(reader.next_offset(), kept as u64, "read-only, cut at {at}");
        assert_eq!(collect(reader.read_from(0).unwrap()), records[..kept].to_vec(), "cut at {at}");
        assert!(reader.read_from(kept as u64 + 1).is_err(), "no record of the unfinished batch is readable");
        assert_eq!(seen.truncated_bytes, dropped);
        assert_eq!(seen.damage.as_ref().map_or(0, |d| d.unfinished_records), unfinished);
        assert_eq!(fs::metadata(&segment).unwrap().len(), at);

        // and a writer keeps exactly those records and reports the cut
        let (mut journal, recovery) = open(dir.path());
        assert_eq!(recovery.records, kept as u64, "cut at {at}");
        assert_eq!(recovery.truncated_bytes, dropped, "cut at {at}");
        if dropped == 0 {
            assert_eq!(recovery.truncated_at_offset, None);
            assert_eq!(recovery.damage, None);
        } else {
            assert_eq!(recovery.truncated_at_offset, Some(kept as u64));
            let damage = recovery.damage.clone().unwrap();
            assert_eq!((damage.kind, damage.cut), (DamageKind::TornTail, true));
            assert_eq!((damage.position, damage.offset), (positions[kept], kept as u64));
            assert_eq!(
                (damage.unfinished_records, damage.unfinished_bytes),
                (unfinished, positions[whole] - positions[kept])
            );
        }
        assert_eq!(fs::metadata(&segment).unwrap().len(), positions[kept]);

        // and new appends go right after them and read back, also after a reopen
        assert_eq!(journal.append(&[b"after the crash", b"and its end"]).unwrap(), kept as u64);
        let mut expected = records[..kept].to_vec();
        expected.extend([b"after the crash".to_vec(), b"and its end".to_vec()]);
        assert_eq!(collect(journal.read_from(0).unwrap()), expected);
        drop(journal);
        let (journal, recovery) = open(dir.path());
        assert_eq!(recovery.damage, None);
        assert_eq!(collect(journal.read_from(0).unwrap()), expected);
    }
}

#[test]
fn only_the_last_record_of_each_batch_carries_the_end_of_batch_flag() {
    // given batches of 1, 3, 2 and 2 records
    let dir = tempfile::tempdir().unwrap();
    let records = sample(8);
    append_batches(&mut open(dir.path()).0, &records, &CRASH_BATCHES);

    // then bit 31 of the length field is set exactly on records 0, 3, 5 and 7
    let bytes = fs::read(&segment_files(dir.path())[0]).unwrap();
    let positions = frame_positions(&records);
    let flagged: Vec<usize> = (0..records.len()).filter(|&i| bytes[positions[i] as usize + 3] & 0x80 != 0).collect();
    assert_eq!(flagged, vec![0, 3, 5, 7]);
    // and the length read back has the flag masked off
    assert_eq!(collect(open(dir.path()).0.read_from(0).unwrap()), records);
}

#[test]
fn flipped_bit_anywhere_in_the_last_record_is_cut_as_a_torn_tail() {
    let records = sample(5);
    let positions = frame_positions(&records);
    // length field, checksum field, payload
    for position in [positions[4], positions[4] + 5, positions[4] + 9] {
        // given a journal whose last record has one flipped bit
        let dir = tempfile::tempdir().unwrap();
        append_each(&mut open(dir.path()).0, &records);
        let segment = &segment_files(dir.path())[0];
        flip_bit(segment, position, 1);

        // when it is opened
        let (journal, recovery) = open(dir.path());

        // then the last record is cut as a torn tail and the rest is intact
        assert_eq!(recovery.truncated_at_offset, Some(4), "flip at {position}");
        assert_eq!(recovery.damage.unwrap().kind, DamageKind::TornTail);
        assert_eq!(collect(journal.read_from(0).unwrap()), records[..4].to_vec());
    }
}

#[test]
fn flipped_bit_in_a_middle_record_refuses_to_open_and_destroys_nothing() {
    let records = sample(5);
    let positions = frame_positions(&records);
    // payload bit, the END_OF_BATCH flag (caught by the CRC), and a length bit (a frame claiming 1 GiB)
    for (position, bit) in [(positions[2] + 10, 0), (positions[2] + 3, 7), (positions[2] + 3, 6)] {
        // given a journal whose record 2 of 5 has one flipped bit
        let dir = tempfile::tempdir().unwrap();
        append_each(&mut open(dir.path()).0, &records);
        let segment = segment_files(dir.path())[0].clone();
        flip_bit(&segment, position, bit);
        let before = fs::read(&segment).unwrap();

        // when a writer opens it, then it is refused, naming where
        match EmbeddedJournal::open(dir.path(), JournalOptions::default()) {
            Err(JournalError::Corrupt { segment: s, position: p, offset, .. }) => {
                assert_eq!((s, p, offset), (segment.clone(), positions[2], 2));
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
        // and the file is unchanged
        assert_eq!(fs::read(&segment).unwrap(), before);

        // and a read-only open reads up to the corruption and reports it
        let (reader, recovery) = EmbeddedJournal::open_read_only(dir.path()).unwrap();
        assert_eq!(collect(reader.read_from(0).unwrap()), records[..2].to_vec());
        let damage = recovery.damage.clone().unwrap();
        assert_eq!((damage.kind, damage.offset, damage.cut), (DamageKind::Corrupt, 2, false));
        assert_eq!(recovery.truncated_bytes, before.len() as u64 - positions[2]);
        assert!(recovery.to_string().contains("corrupt at offset 2"));
        assert_eq!(fs::read(&segment).unwrap(), before);
    }
}

#[test]
fn a_flipped_end_of_batch_flag_in_a_middle_batch_is_corruption() {
    let records = sample(5);
    let sizes = [1, 3, 1];
    let positions = frame_positions(&records);
    // the flag cleared on the record ending the middle batch, or set on its first record
    for flipped in [3usize, 1] {
        // given batches [0], [1, 2, 3], [4] with the END_OF_BATCH bit of one record flipped
        let dir = tempfile::tempdir().unwrap();
        append_batches(&mut open(dir.path()).0, &records, &sizes);
        let segment = segment_files(dir.path())[0].clone();
        flip_bit(&segment, positions[flipped] + 3, 7);
        let before = fs::read(&segment).unwrap();

        // when a writer opens it, then it is refused, naming the flipped record
        match EmbeddedJournal::open(dir.path(), JournalOptions::default()) {
            Err(JournalError::Corrupt { segment: s, position, offset, reason }) => {
                assert_eq!((s, position, offset), (segment.clone(), positions[flipped], flipped as u64));
                assert_eq!(reason, "frame checksum mismatch");
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
        assert_eq!(fs::read(&segment).unwrap(), before);

        // and a read-only open reads only the complete batch before it
        let (reader, recovery) = EmbeddedJournal::open_read_only(dir.path()).unwrap();
        assert_eq!(collect(reader.read_from(0).unwrap()), records[..1].to_vec());
        let damage = recovery.damage.clone().unwrap();
        assert_eq!((damage.kind, damage.position, damage.offset), (DamageKind::Corrupt, positions[1], 1));
        assert_eq!(damage.unfinished_records, flipped as u64 - 1);
        assert_eq!(recovery.truncated_at_offset, Some(1));
        assert_eq!(recovery.truncated_bytes, before.len() as u64 - positions[1]);
        let message = recovery.to_string();
        assert!(message.starts_with(&format!("log is corrupt at offset {flipped}")), "{message}");
        if flipped == 3 {
            assert!(message.contains("ignores the 2 whole records of the batch the damage interrupts"), "{message}");
        }
        assert_eq!(fs::read(&segment).unwrap(), before);
    }
}

#[test]
fn a_lost_page_of_the_last_batch_is_a_torn_tail_but_not_once_another_batch_follows() {
    // given batch [a], then batch [b1, b2, b3] whose first sector's part never
    // reached the disk (zeros from b1 to the 512-byte boundary) while the rest did
    let records: Vec<Vec<u8>> = (1..=5u8).map(|i| vec![i; 300]).collect();
    let positions = frame_positions(&records);
    let lose_first_page = |path: &Path| {
        let mut bytes = fs::read(path).unwrap();
        bytes[positions[1] as usize..512].fill(0);
        fs::write(path, bytes).unwrap();
    };
    for later_batch in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let sizes: &[usize] = if later_batch { &[1, 3, 1] } else { &[1, 3] };
        let count = sizes.iter().sum();
        append_batches(&mut open(dir.path()).0, &records[..count], sizes);
        let segment = segment_files(dir.path())[0].clone();
        lose_first_page(&segment);

        let opened = EmbeddedJournal::open(dir.path(), JournalOptions::default());
        if later_batch {
            // then, with a batch written after it (so the damaged one was acknowledged), it is corruption
            assert!(matches!(opened, Err(JournalError::Corrupt { .. })), "{opened:?}");
        } else {
            // then, as the last batch, it was never acknowledged: cut back to [a]
            let (journal, recovery) = opened.unwrap();
            let damage = recovery.damage.unwrap();
            assert_eq!((damage.kind, damage.position, damage.offset), (DamageKind::TornTail, positions[1], 1));
            assert_eq!(collect(journal.read_from(0).unwrap()), records[..1].to_vec());
        }
    }
}

#[test]
fn a_flipped_bit_in_the_last_batch_with_whole_records_after_it_is_corruption_even_among_zeros() {
    // given batch [a], then batch [b1, b2, b3] where b1's payload is zeros (whole
    // sectors of them) with one bit flipped, and b2, b3 intact after it
    let records = vec![vec![1; 300], vec![0; 1200], vec![2; 300], vec![3; 300]];
    let positions = frame_positions(&records);
    let dir = tempfile::tempdir().unwrap();
    append_batches(&mut open(dir.path()).0, &records, &[1, 3]);
    let segment = segment_files(dir.path())[0].clone();
    flip_bit(&segment, positions[1] + FRAME_HEADER_LEN as u64 + 600, 0);

    // when a writer opens it, then it is refused: the damage is no lost page, and whole records follow it
    let opened = EmbeddedJournal::open(dir.path(), JournalOptions::default());
    assert!(matches!(opened, Err(JournalError::Corrupt { position, .. }) if position == positions[1]), "{opened:?}");
}

#[test]
fn a_segment_ending_inside_a_batch_is_corruption_unless_it_is_the_last() {
    // given two segments: batch [a, b] in the first, [c] in the second
    let options = JournalOptions { segment_bytes: 1, index_interval: 1 };
    let dir = tempfile::tempdir().unwrap();
    let records = sample(3);
    append_batches(&mut EmbeddedJournal::open(dir.path(), options.clone()).unwrap().0, &records, &[2, 1]);
    let segments = segment_files(dir.path());
    assert_eq!(segments.len(), 2);
    // and the first segment's last frame rewritten without END_OF_BATCH, with a valid checksum
    let positions = frame_positions(&records[..2]);
    let mut forged = fs::read(&segments[0]).unwrap();
    forged.truncate(positions[1] as usize);
    encode_frame(&mut forged, &records[1], false);
    fs::write(&segments[0], &forged).unwrap();

    // when a writer opens it, then it is refused: a batch is never split across segments
    match EmbeddedJournal::open(dir.path(), options.clone()) {
        Err(JournalError::Corrupt { segment, position, offset, reason }) => {
            assert_eq!((segment, position, offset), (segments[0].clone(), positions[2], 2));
            assert!(reason.contains("never split across segments"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert_eq!(fs::read(&segments[0]).unwrap(), forged);

    // and a read-only open reads nothing of the split batch
    let (reader, recovery) = EmbeddedJournal::open_read_only(dir.path()).unwrap();
    assert_eq!(reader.next_offset(), 0);
    let damage = recovery.damage.unwrap();
    assert_eq!((damage.kind, damage.position, damage.unfinished_records), (DamageKind::Corrupt, SEGMENT_HEADER_LEN, 2));
    let second = fs::metadata(&segments[1]).unwrap().len();
    assert_eq!(recovery.truncated_bytes, positions[2] - SEGMENT_HEADER_LEN + second);

    // when the second segment is gone, the same bytes are an unfinished last batch
    fs::remove_file(&segments[1]).unwrap();
    let (mut journal, recovery) = EmbeddedJournal::open(dir.path(), options).unwrap();
    // then it is cut back to the header, and appends start again at offset 0
    let damage = recovery.damage.unwrap();
    assert_eq!((damage.kind, damage.cut, damage.unfinished_records), (DamageKind::TornTail, true, 2));
    assert_eq!(fs::metadata(&segments[0]).unwrap().len(), SEGMENT_HEADER_LEN);
    assert_eq!(journal.append(&[b"again"]).unwrap(), 0);
    assert_eq!(collect(journal.read_from(0).unwrap()), vec![b"again".to_vec()]);
}

#[test]
fn a_version_1_segment_is_refused_as_an_unsupported_format_and_left_alone() {
    // given a segment whose header says format version 1
    let dir = tempfile::tempdir().unwrap();
    append_each(&mut open(dir.path()).0, &sample(2));
    let segment = segment_files(dir.path())[0].clone();
    let mut bytes = fs::read(&segment).unwrap();
    bytes[7] = 1;
    fs::write(&segment, &bytes).unwrap();

    // when a writer opens it, then it is refused with a clear message and nothing is changed
    let err = EmbeddedJournal::open(dir.path(), JournalOptions::default()).unwrap_err();
    assert!(err.to_string().contains("unsupported journal format version"), "{err}");
    assert_eq!(fs::read(&segment).unwrap(), bytes);
    // and a read-only open reads nothing of it
    let (reader, recovery) = EmbeddedJournal::open_read_only(dir.path()).unwrap();
    assert_eq!(reader.next_offset(), 0);
    assert_eq!(recovery.damage.unwrap().kind, DamageKind::Corrupt);
}

#[test]
fn damage_at_the_end_of_a_non_last_segment_is_corruption_not_a_torn_tail() {
    // given records spread over several segments
    let dir = tempfile::tempdir().unwrap();
    let records = sample(12);
    append_each(&mut EmbeddedJournal::open(dir.path(), tiny()).unwrap().0, &records);
    let segments = segment_files(dir.path());
    assert!(segments.len() > 2);

    // when the first segment loses its last byte
    let len = fs::metadata(&segments[0]).unwrap().len();
    cut(&segments[0], len - 1);

    // then a writer refuses, and a read-only open stops there
    let err = EmbeddedJournal::open(dir.path(), tiny()).unwrap_err();
    assert!(matches!(err, JournalError::Corrupt { ref segment, .. } if *segment == segments[0]));
    let (reader, recovery) = EmbeddedJournal::open_read_only(dir.path()).unwrap();
    assert_eq!(recovery.damage.unwrap().kind, DamageKind::Corrupt);
    assert!(reader.next_offset() < records.len() as u64);
}

#[test]
fn a_missing_middle_segment_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    append_each(&mut EmbeddedJournal::open(dir.path(), tiny()).unwrap().0, &sample(12));
    let segments = segment_files(dir.path());
    fs::remove_file(&segments[1]).unwrap();
    let err = EmbeddedJournal::open(dir.path(), tiny()).unwrap_err();
    assert!(matches!(err, JournalError::Corrupt { ref segment, position: 0, .. } if *segment == segments[2]));
    assert!(err.to_string().contains("records are missing"));
}

#[test]
fn a_segment_with_a_foreign_header_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    append_each(&mut open(dir.path()).0, &sample(2));
    flip_bit(&segment_files(dir.path())[0], 0, 0);
    let err = EmbeddedJournal::open(dir.path(), JournalOptions::default()).unwrap_err();
    assert!(err.to_string().contains("wrong magic"), "{err}");
}

#[test]
fn empty_directory_opens_as_an_empty_journal_with_one_segment() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, recovery) = open(dir.path());
    assert_eq!(journal.next_offset(), 0);
    assert_eq!((recovery.records, recovery.segments, &recovery.damage), (0, 1, &None));
    assert_eq!(segment_files(dir.path()), vec![dir.path().join("00000000000000000000.log")]);
    assert_eq!(recovery.to_string(), "journal holds 0 records in 1 segment, no damage");
}

#[test]
fn missing_directory_is_created_for_a_writer_but_not_found_for_a_reader() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("a/b/journal");
    let err = EmbeddedJournal::open_read_only(&dir).unwrap_err();
    assert!(matches!(err, JournalError::NotFound { .. }));
    let (mut journal, _) = open(&dir);
    journal.append(&[b"x"]).unwrap();
    assert!(dir.is_dir());
}

#[test]
fn stray_files_are_ignored_but_a_misnamed_log_file_is_refused() {
    // given a journal directory with notes and an editor swap file
    let dir = tempfile::tempdir().unwrap();
    append_each(&mut open(dir.path()).0, &sample(3));
    fs::write(dir.path().join("README.txt"), "ops notes").unwrap();
    fs::write(dir.path().join(".00000000000000000000.log.swp"), "x").unwrap();
    // then they are ignored
    let (journal, recovery) = open(dir.path());
    assert_eq!((journal.next_offset(), recovery.damage), (3, None));
    drop(journal);

    // given a .log file that is not a segment name (maybe a renamed segment)
    fs::write(dir.path().join("backup.log"), "x").unwrap();
    // then both opens refuse, naming it
    let err = EmbeddedJournal::open(dir.path(), JournalOptions::default()).unwrap_err();
    assert!(matches!(err, JournalError::StrayFile { ref path } if path.ends_with("backup.log")));
    assert!(EmbeddedJournal::open_read_only(dir.path()).is_err());
}

#[test]
fn an_unfinished_segment_from_a_crashed_roll_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    append_each(&mut open(dir.path()).0, &sample(2));
    let temp = temp_segment_path(dir.path(), 2);
    fs::write(&temp, b"SWBD").unwrap();
    let (journal, recovery) = open(dir.path());
    assert_eq!((journal.next_offset(), recovery.damage), (2, None));
    assert!(!temp.exists());
}

#[test]
fn second_writer_is_refused_until_the_first_is_dropped() {
    // given a writer
    let dir = tempfile::tempdir().unwrap();
    let (first, _) = open(dir.path());

    // when a second writer opens the same directory, then it is refused
    let err = EmbeddedJournal::open(dir.path(), JournalOptions::default()).unwrap_err();
    assert!(matches!(err, JournalError::Locked { ref dir } if dir.as_path() == first.dir()));
    // and a read-only open is still allowed
    EmbeddedJournal::open_read_only(dir.path()).unwrap();

    // when the first is dropped, then the lock is released
    drop(first);
    open(dir.path());
}

#[test]
fn segments_roll_at_the_configured_size_and_reads_cross_their_boundaries() {
    // given tiny segments and a sparse index every 3 records
    let dir = tempfile::tempdir().unwrap();
    let records = sample(30);
    let (mut journal, _) = EmbeddedJournal::open(dir.path(), tiny()).unwrap();
    append_each(&mut journal, &records[..20]);
    let slices: Vec<&[u8]> = records[20..].iter().map(Vec::as_slice).collect();
    journal.append(&slices).unwrap();

    // then every segment but the last reached the size, and names are base offsets
    let segments = segment_files(dir.path());
    assert!(segments.len() >= 6, "{segments:?}");
    for segment in &segments[..segments.len() - 1] {
        assert!(fs::metadata(segment).unwrap().len() >= 100);
    }
    // a batch is never split across segments
    assert_eq!(*segments.last().unwrap(), dir.path().join("00000000000000000020.log"));

    // and reads from every offset cross boundaries correctly, before and after reopen
    let reads_every_offset = |journal: &EmbeddedJournal| {
        for from in 0..=records.len() {
            let read: Vec<Record> = journal.read_from(from as u64).unwrap().map(Result::unwrap).collect();
            let expected: Vec<Record> = (from as u64..).zip(records[from..].to_vec()).collect();
            assert_eq!(read, expected, "from {from}");
        }
    };
    reads_every_offset(&journal);
    drop(journal);
    let (journal, recovery) = EmbeddedJournal::open(dir.path(), tiny()).unwrap();
    assert_eq!((recovery.segments, recovery.damage), (segments.len(), None));
    reads_every_offset(&journal);
    drop(journal);
    let (reader, recovery) = EmbeddedJournal::open_read_only(dir.path()).unwrap();
    assert_eq!(recovery.segments, segments.len());
    assert_eq!(collect(reader.read_from(13).unwrap()), records[13..].to_vec());
}

#[test]
fn the_active_segment_is_extended_with_zeros_ahead_of_its_records_and_sealed_at_them_when_it_rolls() {
    // given a writer that appended three records
    let dir = tempfile::tempdir().unwrap();
    let records = sample(6);
    let options = JournalOptions { segment_bytes: 1 << 20, index_interval: 2 };
    let (mut journal, _) = EmbeddedJournal::open(dir.path(), options.clone()).unwrap();
    append_each(&mut journal, &records[..3]);

    // then the segment holds zeros after its records, a MiB ahead
    let segment = &segment_files(dir.path())[0];
    let end = frame_positions(&records[..3])[3];
    let bytes = fs::read(segment).unwrap();
    assert_eq!(bytes.len() as u64, frame_positions(&records[..1])[1] + PREALLOCATE_BYTES);
    assert!(bytes[end as usize..].iter().all(|&b| b == 0));

    // and a reader meanwhile, and a writer after a crash (a copy taken now), take them for
    // unused space, not damage
    let (reader, recovery) = EmbeddedJournal::open_read_only(dir.path()).unwrap();
    assert_eq!((recovery.damage, reader.next_offset()), (None, 3));
    let crashed = copy_dir(dir.path());
    // and a writer closed cleanly leaves its records without the zeros
    drop((reader, journal));
    assert_eq!(fs::metadata(segment).unwrap().len(), end);
    let (mut journal, recovery) = EmbeddedJournal::open(crashed.path(), options).unwrap();
    assert_eq!((recovery.damage, recovery.truncated_bytes), (None, 0));

    // and appends go on over the zeros; a batch past them extends the file again
    append_each(&mut journal, &records[3..5]);
    let big = vec![7u8; (PREALLOCATE_BYTES + 10) as usize];
    journal.append(&[&big]).unwrap();
    let mut all = records[..5].to_vec();
    all.push(big);
    assert_eq!(collect(journal.read_from(0).unwrap()), all);

    // and when the segment rolls, it is cut back to its last record
    journal.append(&[&records[5]]).unwrap();
    let segments = segment_files(crashed.path());
    assert_eq!(segments.len(), 2);
    assert_eq!(fs::metadata(&segments[0]).unwrap().len(), frame_positions(&all)[6]);
    drop(journal);
    let (reader, recovery) = EmbeddedJournal::open_read_only(crashed.path()).unwrap();
    assert_eq!(recovery.damage, None);
    all.push(records[5].clone());
    assert_eq!(collect(reader.read_from(0).unwrap()), all);
}

#[test]
fn reading_past_the_end_reports_where_the_journal_ends() {
    let dir = tempfile::tempdir().unwrap();
    let (mut journal, _) = open(dir.path());
    append_each(&mut journal, &sample(2));
    let err = journal.read_from(5).err().unwrap();
    assert!(matches!(err, JournalError::OffsetOutOfRange { offset: 5, next_offset: 2 }));
}

#[test]
fn a_reader_stops_with_an_error_at_a_record_corrupted_after_open() {
    let dir = tempfile::tempdir().unwrap();
    let records = sample(3);
    let (mut journal, _) = open(dir.path());
    append_each(&mut journal, &records);
    flip_bit(&segment_files(dir.path())[0], frame_positions(&records)[1] + 9, 0);
    let mut iter = journal.read_from(0).unwrap();
    assert_eq!(iter.next().unwrap().unwrap().1, records[0]);
    assert!(matches!(iter.next(), Some(Err(JournalError::Corrupt { offset: 1, .. }))));
    assert!(iter.next().is_none());
}

#[test]
fn recovery_message_names_offset_and_bytes_cut() {
    let dir = tempfile::tempdir().unwrap();
    let records = sample(3);
    append_each(&mut open(dir.path()).0, &records);
    let segment = &segment_files(dir.path())[0];
    cut(segment, frame_positions(&records)[3] - 3);
    let (_, recovery) = open(dir.path());
    let message = recovery.to_string();
    let expected_cut = FRAME_HEADER_LEN + records[2].len() - 3;
    assert!(
        message.starts_with(&format!("log ended with a torn record at offset 2: cut {expected_cut} bytes from ")),
        "{message}"
    );
}

#[test]
fn recovery_message_names_the_whole_records_of_an_unfinished_batch_and_the_torn_bytes() {
    // given batches [0] and [1, 2, 3]
    let records = sample(4);
    let positions = frame_positions(&records);
    let torn_record = FRAME_HEADER_LEN as u64 + records[3].len() as u64 - 3;
    let ahead = "1000 zero bytes allocated ahead of the records";
    // cut inside record 3, or exactly after record 2, and then the file ends, or zeros follow as after a crash
    for (at, zeros, dropped) in [
        (
            positions[4] - 3,
            0,
            format!("2 whole records of an unfinished batch and {torn_record} bytes of a torn record"),
        ),
        (positions[3], 0, "2 whole records of an unfinished batch".to_string()),
        (
            positions[4] - 3,
            1000,
            format!("2 whole records of an unfinished batch, {torn_record} bytes of a torn record and {ahead}"),
        ),
        (positions[3], 1000, format!("2 whole records of an unfinished batch and {ahead}")),
    ] {
        let dir = tempfile::tempdir().unwrap();
        append_batches(&mut open(dir.path()).0, &records, &[1, 3]);
        let segment = segment_files(dir.path())[0].clone();
        cut(&segment, at);
        cut(&segment, at + zeros);
        let reason = match (at == positions[3], zeros) {
            (true, _) => UNFINISHED_LAST_BATCH,
            (false, 0) => "frame extends past the end of the file",
            // The torn record's length reaches into the zeros, which do not match its checksum.
            (false, _) => "frame checksum mismatch",
        };
        let place = format!("{} at byte {} ({reason})", segment.display(), positions[1]);

        // when opened read-only, then it says what it ignored
        let (_, seen) = EmbeddedJournal::open_read_only(dir.path()).unwrap();
        assert_eq!(
            seen.to_string(),
            format!(
                "log ends with a torn batch at offset 1: ignored {dropped} from {place}; opened read-only, file left as is"
            )
        );
        // when opened by a writer, then it says what it cut
        let (_, recovery) = open(dir.path());
        assert_eq!(
            recovery.to_string(),
            format!("log ended with a torn batch at offset 1: cut {dropped} from {place}")
        );
        assert_eq!(recovery.truncated_bytes, at + zeros - positions[1]);
    }
}

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<Vec<u8>>),
    Reopen,
    ReadFrom(prop::sample::Index),
    /// Truncate the last segment somewhere after its header, then reopen;
    /// with `true`, zeros follow the cut, as the unused space preallocated
    /// after the records does.
    Crash(prop::sample::Index, bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..5).prop_map(Op::Append),
        1 => Just(Op::Reopen),
        2 => any::<prop::sample::Index>().prop_map(Op::ReadFrom),
        2 => (any::<prop::sample::Index>(), any::<bool>()).prop_map(|(at, zeros)| Op::Crash(at, zeros)),
    ]
}

fn check_equals_model(journal: &EmbeddedJournal, model: &[Vec<Vec<u8>>]) {
    let records = model.concat();
    assert_eq!(journal.next_offset(), records.len() as u64);
    assert_eq!(collect(journal.read_from(0).unwrap()), records);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn journal_always_equals_the_complete_batches_of_a_model(ops in prop::collection::vec(op(), 1..25)) {
        let options = JournalOptions { segment_bytes: 120, index_interval: 2 };
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, _) = EmbeddedJournal::open(dir.path(), options.clone()).unwrap();
        // The acknowledged batches, in order (an empty batch writes nothing).
        let mut model: Vec<Vec<Vec<u8>>> = Vec::new();
        for op in ops {
            match op {
                Op::Append(batch) => {
                    let slices: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
                    let next = model.iter().map(Vec::len).sum::<usize>() as u64;
                    prop_assert_eq!(journal.append(&slices).unwrap(), next);
                    if !batch.is_empty() {
                        model.push(batch);
                    }
                }
                Op::Reopen => {
                    drop(journal);
                    let recovery;
                    (journal, recovery) = EmbeddedJournal::open(dir.path(), options.clone()).unwrap();
                    prop_assert_eq!(recovery.damage, None);
                }
                Op::ReadFrom(index) => {
                    let records = model.concat();
                    let from = index.index(records.len() + 1);
                    let read = collect(journal.read_from(from as u64).unwrap());
                    prop_assert_eq!(&read[..], &records[from..]);
                }
                Op::Crash(index, zeros) => {
                    drop(journal);
                    let last = segment_files(dir.path()).pop().unwrap();
                    let name = last.file_name().unwrap().to_str().unwrap();
                    let EntryKind::Segment(base) = classify(name) else { unreachable!() };
                    // A batch is never split, so the last segment starts at a batch.
                    let mut first_offset = 0;
                    let first_batch = model
                        .iter()
                        .position(|batch| {
                            let starts_here = first_offset >= base;
                            first_offset += batch.len() as u64;
                            starts_here
                        })
                        .unwrap_or(model.len());
                    let before: usize = model[..first_batch].iter().map(Vec::len).sum();
                    prop_assert_eq!(before as u64, base, "the last segment starts at a batch");
                    let in_segment = &model[first_batch..];
                    let positions = frame_positions(&in_segment.concat());
                    let end = *positions.last().unwrap();
                    let at = SEGMENT_HEADER_LEN + index.index((end - SEGMENT_HEADER_LEN + 1) as usize) as u64;
                    let original = fs::read(&last).unwrap();
                    cut(&last, at);
                    let zeros = if zeros { 100 } else { 0 };
                    OpenOptions::new().write(true).open(&last).unwrap().set_len(at + zeros).unwrap();
                    // Zeros that happen to be what was cut restore it: the cut is in effect after them.
                    let restored = original[at as usize..end as usize].iter().take(zeros as usize).take_while(|&&b| b == 0);
                    let at = at + restored.count() as u64;
                    // when reopened, the complete batches before the cut survive, nothing else
                    let ends = batch_ends(&in_segment.iter().map(Vec::len).collect::<Vec<_>>());
                    let kept_batches = ends.iter().rposition(|&e| positions[e] <= at).unwrap();
                    let kept = ends[kept_batches];
                    let whole = positions.iter().rposition(|&p| p <= at).unwrap();
                    // A torn batch of which only zeros are left reads as unused space.
                    let torn = original[positions[kept] as usize..at as usize].iter().any(|&b| b != 0);
                    let fs_len = fs::metadata(&last).unwrap().len();
                    // The zeros ending the file after the damage (which starts past the whole records).
                    let file = fs::read(&last).unwrap();
                    let unused = file[positions[whole] as usize..].iter().rev().take_while(|&&b| b == 0).count() as u64;
                    let recovery;
                    (journal, recovery) = EmbeddedJournal::open(dir.path(), options.clone()).unwrap();
                    let (cut_bytes, unfinished) = match torn {
                        true => (fs_len - positions[kept], (whole - kept) as u64),
                        false => (0, 0),
                    };
                    prop_assert_eq!(recovery.truncated_bytes, cut_bytes);
                    prop_assert_eq!(recovery.truncated_at_offset, torn.then_some(base + kept as u64));
                    prop_assert_eq!(recovery.damage.as_ref().map_or(0, |d| d.unfinished_records), unfinished);
                    prop_assert_eq!(recovery.damage.as_ref().map_or(0, |d| d.unused_bytes), if torn { unused } else { 0 });
                    model.truncate(first_batch + kept_batches);
                }
            }
            check_equals_model(&journal, &model);
        }
    }
}
