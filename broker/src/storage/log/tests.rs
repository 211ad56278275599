use std::collections::VecDeque;

use proptest::prelude::*;

use super::*;

fn opts(segment_bytes: u64) -> LogOptions {
    LogOptions {
        fsync: FsyncPolicy::Always,
        segment_bytes,
        index_interval_bytes: 256,
    }
}

fn payload(i: u64) -> Vec<u8> {
    format!("record-{i}-{}", "x".repeat((i % 50) as usize)).into_bytes()
}

fn append_n(w: &mut LogWriter, from: u64, n: u64, ts: i64) {
    let keys: Vec<String> = (from..from + n).map(|i| format!("k{i}")).collect();
    let data: Vec<Vec<u8>> = (from..from + n).map(payload).collect();
    w.append(
        ts,
        keys.iter()
            .map(|k| k.as_bytes())
            .zip(data.iter().map(|d| &d[..])),
    )
    .unwrap();
}

fn read_all(log: &Log) -> Vec<StoredRecord> {
    let mut out = Vec::new();
    let mut pos = 0;
    loop {
        let r = log.read(pos, 7, usize::MAX, i64::MIN).unwrap();
        if r.records.is_empty() {
            return out;
        }
        pos = r.next_position;
        out.extend(r.records);
    }
}

#[test]
fn appends_read_back_in_order_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let (log, mut w) = Log::open(dir.path(), opts(8 * 1024)).unwrap();
    for b in 0..200 {
        append_n(&mut w, b * 10, 10, 1000 + b as i64);
    }
    assert_eq!(log.end_position(), 2000);
    assert!(log.state.read().segments.len() > 3, "should have rolled");
    let all = read_all(&log);
    assert_eq!(all.len(), 2000);
    for (i, r) in all.iter().enumerate() {
        assert_eq!(r.position, i as u64);
        assert_eq!(&r.data[..], &payload(i as u64)[..]);
        assert_eq!(&r.partition_key[..], format!("k{i}").as_bytes());
    }
    // Sealed segments keep neither their index nor an open file in memory.
    {
        let state = log.state.read();
        let (sealed, active) = state.segments.split_at(state.segments.len() - 1);
        assert!(sealed
            .iter()
            .all(|s| s.sealed && s.index.is_empty() && s.file.is_none()));
        assert!(active[0].file.is_some() && !active[0].sealed);
    }
    // A read from the middle starts exactly there.
    let mid = log.read(1234, 3, usize::MAX, i64::MIN).unwrap();
    assert_eq!(
        mid.records.iter().map(|r| r.position).collect::<Vec<_>>(),
        vec![1234, 1235, 1236]
    );
    assert_eq!(mid.next_position, 1237);
}

#[test]
fn byte_budget_stops_early_but_always_returns_one_record() {
    let dir = tempfile::tempdir().unwrap();
    let (log, mut w) = Log::open(dir.path(), opts(1 << 20)).unwrap();
    append_n(&mut w, 0, 100, 1);
    let r = log.read(0, 1000, 1, i64::MIN).unwrap();
    assert_eq!(r.records.len(), 1);
    assert_eq!(r.next_position, 1);
    let r = log.read(5, 1000, 60, i64::MIN).unwrap();
    assert!(!r.records.is_empty() && r.records.len() < 10);
    assert_eq!(r.next_position, 5 + r.records.len() as u64);
}

#[test]
fn reopen_recovers_everything_and_continues_positions() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (_log, mut w) = Log::open(dir.path(), opts(64 * 1024)).unwrap();
        for b in 0..100 {
            append_n(&mut w, b * 10, 10, b as i64);
        }
    }
    let (log, mut w) = Log::open(dir.path(), opts(64 * 1024)).unwrap();
    assert_eq!(log.end_position(), 1000);
    assert_eq!(w.next_position(), 1000);
    append_n(&mut w, 1000, 5, 500);
    let all = read_all(&log);
    assert_eq!(all.len(), 1005);
    assert!(all.iter().enumerate().all(|(i, r)| r.position == i as u64));
}

#[test]
fn sealed_segments_without_an_index_are_rescanned_not_rejected() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (_log, mut w) = Log::open(dir.path(), opts(4 * 1024)).unwrap();
        for b in 0..40 {
            append_n(&mut w, b * 10, 10, b as i64);
        }
    }
    let mut removed = 0;
    for e in fs::read_dir(dir.path()).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "idx") {
            fs::remove_file(p).unwrap();
            removed += 1;
        }
    }
    assert!(removed > 0, "the test needs sealed segments");
    let files_with = |ext: &str| {
        let mut v: Vec<PathBuf> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == ext))
            .collect();
        v.sort();
        v
    };
    let seg_lens =
        |v: &[PathBuf]| -> Vec<u64> { v.iter().map(|p| fs::metadata(p).unwrap().len()).collect() };
    let lens = seg_lens(&files_with("seg"));
    let (log, _w) = Log::open(dir.path(), opts(4 * 1024)).unwrap();
    assert_eq!(log.end_position(), 400);
    assert_eq!(read_all(&log).len(), 400);
    // A clean shutdown leaves nothing to truncate, and the missing indexes are written back.
    assert_eq!(lens, seg_lens(&files_with("seg")));
    assert_eq!(files_with("idx").len(), removed);
}

