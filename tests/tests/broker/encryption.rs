//! Encryption at rest through the socket: StartStreamEncryption seals new records under a
//! key from the key file, the data directory holds none of their bytes in the clear, a
//! restart with the key reads them back, and a missing or wrong key is a KMS error, never
//! garbage.

use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_sdk_kinesis::error::ProvideErrorMetadata;
use aws_sdk_kinesis::types::{EncryptionType, PutRecordsRequestEntry, ShardIteratorType};
use aws_sdk_kinesis::Client;

use crate::common::*;

const KEY_1: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const KEY_2: &str = "2222222222222222222222222222222222222222222222222222222222222222";
const SHARD: &str = "shardId-000000000000";

fn write_keys(path: &Path, keys: &[(&str, &str)]) {
    let mut text = String::from("[keys]\n");
    for (id, key) in keys {
        text.push_str(&format!("\"{id}\" = \"{key}\"\n"));
    }
    // Write-then-rename, as a Secret volume is updated, so the broker never reads half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A broker whose key ring is `key_file` (reread every 200 ms) plus the harness's test key.
async fn broker_with_key_file(key_file: &Path) -> TestBroker {
    let base = config("status_delay = \"50ms\"", "fsync = \"never\"", LIMITS_OFF);
    let cfg = base.replacen(
        "[encryption.keys]\n",
        &format!(
            "[encryption]\nkey_file = \"{}\"\nreload_interval = \"200ms\"\n\n[encryption.keys]\n",
            key_file.display()
        ),
        1,
    );
    assert_ne!(cfg, base);
    TestBroker::builder().config_toml(cfg).start().await
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Whether any file under `dir` contains `needle`.
fn on_disk(dir: &Path, needle: &[u8]) -> bool {
    files(dir).iter().any(|f| {
        let bytes = std::fs::read(f).unwrap_or_default();
        bytes.windows(needle.len()).any(|w| w == needle)
    })
}

/// One GetRecords call from `iterator`: (data and whether each is KMS-encrypted, next).
async fn get(
    client: &Client,
    iterator: &str,
) -> Result<(Vec<(String, bool)>, String), (String, String)> {
    match client.get_records().shard_iterator(iterator).send().await {
        Ok(out) => Ok((
            out.records()
                .iter()
                .map(|r| {
                    (
                        String::from_utf8(r.data().as_ref().to_vec()).unwrap(),
                        r.encryption_type() == Some(&EncryptionType::Kms),
                    )
                })
                .collect(),
            out.next_shard_iterator().unwrap().to_owned(),
        )),
        Err(e) => Err((
            e.code().unwrap_or_default().to_owned(),
            e.message().unwrap_or_default().to_owned(),
        )),
    }
}

/// Every record of the shard from TRIM_HORIZON until a read returns nothing.
async fn read_all(client: &Client, stream: &str) -> Vec<(String, bool)> {
    let mut it = iterator(client, stream, SHARD, ShardIteratorType::TrimHorizon, None).await;
    let mut all = Vec::new();
    for _ in 0..20 {
        let (records, next) = get(client, &it).await.expect("GetRecords");
        if records.is_empty() {
            return all;
        }
        all.extend(records);
        it = next;
    }
    panic!("the shard did not end within 20 reads");
}

/// StartStreamEncryption of `stream` under `key_id`.
async fn start_encryption(
    client: &Client,
    stream: &str,
    key_id: &str,
) -> Result<(), aws_sdk_kinesis::Error> {
    client
        .start_stream_encryption()
        .stream_name(stream)
        .encryption_type(EncryptionType::Kms)
        .key_id(key_id)
        .send()
        .await
        .map(|_| ())
        .map_err(Into::into)
}

async fn put(client: &Client, stream: &str, key: &str, data: &str) -> Option<EncryptionType> {
    client
        .put_record()
        .stream_name(stream)
        .partition_key(key)
        .data(blob(data.as_bytes().to_vec()))
        .send()
        .await
        .expect("PutRecord")
        .encryption_type()
        .cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_records_leave_no_plaintext_on_disk_and_need_their_key() {
    let keys_dir = tempfile::tempdir().unwrap();
    let key_file = keys_dir.path().join("keys.toml");
    write_keys(&key_file, &[("alias/orders", KEY_1)]);
    let mut broker = broker_with_key_file(&key_file).await;
    broker.create_stream("enc", 1).await;
    let client = broker.client();

    assert_eq!(
        put(&client, "enc", "clear-key", "CLEARTEXT-BEFORE-0").await,
        None
    );
    start_encryption(
        &client,
        "enc",
        "arn:aws:kms:us-east-1:000000000000:alias/orders",
    )
    .await
    .expect("StartStreamEncryption with the key's alias ARN");
    broker.wait_active("enc").await;
    let summary = client
        .describe_stream_summary()
        .stream_name("enc")
        .send()
        .await
        .unwrap();
    let summary = summary.stream_description_summary().unwrap();
    assert_eq!(summary.encryption_type(), Some(&EncryptionType::Kms));
    assert_eq!(
        summary.key_id(),
        Some("arn:aws:kms:us-east-1:000000000000:alias/orders")
    );

    // Sealed from now on: PutRecord and PutRecords, data and partition keys.
    let mut want = vec![("CLEARTEXT-BEFORE-0".to_owned(), false)];
    for i in 0..20 {
        let data = format!("SECRET-PAYLOAD-{i:03}");
        assert_eq!(
            put(&client, "enc", "SECRET-PARTITION-KEY", &data).await,
            Some(EncryptionType::Kms)
        );
        want.push((data, true));
    }
    let entries: Vec<_> = (20..120)
        .map(|i| {
            let data = format!("SECRET-PAYLOAD-{i:03}");
            want.push((data.clone(), true));
            PutRecordsRequestEntry::builder()
                .partition_key("SECRET-PARTITION-KEY")
                .data(blob(data.into_bytes()))
                .build()
                .unwrap()
        })
        .collect();
    let out = client
        .put_records()
        .stream_name("enc")
        .set_records(Some(entries))
        .send()
        .await
        .unwrap();
    assert_eq!(out.failed_record_count(), Some(0));
    assert_eq!(out.encryption_type(), Some(&EncryptionType::Kms));
    assert_eq!(read_all(&client, "enc").await, want);

    // The bytes on disk: the record before encryption is there (so the search sees the
    // log), nothing written after it is.
    broker.terminate().await;
    let data_dir = broker.data_dir().to_owned();
    assert!(
        on_disk(&data_dir, b"CLEARTEXT-BEFORE-0"),
        "the search finds clear records"
    );
    assert!(
        !on_disk(&data_dir, b"SECRET-PAYLOAD"),
        "record data in the clear on disk"
    );
    assert!(
        !on_disk(&data_dir, b"SECRET-PARTITION-KEY"),
        "a partition key in the clear"
    );

    // A restart with the key reads everything back.
    broker.restart().await;
    let client = broker.client();
    assert_eq!(read_all(&client, "enc").await, want);

    // The wrong key under the same id: the clear record, then KMSAccessDeniedException.
    broker.terminate().await;
    write_keys(&key_file, &[("alias/orders", KEY_2)]);
    broker.restart().await;
    let client = broker.client();
    let it = iterator(&client, "enc", SHARD, ShardIteratorType::TrimHorizon, None).await;
    let (first, next) = get(&client, &it)
        .await
        .expect("the clear record is readable");
    assert_eq!(first, want[..1]);
    let (code, message) = get(&client, &next).await.unwrap_err();
    assert_eq!(code, "KMSAccessDeniedException", "{message}");
    assert!(message.contains("alias/orders"), "{message}");
    assert!(
        !message.contains(KEY_2) && !message.contains(KEY_1),
        "{message}"
    );

    // No such key at all: KMSNotFoundException for reads and for new writes.
    write_keys(&key_file, &[]);
    let mut last = None;
    for _ in 0..50 {
        match get(&client, &next).await {
            Err((code, msg)) if code == "KMSNotFoundException" => {
                last = Some(msg);
                break;
            }
            other => last = Some(format!("{other:?}")),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let message = last.unwrap();
    assert!(
        message.contains("Key alias/orders is not found"),
        "{message}"
    );
    let err = client
        .put_record()
        .stream_name("enc")
        .partition_key("k")
        .data(blob(b"x".to_vec()))
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("KMSNotFoundException"), "{err:?}");

    // The right key comes back into the file: read again without a restart.
    write_keys(&key_file, &[("alias/orders", KEY_1)]);
    let mut records = Err((String::new(), String::new()));
    for _ in 0..50 {
        records = get(&client, &next).await;
        if records.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (records, _) = records.expect("reads resume once the key is back");
    assert_eq!(records, want[1..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_key_is_refused_and_stopping_leaves_old_records_readable() {
    let keys_dir = tempfile::tempdir().unwrap();
    let key_file = keys_dir.path().join("keys.toml");
    write_keys(&key_file, &[("alias/orders", KEY_1)]);
    let mut broker = broker_with_key_file(&key_file).await;
    broker.create_stream("s", 1).await;
    let client = broker.client();

    let err = client
        .start_stream_encryption()
        .stream_name("s")
        .encryption_type(EncryptionType::Kms)
        .key_id("alias/nope")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("KMSNotFoundException"), "{err:?}");
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(400));
    assert_eq!(put(&client, "s", "k", "STILL-CLEAR").await, None);

    start_encryption(&client, "s", "alias/orders")
        .await
        .unwrap();
    broker.wait_active("s").await;
    assert_eq!(
        put(&client, "s", "k", "SEALED-RECORD").await,
        Some(EncryptionType::Kms)
    );
    client
        .stop_stream_encryption()
        .stream_name("s")
        .encryption_type(EncryptionType::Kms)
        .key_id("alias/orders")
        .send()
        .await
        .unwrap();
    broker.wait_active("s").await;
    assert_eq!(put(&client, "s", "k", "CLEAR-AGAIN").await, None);
    let summary = client
        .describe_stream_summary()
        .stream_name("s")
        .send()
        .await
        .unwrap();
    assert_eq!(
        summary
            .stream_description_summary()
            .unwrap()
            .encryption_type(),
        Some(&EncryptionType::None)
    );
    assert_eq!(
        read_all(&client, "s").await,
        vec![
            ("STILL-CLEAR".to_owned(), false),
            ("SEALED-RECORD".to_owned(), true),
            ("CLEAR-AGAIN".to_owned(), false),
        ]
    );
    broker.terminate().await;
    assert!(on_disk(broker.data_dir(), b"CLEAR-AGAIN"));
    assert!(!on_disk(broker.data_dir(), b"SEALED-RECORD"));
}
