//! The on-disk byte layout, kept in one place so docs/journal-format.md has a
//! single source to agree with.

use std::path::{Path, PathBuf};

/// Bytes 0..7 of every segment file; byte 7 is the format version.
pub(crate) const SEGMENT_MAGIC: [u8; 7] = *b"SWBDJNL";
/// Bumped on any incompatible layout change so old binaries refuse new files.
///
/// Version 2 added [`END_OF_BATCH`]; version 1 segments are refused.
pub(crate) const FORMAT_VERSION: u8 = 2;
/// Magic (7) + version (1) + base offset (8).
pub(crate) const SEGMENT_HEADER_LEN: u64 = 16;
/// Length (4) + CRC32 (4).
pub(crate) const FRAME_HEADER_LEN: usize = 8;
/// Top bit of a frame's length field: set on the last record of every batch.
///
/// Recovery keeps a batch only if its end made it to disk, so a crash never
/// leaves half a batch in the log. Payload lengths are capped far below 2^31
/// ([`MAX_RECORD_BYTES`]), so the bit is free, and the CRC covers the length
/// field, so a flipped flag is caught like any other flipped bit.
pub(crate) const END_OF_BATCH: u32 = 1 << 31;
/// Name of the writer's lock file inside the journal directory.
pub(crate) const LOCK_FILE: &str = "LOCK";
/// Segment names are the base offset zero-padded to u64's widest decimal.
const SEGMENT_DIGITS: usize = 20;
const SEGMENT_SUFFIX: &str = ".log";
/// Segments are built under this suffix and renamed into place, so a crash
/// never leaves a segment with a half-written header.
pub(crate) const TEMP_SUFFIX: &str = ".log.tmp";

/// Largest payload a frame may carry.
///
/// Capping it far below `u32::MAX` keeps a corrupted length from making the
/// scanner allocate gigabytes, and makes garbage less likely to pass as a frame.
pub const MAX_RECORD_BYTES: usize = 64 * 1024 * 1024;

pub(crate) fn segment_file_name(base: u64) -> String {
    format!("{base:0width$}{SEGMENT_SUFFIX}", width = SEGMENT_DIGITS)
}

pub(crate) fn segment_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(segment_file_name(base))
}

pub(crate) fn temp_segment_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:0width$}{TEMP_SUFFIX}", width = SEGMENT_DIGITS))
}

/// What a directory entry's name says it is.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum EntryKind {
    Segment(u64),
    /// A segment that was being created when the writer stopped.
    Temp,
    /// Ends in `.log` but is not a well-formed segment name: refusing it is
    /// safer than ignoring what may be a renamed segment holding records.
    Malformed,
    /// Anything else (LOCK, editor swap files, notes): not ours to judge.
    Other,
}

pub(crate) fn classify(name: &str) -> EntryKind {
    if name.ends_with(TEMP_SUFFIX) {
        return EntryKind::Temp;
    }
    let Some(stem) = name.strip_suffix(SEGMENT_SUFFIX) else {
        return EntryKind::Other;
    };
    if stem.len() != SEGMENT_DIGITS || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return EntryKind::Malformed;
    }
    match stem.parse() {
        Ok(base) => EntryKind::Segment(base),
        Err(_) => EntryKind::Malformed,
    }
}

pub(crate) fn segment_header(base: u64) -> [u8; SEGMENT_HEADER_LEN as usize] {
    let mut header = [0u8; SEGMENT_HEADER_LEN as usize];
    header[..7].copy_from_slice(&SEGMENT_MAGIC);
    header[7] = FORMAT_VERSION;
    header[8..].copy_from_slice(&base.to_le_bytes());
    header
}

/// Why a segment header was rejected, phrased for `JournalError::Corrupt`.
pub(crate) fn check_segment_header(bytes: &[u8], base: u64) -> Result<(), &'static str> {
    if bytes.len() < SEGMENT_HEADER_LEN as usize {
        return Err("segment header is incomplete");
    }
    if bytes[..7] != SEGMENT_MAGIC {
        return Err("segment header has the wrong magic bytes (not a switchboard journal segment)");
    }
    if bytes[7] != FORMAT_VERSION {
        return Err("segment was written by an unsupported journal format version");
    }
    let stored = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
    if stored != base {
        return Err("segment header's base offset does not match its file name");
    }
    Ok(())
}