#[test]
fn torn_tail_is_truncated_and_never_visible() {
    let dir = tempfile::tempdir().unwrap();
    let path;
    {
        let (log, mut w) = Log::open(dir.path(), opts(1 << 20)).unwrap();
        append_n(&mut w, 0, 10, 1);
        append_n(&mut w, 10, 10, 2);
        path = log.state.read().segments.last().unwrap().path.clone();
    }
    // Cut the last batch in half, as a crash in the middle of a write would.
    let len = fs::metadata(&path).unwrap().len();
    let f = OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(len - 40).unwrap();
    drop(f);
    let (log, mut w) = Log::open(dir.path(), opts(1 << 20)).unwrap();
    assert_eq!(log.end_position(), 10, "the torn batch is gone whole");
    append_n(&mut w, 10, 3, 3);
    let all = read_all(&log);
    assert_eq!(all.len(), 13);
    assert_eq!(&all[12].data[..], &payload(12)[..]);
}

#[test]
fn garbage_after_the_last_batch_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let path;
    {
        let (log, mut w) = Log::open(dir.path(), opts(1 << 20)).unwrap();
        append_n(&mut w, 0, 4, 1);
        path = log.state.read().segments.last().unwrap().path.clone();
    }
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(&[0xAB; 100]).unwrap();
    drop(f);
    let (log, _w) = Log::open(dir.path(), opts(1 << 20)).unwrap();
    assert_eq!(log.end_position(), 4);
    assert_eq!(read_all(&log).len(), 4);
}

#[test]
fn time_lookup_and_retention_filter() {
    let dir = tempfile::tempdir().unwrap();
    let (log, mut w) = Log::open(dir.path(), opts(1024)).unwrap();
    for b in 0..50u64 {
        append_n(&mut w, b * 4, 4, 1_000 * b as i64);
    }
    assert_eq!(log.position_at_time(0).unwrap(), 0);
    assert_eq!(log.position_at_time(1).unwrap(), 4);
    assert_eq!(log.position_at_time(10_000).unwrap(), 40);
    assert_eq!(log.position_at_time(49_001).unwrap(), 200);
    // Records older than the cutoff are skipped by reads...
    let r = log.read(0, 1000, usize::MAX, 20_000).unwrap();
    assert_eq!(r.records.first().unwrap().position, 80);
    // ...and whole segments before it are deleted.
    let segments_before = log.state.read().segments.len();
    let freed = log.apply_retention(20_000).unwrap();
    assert!(freed > 0);
    assert!(log.state.read().segments.len() < segments_before);
    assert!(log.start_position() <= 80 && log.start_position() > 0);
    let r = log.read(0, 1, usize::MAX, 20_000).unwrap();
    assert_eq!(r.records[0].position, 80);
    // Reopening after retention keeps the remaining positions.
    drop(w);
    let (log2, _w) = Log::open(dir.path(), opts(1024)).unwrap();
    assert_eq!(log2.end_position(), 200);
    assert_eq!(log2.start_position(), log.start_position());
}

#[test]
fn clock_going_back_never_makes_time_decrease() {
    let dir = tempfile::tempdir().unwrap();
    let (log, mut w) = Log::open(dir.path(), opts(1 << 20)).unwrap();
    append_n(&mut w, 0, 1, 5_000);
    append_n(&mut w, 1, 1, 1_000);
    let all = read_all(&log);
    assert_eq!(all[1].timestamp_ms, 5_000);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// The log against an in-memory model: any sequence of appends, reopens, and reads
    /// returns exactly what the model holds.
    #[test]
    fn matches_a_model(ops in proptest::collection::vec((0u8..4, 1usize..20, any::<u64>()), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let o = LogOptions { fsync: FsyncPolicy::Never, segment_bytes: 2048, index_interval_bytes: 128 };
        let (mut log, mut w) = Log::open(dir.path(), o).unwrap();
        let mut model: VecDeque<Vec<u8>> = VecDeque::new();
        let mut ts = 0i64;
        for (op, n, seed) in ops {
            match op {
                0 | 1 => {
                    let recs: Vec<Vec<u8>> = (0..n).map(|i| vec![(seed as u8).wrapping_add(i as u8); (seed as usize + i) % 300]).collect();
                    ts += 1;
                    w.append(ts, recs.iter().map(|d| (&b"pk"[..], &d[..]))).unwrap();
                    model.extend(recs);
                }
                2 => {
                    drop(w);
                    let (l, nw) = Log::open(dir.path(), o).unwrap();
                    log = l;
                    w = nw;
                }
                _ => {
                    let from = if model.is_empty() { 0 } else { seed % model.len() as u64 };
                    let r = log.read(from, n, usize::MAX, i64::MIN).unwrap();
                    let want: Vec<&Vec<u8>> = model.iter().skip(from as usize).take(n).collect();
                    prop_assert_eq!(r.records.len(), want.len());
                    for (got, want) in r.records.iter().zip(want) {
                        prop_assert_eq!(&got.data[..], &want[..]);
                    }
                }
            }
            prop_assert_eq!(log.end_position(), model.len() as u64);
        }
        let all = read_all(&log);
        prop_assert_eq!(all.len(), model.len());
    }
}
