//! A shard's log: a directory of segment files (format in [`super::segment`]).
//!
//! One [`LogWriter`] appends (the shard's writer task owns it); any number of readers read
//! through the shared [`Log`]. Readers never see past the committed watermark: a batch becomes
//! visible only after it is durable under the configured fsync policy, so a reader can never
//! observe a record that a crash could take back.
//!
//! Memory is bounded by configuration, not data size: the log keeps only a sparse index (one
//! entry per `index_interval_bytes` of log, 24 bytes each) and reads go through the OS page
//! cache in bounded chunks.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use parking_lot::RwLock;
use tokio::sync::watch;

use super::segment::{
    decode_frame, decode_header, decode_index, encode_batch, encode_header, encode_index,
    encode_sealed_batch, Frame, IndexEntry, SealedIndex, NONCE_LEN, SEGMENT_HEADER_LEN,
};
use super::{Keys, SealError};
use crate::config::FsyncPolicy;

/// Settings for one log.
#[derive(Debug, Clone, Copy)]
pub struct LogOptions {
    /// When appends are fsynced.
    pub fsync: FsyncPolicy,
    /// Seal the active segment past this size.
    pub segment_bytes: u64,
    /// One index entry per this many bytes.
    pub index_interval_bytes: u64,
}

/// A record read back from the log.
#[derive(Debug, Clone)]
pub struct StoredRecord {
    /// The record's position in the log.
    pub position: u64,
    /// Arrival time, ms since the epoch.
    pub timestamp_ms: i64,
    /// Partition key bytes (UTF-8 as written).
    pub partition_key: Bytes,
    /// The record's data.
    pub data: Bytes,
    /// Whether it was stored encrypted (in a sealed batch).
    pub encrypted: bool,
}

/// The answer to a read.
#[derive(Debug, Default)]
pub struct ReadResult {
    /// Records in position order.
    pub records: Vec<StoredRecord>,
    /// Where the next read should start.
    pub next_position: u64,
}

#[derive(Debug)]
struct Segment {
    base: u64,
    path: PathBuf,
    /// Open only for the active segment: sealed segments are opened per read, so a long
    /// retention costs no file descriptors.
    file: Option<Arc<File>>,
    /// Committed bytes (readable).
    len: u64,
    /// Position after the last committed record.
    end: u64,
    /// The active segment's sparse index. A sealed segment's lives only in its `.idx`
    /// file and is read on demand, so memory does not grow with retained data.
    index: Vec<IndexEntry>,
    first_ts: Option<i64>,
    last_ts: Option<i64>,
    sealed: bool,
}

impl Segment {
    fn index_file(&self) -> PathBuf {
        self.path.with_extension("idx")
    }
}

#[derive(Debug)]
struct State {
    segments: Vec<Segment>,
}

/// The shared, readable side of a shard's log.
#[derive(Debug)]
pub struct Log {
    dir: PathBuf,
    opts: LogOptions,
    state: RwLock<State>,
    /// Position after the last committed record.
    committed: AtomicU64,
    /// Bytes on disk.
    disk_bytes: AtomicU64,
    /// Announces every new committed position (for push consumers and long polls).
    notify: watch::Sender<u64>,
    /// Where sealed batches get their keys; without it every batch is written in the
    /// clear and a sealed one cannot be read.
    keys: OnceLock<Arc<dyn Keys>>,
}

/// The appending side of a shard's log. Exactly one exists per log.
#[derive(Debug)]
pub struct LogWriter {
    log: Arc<Log>,
    file: File,
    len: u64,
    next: u64,
    last_ts: i64,
    since_index: u64,
    unsynced: bool,
    buf: Vec<u8>,
}

fn segment_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.seg"))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// What a scan of one segment found.
struct Scan {
    index: Vec<IndexEntry>,
    valid_len: u64,
    end: u64,
    first_ts: Option<i64>,
    last_ts: Option<i64>,
    torn: bool,
}

