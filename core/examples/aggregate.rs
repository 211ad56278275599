//! Encodes or decodes KPL aggregated records on the command line, with riffle-core's
//! `aggregate` module: a tool to inspect aggregates, and the Rust side of the Python
//! cross-check with `aws-kinesis-agg` (`tests/compat/test_kpl_aggregation.py`).
//!
//! ```text
//! aggregate encode < records.tsv     # lines "partition_key<TAB>hex data[<TAB>explicit hash key]"
//!                                    #   -> the aggregate's bytes as one hex line
//! aggregate decode < aggregate.hex   # one hex line -> the user records, one line each,
//!                                    #   "partition_key<TAB>explicit hash key or -<TAB>hex data"
//! ```
//!
//! `decode` exits with status 2 if the bytes are not an aggregate (a consumer would then
//! deliver them as a plain record).

use std::io::{self, BufRead, Read, Write};
use std::process::ExitCode;

use riffle_core::aggregate::{Aggregate, AggregateBuilder};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Result<Vec<u8>, String> {
    let s = s.trim();
    if s.len() % 2 != 0 {
        return Err(format!("odd number of hex digits: {}", s.len()));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|e| format!("bad hex at {i}: {e}")))
        .collect()
}

fn encode() -> Result<(), String> {
    let mut b = AggregateBuilder::new();
    for line in io::stdin().lock().lines() {
        let line = line.map_err(|e| e.to_string())?;
        if line.is_empty() {
            continue;
        }
        let mut cols = line.split('\t');
        let pk = cols.next().unwrap_or_default();
        let data = unhex(cols.next().ok_or("a line needs partition key and data")?)?;
        let ehk = cols.next().filter(|e| !e.is_empty());
        b.add(pk, ehk, &data);
    }
    println!("{}", hex(&b.encode()));
    Ok(())
}

fn decode() -> Result<bool, String> {
    let mut input = String::new();
    io::stdin()
        .read_to_string(&mut input)
        .map_err(|e| e.to_string())?;
    let bytes = unhex(&input)?;
    let Some(agg) = Aggregate::parse(&bytes) else {
        return Ok(false);
    };
    let mut out = io::stdout().lock();
    for r in &agg.records {
        writeln!(
            out,
            "{}\t{}\t{}",
            r.partition_key,
            r.explicit_hash_key.unwrap_or("-"),
            hex(r.data)
        )
        .map_err(|e| e.to_string())?;
    }
    Ok(true)
}

fn main() -> ExitCode {
    let result = match std::env::args().nth(1).as_deref() {
        Some("encode") => encode().map(|()| true),
        Some("decode") => decode(),
        _ => Err("usage: aggregate encode|decode (see the source's docs)".into()),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("not an aggregated record");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("aggregate: {e}");
            ExitCode::from(64)
        }
    }
}