/// CRC32 (IEEE, as crc32fast computes it) over the length field (flag
/// included) then the payload, so a corrupted length or flag is caught even
/// when the payload happens to survive.
pub(crate) fn frame_crc(len_field: [u8; 4], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&len_field);
    hasher.update(payload);
    hasher.finalize()
}

/// Appends one frame to `buf`, flagged [`END_OF_BATCH`] if it ends its batch;
/// the caller has already checked the length.
pub(crate) fn encode_frame(buf: &mut Vec<u8>, payload: &[u8], end_of_batch: bool) {
    let flag = if end_of_batch { END_OF_BATCH } else { 0 };
    let len_field = (payload.len() as u32 | flag).to_le_bytes();
    buf.extend_from_slice(&len_field);
    buf.extend_from_slice(&frame_crc(len_field, payload).to_le_bytes());
    buf.extend_from_slice(payload);
}

/// A frame header as read, before its payload is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameHeader {
    /// The length field as stored (flag included): the CRC covers these bytes.
    len_field: [u8; 4],
    /// The stored CRC.
    crc: u32,
}

impl FrameHeader {
    pub(crate) fn parse(header: &[u8; FRAME_HEADER_LEN]) -> FrameHeader {
        FrameHeader {
            len_field: header[..4].try_into().expect("4 bytes"),
            crc: u32::from_le_bytes(header[4..].try_into().expect("4 bytes")),
        }
    }

    /// Payload length, with the [`END_OF_BATCH`] flag masked off.
    pub(crate) fn len(&self) -> u32 {
        u32::from_le_bytes(self.len_field) & !END_OF_BATCH
    }

    /// Whether this frame is the last of its batch.
    pub(crate) fn end_of_batch(&self) -> bool {
        u32::from_le_bytes(self.len_field) & END_OF_BATCH != 0
    }

    /// Whether the length is within [`MAX_RECORD_BYTES`].
    pub(crate) fn len_fits(&self) -> bool {
        self.len() as usize <= MAX_RECORD_BYTES
    }

    /// Whether `payload` (of [`len`](Self::len) bytes) matches the CRC.
    pub(crate) fn checks(&self, payload: &[u8]) -> bool {
        frame_crc(self.len_field, payload) == self.crc
    }
}

/// A whole, checksum-valid frame found in a run of bytes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct FoundFrame {
    /// Where its header starts in the run.
    pub(crate) start: usize,
    /// Just after its payload.
    pub(crate) end: usize,
    /// Whether it is the last frame of its batch.
    pub(crate) end_of_batch: bool,
}

