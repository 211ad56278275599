//! Wire-level edge cases with hand-written HTTP/1.1 requests, so nothing is
//! validated or fixed up client-side.

use riffle_tests::http::{self, Response};

use crate::common::*;

const JSON: &str = "application/x-amz-json-1.1";

async fn call(broker: &TestBroker, target: &str, body: &[u8]) -> Response {
    let host = broker.api_addr().to_string();
    let (date, auth) = sigv4::sign(&host, JSON, target, body);
    http::request(
        broker.api_addr(),
        "POST",
        "/",
        &[
            ("Content-Type", JSON),
            ("X-Amz-Target", target),
            ("X-Amz-Date", &date),
            ("Authorization", &auth),
        ],
        body,
    )
    .await
    .unwrap_or_else(|e| panic!("{target}: {e}"))
}

/// `__type` with any namespace (`ns#Name`) or suffix (`Name:uri`) removed.
fn error_type(resp: &Response) -> String {
    let v: serde_json::Value = serde_json::from_slice(&resp.body)
        .unwrap_or_else(|e| panic!("error body is not JSON ({e}): {}", resp.body_text()));
    let t = v["__type"]
        .as_str()
        .unwrap_or_else(|| panic!("no __type in {}", resp.body_text()));
    let t = t.rsplit('#').next().unwrap();
    t.split(':').next().unwrap().to_string()
}

#[track_caller]
fn assert_common_headers(resp: &Response) {
    assert_ne!(resp.status, 500, "never a 500: {}", resp.body_text());
    let id = resp
        .header("x-amzn-RequestId")
        .unwrap_or_else(|| panic!("x-amzn-RequestId missing: {:?}", resp.headers));
    assert!(!id.is_empty());
    let date = resp
        .header("Date")
        .unwrap_or_else(|| panic!("Date missing: {:?}", resp.headers));
    assert!(date.ends_with("GMT"), "HTTP date: {date}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_operation_is_400_unknown_operation_exception() {
    let broker = TestBroker::start().await;
    let resp = call(&broker, "Kinesis_20131202.Frobnicate", b"{}").await;
    assert_common_headers(&resp);
    assert_eq!(resp.status, 400, "{}", resp.body_text());
    assert_eq!(error_type(&resp), "UnknownOperationException");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_is_400_serialization_exception() {
    let broker = TestBroker::start().await;
    for body in [
        b"{\"StreamName\": ".as_slice(),
        b"not json at all",
        b"{\"StreamName\": \"x\",}",
    ] {
        let resp = call(&broker, "Kinesis_20131202.CreateStream", body).await;
        assert_common_headers(&resp);
        assert_eq!(resp.status, 400, "{}", resp.body_text());
        assert_eq!(
            error_type(&resp),
            "SerializationException",
            "body {:?}",
            String::from_utf8_lossy(body)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_json_type_is_400_serialization_exception() {
    let broker = TestBroker::start().await;
    let cases: [(&str, &[u8]); 4] = [
        (
            "Kinesis_20131202.CreateStream",
            b"{\"StreamName\":\"x\",\"ShardCount\":\"2\"}",
        ),
        (
            "Kinesis_20131202.CreateStream",
            b"{\"StreamName\":42,\"ShardCount\":1}",
        ),
        ("Kinesis_20131202.ListStreams", b"{\"Limit\":true}"),
        (
            "Kinesis_20131202.PutRecords",
            b"{\"StreamName\":\"x\",\"Records\":{}}",
        ),
    ];
    for (target, body) in cases {
        let resp = call(&broker, target, body).await;
        assert_common_headers(&resp);
        assert_eq!(resp.status, 400, "{target}: {}", resp.body_text());
        assert_eq!(
            error_type(&resp),
            "SerializationException",
            "{target} {:?}",
            String::from_utf8_lossy(body)
        );
    }
    // Nothing was created by the rejected requests.
    let list = call(&broker, "Kinesis_20131202.ListStreams", b"{}").await;
    let v: serde_json::Value = serde_json::from_slice(&list.body).unwrap();
    assert_eq!(v["StreamNames"], serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_carry_request_id_date_and_json_errors() {
    let broker = TestBroker::start().await;
    let ok = call(
        &broker,
        "Kinesis_20131202.CreateStream",
        b"{\"StreamName\":\"wire\",\"ShardCount\":1}",
    )
    .await;
    assert_common_headers(&ok);
    assert_eq!(ok.status, 200, "{}", ok.body_text());
    broker.wait_active("wire").await;

    let list = call(&broker, "Kinesis_20131202.ListStreams", b"{}").await;
    assert_common_headers(&list);
    assert_eq!(list.status, 200);
    assert!(list
        .header("content-type")
        .unwrap_or_default()
        .starts_with("application/x-amz-json-1.1"));
    let v: serde_json::Value = serde_json::from_slice(&list.body).unwrap();
    assert_eq!(v["StreamNames"], serde_json::json!(["wire"]));
    assert_eq!(v["HasMoreStreams"], serde_json::json!(false));

    // Distinct request ids.
    assert_ne!(
        ok.header("x-amzn-RequestId"),
        list.header("x-amzn-RequestId")
    );

    let missing = call(
        &broker,
        "Kinesis_20131202.DescribeStream",
        b"{\"StreamName\":\"nope\"}",
    )
    .await;
    assert_common_headers(&missing);
    assert_eq!(missing.status, 400);
    assert_eq!(error_type(&missing), "ResourceNotFoundException");
    let v: serde_json::Value = serde_json::from_slice(&missing.body).unwrap();
    assert_eq!(
        v["message"],
        serde_json::json!("Stream nope under account 000000000000 not found.")
    );

    // An empty body and a missing target never yield a 500.
    let empty = call(&broker, "Kinesis_20131202.DescribeStream", b"").await;
    assert_common_headers(&empty);
    assert_eq!(empty.status, 400);
    assert_eq!(error_type(&empty), "SerializationException");
    let no_target = http::request(
        broker.api_addr(),
        "POST",
        "/",
        &[("Content-Type", JSON)],
        b"{}",
    )
    .await
    .unwrap();
    assert_common_headers(&no_target);
    assert_eq!(no_target.status, 400, "{}", no_target.body_text());
    assert_eq!(error_type(&no_target), "UnknownOperationException");
}
