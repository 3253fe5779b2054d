//! The on-disk byte layout, kept in one place so docs/journal-format.md has a
//! single source to agree with.

use std::path::{Path, PathBuf};

/// Bytes 0..7 of every segment file; byte 7 is the format version.
pub(crate) const SEGMENT_MAGIC: [u8; 7] = *b"SWBDJNL";
/// Bumped on any incompatible layout change so old binaries refuse new files.
pub(crate) const FORMAT_VERSION: u8 = 1;
/// Magic (7) + version (1) + base offset (8).
pub(crate) const SEGMENT_HEADER_LEN: u64 = 16;
/// Length (4) + CRC32 (4).
pub(crate) const FRAME_HEADER_LEN: usize = 8;
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

/// CRC32 (IEEE, as crc32fast computes it) over the length field then the payload,
/// so a corrupted length is caught even when the payload happens to survive.
pub(crate) fn frame_crc(len_bytes: [u8; 4], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&len_bytes);
    hasher.update(payload);
    hasher.finalize()
}

/// Appends one frame to `buf`; the caller has already checked the length.
pub(crate) fn encode_frame(buf: &mut Vec<u8>, payload: &[u8]) {
    let len_bytes = (payload.len() as u32).to_le_bytes();
    buf.extend_from_slice(&len_bytes);
    buf.extend_from_slice(&frame_crc(len_bytes, payload).to_le_bytes());
    buf.extend_from_slice(payload);
}

pub(crate) fn parse_frame_header(header: &[u8; FRAME_HEADER_LEN]) -> (u32, u32) {
    let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes"));
    let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
    (len, crc)
}

/// Looks for any whole, checksum-valid frame starting anywhere in `bytes`.
///
/// This is what separates a torn tail from corruption: a crash can only damage
/// the batch that was being written, which is always the end of the log, so a
/// valid frame *after* a bad one means acknowledged records follow the damage.
pub(crate) fn contains_valid_frame(bytes: &[u8]) -> bool {
    let mut start = 0;
    while start + FRAME_HEADER_LEN <= bytes.len() {
        let header: &[u8; FRAME_HEADER_LEN] = bytes[start..start + FRAME_HEADER_LEN].try_into().expect("8 bytes");
        let (len, crc) = parse_frame_header(header);
        let end = start + FRAME_HEADER_LEN + len as usize;
        if len as usize <= MAX_RECORD_BYTES
            && end <= bytes.len()
            && frame_crc(len.to_le_bytes(), &bytes[start + FRAME_HEADER_LEN..end]) == crc
        {
            return true;
        }
        start += 1;
    }
    false
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
    fn encoded_frame_has_length_crc_then_payload() {
        let mut buf = Vec::new();
        encode_frame(&mut buf, b"abc");
        assert_eq!(&buf[..4], &3u32.to_le_bytes());
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&[3, 0, 0, 0, b'a', b'b', b'c']);
        assert_eq!(&buf[4..8], &hasher.finalize().to_le_bytes());
        assert_eq!(&buf[8..], b"abc");
    }

    #[test]
    fn valid_frame_search_finds_frames_at_any_alignment_but_not_in_zeros_or_prefixes() {
        let mut frame = Vec::new();
        encode_frame(&mut frame, b"hello");
        assert!(!contains_valid_frame(&[0u8; 4096]));
        assert!(!contains_valid_frame(&frame[..frame.len() - 1]));
        let mut shifted = vec![0xAB; 3];
        shifted.extend_from_slice(&frame);
        assert!(contains_valid_frame(&shifted));
        let mut empty = Vec::new();
        encode_frame(&mut empty, b"");
        assert!(contains_valid_frame(&empty));
    }
}