fn scan_segment(file: &File, base: u64, file_len: u64, interval: u64) -> io::Result<Scan> {
    let mut scan = Scan {
        index: Vec::new(),
        valid_len: SEGMENT_HEADER_LEN,
        end: base,
        first_ts: None,
        last_ts: None,
        torn: false,
    };
    let mut offset = SEGMENT_HEADER_LEN;
    let mut since_index = u64::MAX;
    let mut chunk_len = 4 * 1024 * 1024u64;
    while offset < file_len {
        let want = chunk_len.min(file_len - offset) as usize;
        let mut buf = vec![0u8; want];
        file.read_exact_at(&mut buf, offset)?;
        let buf = Bytes::from(buf);
        let mut at = 0usize;
        let mut progressed = false;
        // Stop at the end of the chunk: an empty remainder is not a torn frame.
        while at < buf.len() {
            match decode_frame(&buf.slice(at..)) {
                Frame::Batch { batch, len } => {
                    if batch.base != scan.end
                        || scan.last_ts.is_some_and(|t| batch.timestamp_ms < t)
                    {
                        scan.torn = true;
                        return Ok(scan);
                    }
                    if since_index >= interval {
                        scan.index.push(IndexEntry {
                            position: batch.base,
                            offset: offset + at as u64,
                            timestamp_ms: batch.timestamp_ms,
                        });
                        since_index = 0;
                    }
                    since_index += len as u64;
                    scan.first_ts.get_or_insert(batch.timestamp_ms);
                    scan.last_ts = Some(batch.timestamp_ms);
                    scan.end = batch.base + u64::from(batch.count);
                    at += len;
                    scan.valid_len = offset + at as u64;
                    progressed = true;
                }
                Frame::Incomplete { needed } => {
                    let remaining_in_file = file_len - (offset + at as u64);
                    match needed {
                        Some(n) if (n as u64) <= remaining_in_file => {
                            chunk_len = chunk_len.max(n as u64);
                            break;
                        }
                        None if remaining_in_file >= 8 => break,
                        _ => {
                            scan.torn = true;
                            return Ok(scan);
                        }
                    }
                }
                Frame::Corrupt(_) => {
                    scan.torn = true;
                    return Ok(scan);
                }
            }
        }
        if !progressed && chunk_len as usize <= want {
            // A frame header says the frame fits but the chunk was already big enough.
            scan.torn = true;
            return Ok(scan);
        }
        offset += at as u64;
    }
    Ok(scan)
}