/// The first whole, checksum-valid frame starting at any byte position of
/// `bytes`: what separates a torn tail from corruption (see
/// docs/journal-format.md, "Torn tail or corruption?").
pub(crate) fn find_valid_frame(bytes: &[u8]) -> Option<FoundFrame> {
    let mut start = 0;
    while start + FRAME_HEADER_LEN <= bytes.len() {
        let header = FrameHeader::parse(bytes[start..start + FRAME_HEADER_LEN].try_into().expect("8 bytes"));
        let end = start + FRAME_HEADER_LEN + header.len() as usize;
        if header.len_fits() && end <= bytes.len() && header.checks(&bytes[start + FRAME_HEADER_LEN..end]) {
            return Some(FoundFrame { start, end, end_of_batch: header.end_of_batch() });
        }
        start += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_round_trip_through_classify() {
        // given a base offset, when named and classified, then the offset comes back
        for base in [0, 1, 42, u64::MAX] {
            assert_eq!(classify(&segment_file_name(base)), EntryKind::Segment(base));
        }
        assert_eq!(segment_file_name(0), "00000000000000000000.log");
    }

    #[test]
    fn classify_tells_segments_from_strays() {
        assert_eq!(classify("LOCK"), EntryKind::Other);
        assert_eq!(classify("notes.txt"), EntryKind::Other);
        assert_eq!(classify("00000000000000000007.log.tmp"), EntryKind::Temp);
        assert_eq!(classify("7.log"), EntryKind::Malformed);
        assert_eq!(classify("0000000000000000000x.log"), EntryKind::Malformed);
        // 20 digits but larger than u64::MAX
        assert_eq!(classify("99999999999999999999.log"), EntryKind::Malformed);
    }

    #[test]
    fn segment_header_checks_magic_version_and_base() {
        let header = segment_header(5);
        assert_eq!(check_segment_header(&header, 5), Ok(()));
        assert!(check_segment_header(&header, 6).is_err());
        assert!(check_segment_header(&header[..15], 5).is_err());
        let mut bad_version = header;
        bad_version[7] = 99;
        assert!(check_segment_header(&bad_version, 5).is_err());
        let mut bad_magic = header;
        bad_magic[0] = b'X';
        assert!(check_segment_header(&bad_magic, 5).is_err());
    }

    #[test]
    fn crc_is_the_ieee_crc32_documented_in_the_format_doc() {
        assert_eq!(crc32fast::hash(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn segment_header_refuses_version_1_as_an_unsupported_format() {
        let mut header = segment_header(0);
        assert_eq!(header[7], 2);
        header[7] = 1;
        assert_eq!(
            check_segment_header(&header, 0),
            Err("segment was written by an unsupported journal format version")
        );
    }

    #[test]
    fn encoded_frame_has_length_crc_then_payload() {
        let mut buf = Vec::new();
        encode_frame(&mut buf, b"abc", false);
        assert_eq!(&buf[..4], &3u32.to_le_bytes());
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&[3, 0, 0, 0, b'a', b'b', b'c']);
        assert_eq!(&buf[4..8], &hasher.finalize().to_le_bytes());
        assert_eq!(&buf[8..], b"abc");
    }

    #[test]
    fn end_of_batch_is_the_top_bit_of_the_length_and_covered_by_the_crc() {
        // given the same record encoded mid-batch and at the end of a batch
        let (mut middle, mut last) = (Vec::new(), Vec::new());
        encode_frame(&mut middle, b"abc", false);
        encode_frame(&mut last, b"abc", true);

        // then the flag is bit 31 of the length field, masked off when read
        assert_eq!(&last[..4], &[3, 0, 0, 0x80]);
        let parsed = |frame: &[u8]| FrameHeader::parse(frame[..FRAME_HEADER_LEN].try_into().unwrap());
        assert_eq!((parsed(&last).len(), parsed(&last).end_of_batch()), (3, true));
        assert_eq!((parsed(&middle).len(), parsed(&middle).end_of_batch()), (3, false));
        // and the CRC is over the stored length field, flag included
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&[3, 0, 0, 0x80, b'a', b'b', b'c']);
        assert_eq!(&last[4..8], &hasher.finalize().to_le_bytes());

        // when the flag alone is flipped, then the frame no longer checks
        last[3] ^= 0x80;
        assert!(!parsed(&last).checks(&last[8..]));
        assert_eq!(find_valid_frame(&last), None);
    }

    #[test]
    fn valid_frame_search_finds_frames_at_any_alignment_but_not_in_zeros_or_prefixes() {
        let mut frame = Vec::new();
        encode_frame(&mut frame, b"hello", true);
        assert_eq!(find_valid_frame(&[0u8; 4096]), None);
        assert_eq!(find_valid_frame(&frame[..frame.len() - 1]), None);
        let mut shifted = vec![0xAB; 3];
        shifted.extend_from_slice(&frame);
        assert_eq!(find_valid_frame(&shifted), Some(FoundFrame { start: 3, end: 3 + 8 + 5, end_of_batch: true }));
        let mut empty = Vec::new();
        encode_frame(&mut empty, b"", false);
        assert_eq!(find_valid_frame(&empty), Some(FoundFrame { start: 0, end: 8, end_of_batch: false }));
    }
}