impl Log {
    /// Opens (or creates) the log in `dir`, recovering from a crash: a torn or corrupt tail
    /// of the last segment is truncated. A damaged sealed segment is an error.
    pub fn open(dir: &Path, opts: LogOptions) -> io::Result<(Arc<Log>, LogWriter)> {
        fs::create_dir_all(dir)?;
        let mut bases: Vec<u64> = fs::read_dir(dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_suffix(".seg")?.parse().ok()
            })
            .collect();
        bases.sort_unstable();
        let mut segments: Vec<Segment> = Vec::with_capacity(bases.len().max(1));
        // Per segment, the newest arrival time its index or scan showed (a lower bound).
        let mut hints: Vec<Option<i64>> = Vec::with_capacity(bases.len().max(1));
        let count = bases.len();
        for (i, base) in bases.into_iter().enumerate() {
            let last = i + 1 == count;
            let path = segment_path(dir, base);
            let file = OpenOptions::new().read(true).write(true).open(&path)?;
            let file_len = file.metadata()?.len();
            let mut header = [0u8; SEGMENT_HEADER_LEN as usize];
            let header_ok = file_len >= SEGMENT_HEADER_LEN
                && file.read_exact_at(&mut header, 0).is_ok()
                && decode_header(&header) == Some(base);
            if !header_ok {
                if last {
                    // Crashed while creating this segment: start it afresh.
                    file.set_len(0)?;
                    file.write_all_at(&encode_header(base), 0)?;
                    file.sync_all()?;
                    segments.push(Segment {
                        base,
                        path,
                        file: Some(Arc::new(file)),
                        len: SEGMENT_HEADER_LEN,
                        end: base,
                        index: Vec::new(),
                        first_ts: None,
                        last_ts: None,
                        sealed: false,
                    });
                    continue;
                }
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("segment {} has a damaged header", path.display()),
                ));
            }
            if let Some(prev) = segments.last() {
                if prev.end != base {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "segment {} does not follow position {}",
                            path.display(),
                            prev.end
                        ),
                    ));
                }
            }
            let cached = (!last)
                .then(|| fs::read(path.with_extension("idx")).ok())
                .flatten()
                .and_then(|b| decode_index(&b))
                .filter(|idx| idx.len == file_len);
            let seg = match cached {
                Some(idx) => {
                    hints.push(idx.entries.last().map(|e| e.timestamp_ms));
                    Segment {
                        base,
                        first_ts: idx.entries.first().map(|e| e.timestamp_ms),
                        last_ts: None,
                        index: Vec::new(),
                        path,
                        file: None,
                        len: idx.len,
                        end: idx.end_position,
                        sealed: true,
                    }
                }
                None => {
                    let scan = scan_segment(&file, base, file_len, opts.index_interval_bytes)?;
                    if scan.torn || scan.valid_len < file_len {
                        if !last {
                            return Err(io::Error::new(
                                io::ErrorKind::InvalidData,
                                format!("sealed segment {} is damaged", path.display()),
                            ));
                        }
                        tracing::warn!(
                            segment = %path.display(),
                            kept = scan.valid_len,
                            dropped = file_len - scan.valid_len,
                            "truncating torn tail"
                        );
                        file.set_len(scan.valid_len)?;
                        file.sync_all()?;
                    }
                    hints.push(scan.last_ts);
                    if last {
                        Segment {
                            base,
                            path,
                            file: Some(Arc::new(file)),
                            len: scan.valid_len,
                            end: scan.end,
                            index: scan.index,
                            first_ts: scan.first_ts,
                            last_ts: scan.last_ts,
                            sealed: false,
                        }
                    } else {
                        // A sealed segment without its index file: write it now, so later
                        // reads find it there.
                        write_index(
                            &path.with_extension("idx"),
                            &SealedIndex {
                                entries: scan.index,
                                end_position: scan.end,
                                len: scan.valid_len,
                            },
                        )?;
                        Segment {
                            base,
                            path,
                            file: None,
                            len: scan.valid_len,
                            end: scan.end,
                            index: Vec::new(),
                            first_ts: scan.first_ts,
                            last_ts: scan.last_ts,
                            sealed: true,
                        }
                    }
                }
            };
            segments.push(seg);
        }
        if segments.is_empty() {
            let path = segment_path(dir, 0);
            let file = create_segment(&path, 0)?;
            sync_dir(dir)?;
            hints.push(None);
            segments.push(Segment {
                base: 0,
                path,
                file: Some(Arc::new(file)),
                len: SEGMENT_HEADER_LEN,
                end: 0,
                index: Vec::new(),
                first_ts: None,
                last_ts: None,
                sealed: false,
            });
        }
        // Sealed segments restored from an index lack their last timestamp; the next
        // segment's first timestamp bounds it from above, which is all retention needs.
        for i in 0..segments.len().saturating_sub(1) {
            if segments[i].last_ts.is_none() {
                segments[i].last_ts = segments[i + 1].first_ts.or(hints[i]);
            }
        }
        let active = segments.last().expect("at least one segment");
        let (next, len, last_ts) = (active.end, active.len, active.last_ts.unwrap_or(i64::MIN));
        let file = OpenOptions::new().append(true).open(&active.path)?;
        let since_index = active
            .index
            .last()
            .map_or(u64::MAX, |e| len.saturating_sub(e.offset));
        let disk = segments.iter().map(|s| s.len).sum();
        let (notify, _) = watch::channel(next);
        let log = Arc::new(Log {
            dir: dir.to_owned(),
            opts,
            state: RwLock::new(State { segments }),
            committed: AtomicU64::new(next),
            disk_bytes: AtomicU64::new(disk),
            notify,
            keys: OnceLock::new(),
        });
        let writer = LogWriter {
            log: log.clone(),
            file,
            len,
            next,
            last_ts,
            since_index,
            unsynced: false,
            buf: Vec::new(),
        };
        Ok((log, writer))
    }

    /// Position after the last committed record.
    pub fn end_position(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }

    /// Position of the first record still on disk.
    pub fn start_position(&self) -> u64 {
        self.state.read().segments.first().map_or(0, |s| s.base)
    }

    /// Bytes the log occupies on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.disk_bytes.load(Ordering::Relaxed)
    }

    /// Wakes every watcher without new data (the shard was closed).
    pub fn wake(&self) {
        self.notify.send_modify(|_| {});
    }

    /// A receiver that sees every new committed end position.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.notify.subscribe()
    }

    /// Gives the log its keys (once, before the first append or read of a sealed batch):
    /// new batches are then sealed while `keys` names a sealing key, and sealed batches
    /// are opened with the key their id names.
    pub fn set_keys(&self, keys: Arc<dyn Keys>) {
        let _ = self.keys.set(keys);
    }

    /// The records of a batch, decrypted if it is sealed.
    fn open_batch(
        &self,
        batch: super::segment::Batch,
    ) -> io::Result<Vec<super::segment::DecodedRecord>> {
        let Some(sealed) = &batch.sealed else {
            return Ok(batch.records);
        };
        let key_id = sealed.key_id.clone();
        let keys = self.keys.get().ok_or_else(|| {
            io::Error::other(SealError::MissingKey {
                key_id: key_id.clone(),
            })
        })?;
        let cipher = keys.opening(&key_id).map_err(io::Error::other)?;
        batch
            .open(&cipher)
            .map_err(|_| io::Error::other(SealError::WrongKey { key_id }))
    }

    /// Reads up to `max_records` records (and about `max_bytes` of data: the first record is
    /// always returned whole) starting at `from`, skipping records that arrived before
    /// `min_ts`. Positions before the start of the log begin at the start.
    pub fn read(
        &self,
        from: u64,
        max_records: usize,
        max_bytes: usize,
        min_ts: i64,
    ) -> io::Result<ReadResult> {
        let committed = self.end_position();
        let mut out = ReadResult {
            records: Vec::new(),
            next_position: from.max(self.start_position()).min(committed.max(from)),
        };
        let mut bytes = 0usize;
        let mut pos = out.next_position;
        let mut done = false;
        while !done && pos < committed && out.records.len() < max_records {
            // Locate the segment and the nearest index entry at or before `pos`.
            let (file, path, offset, seg_len, seg_end) = {
                let state = self.state.read();
                let segs = &state.segments;
                let i = segs.partition_point(|s| s.base <= pos).saturating_sub(1);
                let seg = &segs[i];
                if pos >= seg.end {
                    // Nothing at `pos` in this segment (it is empty); move on.
                    match segs.get(i + 1) {
                        Some(next) if next.base > pos => {
                            pos = next.base;
                            continue;
                        }
                        _ => break,
                    }
                }
                let offset = (!seg.sealed).then(|| start_offset(&seg.index, pos, min_ts));
                (seg.file.clone(), seg.path.clone(), offset, seg.len, seg.end)
            };
            // A sealed segment: its index and file come from disk, outside the lock.
            let mut offset = offset.unwrap_or_else(|| {
                let entries = fs::read(path.with_extension("idx"))
                    .ok()
                    .and_then(|b| decode_index(&b))
                    .map(|i| i.entries)
                    .unwrap_or_default();
                start_offset(&entries, pos, min_ts)
            });
            let file = match file {
                Some(f) => f,
                None => match File::open(&path) {
                    Ok(f) => Arc::new(f),
                    // Retention removed it meanwhile: its records have expired.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        pos = pos.max(seg_end);
                        continue;
                    }
                    Err(e) => return Err(e),
                },
            };
            let mut chunk = (max_bytes.saturating_sub(bytes)).clamp(256 * 1024, 4 * 1024 * 1024);
            while offset < seg_len && out.records.len() < max_records {
                let want = (chunk as u64).min(seg_len - offset) as usize;
                let mut buf = vec![0u8; want];
                file.read_exact_at(&mut buf, offset)?;
                let buf = Bytes::from(buf);
                let mut at = 0usize;
                while at < buf.len() {
                    match decode_frame(&buf.slice(at..)) {
                        Frame::Batch { batch, len } => {
                            at += len;
                            let batch_end = batch.base + u64::from(batch.count);
                            if batch_end <= pos || batch.timestamp_ms < min_ts {
                                pos = pos.max(batch_end);
                                continue;
                            }
                            let encrypted = batch.sealed.is_some();
                            let (base, timestamp_ms) = (batch.base, batch.timestamp_ms);
                            let records = match self.open_batch(batch) {
                                Ok(records) => records,
                                // What was read before a batch that does not open is
                                // answered; the next read starts at it and gets the error.
                                Err(_) if !out.records.is_empty() => {
                                    done = true;
                                    break;
                                }
                                Err(e) => return Err(e),
                            };
                            for (k, r) in records.into_iter().enumerate() {
                                let p = base + k as u64;
                                if p < pos {
                                    continue;
                                }
                                if out.records.len() >= max_records
                                    || (!out.records.is_empty() && bytes + r.data.len() > max_bytes)
                                {
                                    done = true;
                                    break;
                                }
                                bytes += r.data.len();
                                out.records.push(StoredRecord {
                                    position: p,
                                    timestamp_ms,
                                    partition_key: r.partition_key,
                                    data: r.data,
                                    encrypted,
                                });
                                pos = p + 1;
                            }
                            if done {
                                break;
                            }
                        }
                        Frame::Incomplete { needed: Some(n) } => {
                            chunk = chunk.max(n);
                            break;
                        }
                        Frame::Incomplete { needed: None } => break,
                        Frame::Corrupt(why) => {
                            return Err(io::Error::new(
                                io::ErrorKind::InvalidData,
                                format!("corrupt committed batch in {}: {why}", self.dir.display()),
                            ))
                        }
                    }
                }
                if done || (at == 0 && want as u64 == seg_len - offset) {
                    break;
                }
                if out.records.len() >= max_records {
                    done = true;
                    break;
                }
                offset += at as u64;
            }
            if done {
                break;
            }
            // This segment is exhausted: continue at its end (the next segment's base).
            pos = pos.max(seg_end);
        }
        out.next_position = pos;
        Ok(out)
    }

    /// The position of the first record that arrived at or after `ts` (the end of the log
    /// if there is none).
    pub fn position_at_time(&self, ts: i64) -> io::Result<u64> {
        let start = {
            let state = self.state.read();
            state
                .segments
                .iter()
                .find(|s| s.last_ts.is_some_and(|l| l >= ts) || !s.sealed)
                .map_or(0, |s| s.base)
        };
        let r = self.read(start, 1, 1, ts)?;
        Ok(r.records
            .first()
            .map_or(self.end_position(), |r| r.position))
    }

    /// Deletes sealed segments whose every record arrived before `cutoff_ts`. Returns the
    /// number of bytes freed.
    pub fn apply_retention(&self, cutoff_ts: i64) -> io::Result<u64> {
        let mut freed = 0;
        let mut state = self.state.write();
        while state.segments.len() > 1 {
            let s = &state.segments[0];
            if !(s.sealed && s.last_ts.is_some_and(|t| t < cutoff_ts)) {
                break;
            }
            let s = state.segments.remove(0);
            fs::remove_file(&s.path)?;
            let _ = fs::remove_file(s.index_file());
            freed += s.len;
        }
        drop(state);
        if freed > 0 {
            self.disk_bytes.fetch_sub(freed, Ordering::Relaxed);
            sync_dir(&self.dir)?;
        }
        Ok(freed)
    }

    /// Removes the whole log from disk (the stream was deleted or retention passed the
    /// end of a closed shard).
    pub fn destroy(&self) -> io::Result<()> {
        let mut state = self.state.write();
        state.segments.clear();
        drop(state);
        match fs::remove_dir_all(&self.dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// Where to start scanning for `pos` (and, with a time filter, for the first record at or
/// after `min_ts`), given a segment's sparse index.
fn start_offset(index: &[IndexEntry], pos: u64, min_ts: i64) -> u64 {
    let time_entry = if min_ts > i64::MIN {
        let j = index.partition_point(|e| e.timestamp_ms < min_ts);
        index.get(j.saturating_sub(1)).filter(|e| e.position >= pos)
    } else {
        None
    };
    let j = index.partition_point(|e| e.position <= pos);
    match (j.checked_sub(1).map(|j| index[j]), time_entry) {
        (_, Some(t)) => t.offset,
        (Some(e), None) => e.offset,
        (None, None) => SEGMENT_HEADER_LEN,
    }
}

/// Writes a sealed segment's index file durably (temp file, fsync, rename).
fn write_index(path: &Path, index: &SealedIndex) -> io::Result<()> {
    let tmp = path.with_extension("idx.tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(&encode_index(index))?;
    f.sync_all()?;
    fs::rename(&tmp, path)
}

fn create_segment(path: &Path, base: u64) -> io::Result<File> {
    let mut file = OpenOptions::new()
        .create_new(true)
        .read(true)
        .append(true)
        .open(path)?;
    file.write_all(&encode_header(base))?;
    file.sync_all()?;
    Ok(file)
}

impl LogWriter {
    /// The shared log this writer appends to.
    pub fn log(&self) -> &Arc<Log> {
        &self.log
    }

    /// Position the next appended record will get.
    pub fn next_position(&self) -> u64 {
        self.next
    }

    /// Appends one batch of `(partition key, data)` records arriving at `timestamp_ms`
    /// (raised to the previous batch's time if the clock went back), makes it durable
    /// according to the fsync policy, then publishes it to readers. Returns the position of
    /// the first record and the arrival time used.
    pub fn append<'a, I>(&mut self, timestamp_ms: i64, records: I) -> io::Result<(u64, i64)>
    where
        I: IntoIterator<Item = (&'a [u8], &'a [u8])>,
    {
        let ts = timestamp_ms.max(self.last_ts);
        let base = self.next;
        self.buf.clear();
        let sealing = match self.log.keys.get() {
            Some(keys) => keys.sealing().map_err(io::Error::other)?,
            None => None,
        };
        let len = match sealing {
            None => encode_batch(base, ts, records, &mut self.buf),
            Some((key_id, cipher)) => {
                // A random 96-bit nonce per batch under a per-stream key.
                let mut nonce = [0u8; NONCE_LEN];
                rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut nonce);
                encode_sealed_batch(base, ts, records, &key_id, &cipher, nonce, &mut self.buf)
            }
        } as u64;
        let count = u64::from(
            u32::from_le_bytes(self.buf[24..28].try_into().expect("count"))
                & !super::segment::SEALED_FLAG,
        );
        if let Err(e) = self.file.write_all(&self.buf) {
            // Leave no partial batch behind: cut the file back to the last good length.
            let _ = self.file.set_len(self.len);
            return Err(e);
        }
        match self.log.opts.fsync {
            FsyncPolicy::Always => self.file.sync_data()?,
            FsyncPolicy::Interval(_) => self.unsynced = true,
            FsyncPolicy::Never => {}
        }
        let offset = self.len;
        self.len += len;
        self.next += count;
        self.last_ts = ts;
        let index_entry = (self.since_index >= self.log.opts.index_interval_bytes).then(|| {
            self.since_index = 0;
            IndexEntry {
                position: base,
                offset,
                timestamp_ms: ts,
            }
        });
        self.since_index += len;
        {
            let mut state = self.log.state.write();
            let seg = state.segments.last_mut().expect("active segment");
            seg.len = self.len;
            seg.end = self.next;
            seg.first_ts.get_or_insert(ts);
            seg.last_ts = Some(ts);
            if let Some(e) = index_entry {
                seg.index.push(e);
            }
        }
        self.log.disk_bytes.fetch_add(len, Ordering::Relaxed);
        self.log.committed.store(self.next, Ordering::Release);
        self.log.notify.send_replace(self.next);
        if self.len >= self.log.opts.segment_bytes {
            self.roll()?;
        }
        Ok((base, ts))
    }

    /// Fsyncs pending appends (for the interval policy and on shutdown).
    pub fn sync(&mut self) -> io::Result<()> {
        if self.unsynced {
            self.file.sync_data()?;
            self.unsynced = false;
        }
        Ok(())
    }

    /// Seals the active segment and starts a new one.
    fn roll(&mut self) -> io::Result<()> {
        self.file.sync_data()?;
        self.unsynced = false;
        let dir = self.log.dir.clone();
        {
            let state = self.log.state.read();
            let seg = state.segments.last().expect("active segment");
            let idx = SealedIndex {
                entries: seg.index.clone(),
                end_position: seg.end,
                len: seg.len,
            };
            write_index(&seg.index_file(), &idx)?;
        }
        let path = segment_path(&dir, self.next);
        let file = create_segment(&path, self.next)?;
        sync_dir(&dir)?;
        let reader = OpenOptions::new().read(true).open(&path)?;
        {
            let mut state = self.log.state.write();
            if let Some(active) = state.segments.last_mut() {
                active.sealed = true;
                active.index = Vec::new();
                active.file = None;
            }
            state.segments.push(Segment {
                base: self.next,
                path,
                file: Some(Arc::new(reader)),
                len: SEGMENT_HEADER_LEN,
                end: self.next,
                index: Vec::new(),
                first_ts: None,
                last_ts: None,
                sealed: false,
            });
        }
        self.log
            .disk_bytes
            .fetch_add(SEGMENT_HEADER_LEN, Ordering::Relaxed);
        self.file = file;
        self.len = SEGMENT_HEADER_LEN;
        self.since_index = u64::MAX;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
