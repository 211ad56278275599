//! The TLS listener: a test CA and a server certificate for 127.0.0.1 and
//! localhost are generated per test; the AWS SDK for Rust trusts only that CA
//! and talks to `https://127.0.0.1:PORT`, where ALPN selects HTTP/2.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_kinesis::config::interceptors::BeforeDeserializationInterceptorContextRef;
use aws_sdk_kinesis::config::retry::RetryConfig;
use aws_sdk_kinesis::config::timeout::TimeoutConfig;
use aws_sdk_kinesis::config::{
    BehaviorVersion, ConfigBag, Credentials, Intercept, Region, RuntimeComponents,
};
use aws_sdk_kinesis::error::SdkError;
use aws_sdk_kinesis::types::ShardIteratorType;
use aws_sdk_kinesis::Client;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode, TlsContext, TrustStore};
use aws_smithy_runtime_api::box_error::BoxError;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;
use crate::fanout::{collect, position, put_each, register_active, subscribe, SHARD0};

/// A CA and a server certificate it signed, all PEM.
#[derive(Debug)]
pub(crate) struct Pki {
    pub(crate) ca_pem: String,
    /// Leaf first, then the CA.
    pub(crate) chain_pem: String,
    pub(crate) key_pem: String,
}

/// A fresh CA named `ca_name` and a server certificate for 127.0.0.1 and
/// localhost.
pub(crate) fn test_pki(ca_name: &str) -> Pki {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, ca_name);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).expect("self-sign the CA");
    let issuer = Issuer::new(ca, ca_key);

    let key = KeyPair::generate().expect("server key");
    let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .expect("server params");
    leaf.distinguished_name
        .push(DnType::CommonName, "riffle test broker");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let cert = leaf.signed_by(&key, &issuer).expect("sign the server cert");
    Pki {
        ca_pem: ca_cert.pem(),
        chain_pem: format!("{}{}", cert.pem(), ca_cert.pem()),
        key_pem: key.serialize_pem(),
    }
}

/// A broker with the default test config plus a TLS listener for `pki`.
async fn tls_broker(pki: &Pki, streams_extra: &str) -> TestBroker {
    TestBroker::builder()
        .config_toml(config(
            &format!("status_delay = \"50ms\"\n{streams_extra}"),
            "fsync = \"never\"",
            LIMITS_OFF,
        ))
        .tls(pki.chain_pem.clone(), pki.key_pem.clone())
        .start()
        .await
}

/// The headers of one response, names lower-cased.
type Headers = Vec<(String, String)>;

/// Response headers seen by the SDK, one entry per response.
#[derive(Debug, Clone, Default)]
struct Seen(Arc<Mutex<Vec<Headers>>>);

impl Seen {
    fn last(&self) -> Headers {
        self.0.lock().unwrap().last().cloned().unwrap_or_default()
    }
}

impl Intercept for Seen {
    fn name(&self) -> &'static str {
        "riffle-tests::Seen"
    }

    fn read_before_deserialization(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let headers = context
            .response()
            .headers()
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
            .collect();
        self.0.lock().unwrap().push(headers);
        Ok(())
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// An SDK client for an `https://` endpoint trusting only `ca_pem`; ALPN gives it HTTP/2.
pub(crate) fn h2_client(endpoint: &str, ca_pem: &str) -> Client {
    client_trusting(endpoint, &[ca_pem], &Seen::default())
}

/// An SDK client for `endpoint` whose HTTPS trust store holds exactly
/// `trusted` (no platform roots), with an interceptor recording headers.
fn client_trusting(endpoint: &str, trusted: &[&str], seen: &Seen) -> Client {
    let mut store = TrustStore::empty().with_native_roots(false);
    for pem in trusted {
        store = store.with_pem_certificate(pem.as_bytes());
    }
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
        .tls_context(
            TlsContext::builder()
                .with_trust_store(store)
                .build()
                .expect("TLS context"),
        )
        .build_https();
    let config = aws_sdk_kinesis::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "AKIDRIFFLETEST",
            "riffle-test-secret",
            None,
            None,
            "riffle-tests",
        ))
        .endpoint_url(endpoint)
        .http_client(http)
        .interceptor(seen.clone())
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_timeout(Duration::from_secs(30))
                .build(),
        )
        .build();
    Client::from_conf(config)
}

/// A rustls client config trusting exactly `ca_pem`, offering `alpn`.
fn rustls_client(ca_pem: &str, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("CA PEM")).expect("add CA");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// Handshakes with the broker's TLS port offering `alpn`; the protocol
/// the server selected and the open stream.
async fn handshake(
    broker: &TestBroker,
    ca_pem: &str,
    alpn: &[&[u8]],
) -> (
    Option<Vec<u8>>,
    tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
) {
    let tcp = tokio::net::TcpStream::connect(broker.tls_addr())
        .await
        .expect("connect to the TLS port");
    let name = ServerName::try_from("127.0.0.1").unwrap().to_owned();
    let tls = tokio::time::timeout(
        Duration::from_secs(10),
        rustls_client(ca_pem, alpn).connect(name, tcp),
    )
    .await
    .expect("handshake within 10 s")
    .expect("TLS handshake");
    let proto = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    (proto, tls)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_over_https_trusting_only_the_test_ca_uses_http2() {
    let pki = test_pki("Riffle test CA");
    let broker = tls_broker(&pki, "subscription_heartbeat = \"1s\"").await;
    let endpoint = broker.tls_endpoint();
    assert!(endpoint.starts_with("https://127.0.0.1:"), "{endpoint}");
    assert_ne!(broker.tls_addr(), broker.api_addr());

    // The SDK's rustls connector offers ALPN h2 and http/1.1; the broker picks h2.
    let (proto, _tls) = handshake(&broker, &pki.ca_pem, &[b"h2", b"http/1.1"]).await;
    assert_eq!(proto.as_deref(), Some(&b"h2"[..]), "ALPN with h2 offered");
    let (proto, _tls) = handshake(&broker, &pki.ca_pem, &[b"http/1.1"]).await;
    assert_eq!(
        proto.as_deref(),
        Some(&b"http/1.1"[..]),
        "ALPN http/1.1 only"
    );

    let seen = Seen::default();
    let client = client_trusting(&endpoint, &[&pki.ca_pem], &seen);

    // Control and data plane over https.
    client
        .create_stream()
        .stream_name("secure")
        .shard_count(1)
        .send()
        .await
        .expect("CreateStream over https");
    broker.wait_active("secure").await;
    let put = client
        .put_record()
        .stream_name("secure")
        .partition_key("k")
        .data(blob("over tls"))
        .send()
        .await
        .expect("PutRecord over https");
    assert_eq!(put.shard_id(), SHARD0);
    let it = iterator(
        &client,
        "secure",
        SHARD0,
        ShardIteratorType::TrimHorizon,
        None,
    )
    .await;
    let got = client
        .get_records()
        .shard_iterator(it)
        .send()
        .await
        .expect("GetRecords over https");
    assert_eq!(got.records().len(), 1);
    assert_eq!(got.records()[0].data().as_ref(), b"over tls");
    assert_eq!(got.records()[0].sequence_number(), put.sequence_number());
    let headers = seen.last();
    assert!(
        header(&headers, "x-amzn-requestid").is_some(),
        "GetRecords response headers {headers:?}"
    );

    // SubscribeToShard over the HTTP/2 connection: the response body is an
    // HTTP/2 stream, so it carries no Transfer-Encoding (over http:// the
    // same response is chunked HTTP/1.1, checked below).
    let arn = register_active(&client, "secure", "tls-reader").await;
    let mut rx = subscribe(
        &client,
        &arn,
        SHARD0,
        position(ShardIteratorType::TrimHorizon, None),
    )
    .await;
    let headers = seen.last();
    assert_eq!(
        header(&headers, "content-type"),
        Some("application/vnd.amazon.eventstream"),
        "{headers:?}"
    );
    assert_eq!(
        header(&headers, "transfer-encoding"),
        None,
        "an HTTP/2 response has no Transfer-Encoding: {headers:?}"
    );
    let data: Vec<String> = (0..20).map(|i| format!("tls-{i}")).collect();
    let mut seqs = vec![put.sequence_number().to_string()];
    seqs.extend(put_each(&client, "secure", &data).await);
    let got = collect(&mut rx, Some(21), Duration::from_secs(15)).await;
    let got_seqs: Vec<&str> = got.records.iter().map(|r| r.sequence_number()).collect();
    assert_eq!(got_seqs, seqs, "every record, in order, over https");

    // The same subscription over the plaintext port is chunked HTTP/1.1.
    let plain_seen = Seen::default();
    let plain = aws_sdk_kinesis::Client::from_conf(
        broker
            .client()
            .config()
            .to_builder()
            .interceptor(plain_seen.clone())
            .build(),
    );
    let arn2 = register_active(&plain, "secure", "plain-reader").await;
    let _rx2 = subscribe(
        &plain,
        &arn2,
        SHARD0,
        position(ShardIteratorType::Latest, None),
    )
    .await;
    let headers = plain_seen.last();
    assert_eq!(
        header(&headers, "transfer-encoding"),
        Some("chunked"),
        "over http:// the event stream is chunked HTTP/1.1: {headers:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_port_serves_http11_by_alpn() {
    let pki = test_pki("Riffle test CA");
    let broker = tls_broker(&pki, "").await;
    let (proto, mut tls) = handshake(&broker, &pki.ca_pem, &[b"http/1.1"]).await;
    assert_eq!(proto.as_deref(), Some(&b"http/1.1"[..]));
    let body = b"{}";
    let req = format!(
        "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-amz-json-1.1\r\n\
         X-Amz-Target: Kinesis_20131202.ListStreams\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    tls.write_all(req.as_bytes()).await.unwrap();
    tls.write_all(body).await.unwrap();
    tls.flush().await.unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut chunk = [0u8; 4096];
        for _ in 0..1000 {
            match tls.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "response within 10 s");
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("StreamNames"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_trust_the_ca_fails() {
    let pki = test_pki("Riffle test CA");
    let broker = tls_broker(&pki, "").await;
    let endpoint = broker.tls_endpoint();

    let other = test_pki("Some other CA");
    let cases = [
        ("an empty trust store", vec![]),
        ("another CA", vec![other.ca_pem.as_str()]),
    ];
    for (what, trusted) in cases {
        let client = client_trusting(&endpoint, &trusted, &Seen::default());
        let res = client.list_streams().send().await;
        match res {
            Ok(out) => panic!("a client trusting {what} must fail, got {out:?}"),
            Err(SdkError::DispatchFailure(e)) => {
                assert!(e.is_io() || e.is_other() || e.is_user(), "{what}: {e:?}");
                let text = format!("{e:?}").to_ascii_lowercase();
                assert!(
                    text.contains("certificate") || text.contains("unknownissuer"),
                    "{what}: the failure names the certificate: {text}"
                );
            }
            Err(other) => panic!("{what}: expected a connection failure, got {other:?}"),
        }
    }

    // The trusting client works against the same broker (the failure above
    // is the trust decision, not the listener).
    let ok = client_trusting(&endpoint, &[&pki.ca_pem], &Seen::default());
    ok.list_streams()
        .send()
        .await
        .expect("ListStreams with the CA");
}

/// Handshakes trusting `ca_pem` (and with `client` as its own certificate, if given), then
/// sends one HTTP/1.1 request; the response's status line, or why there was none.
async fn request_over_tls(
    broker: &TestBroker,
    ca_pem: &str,
    client: Option<(&str, &str)>,
) -> Result<String, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("CA PEM")).expect("add CA");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots);
    let mut config = match client {
        None => builder.with_no_client_auth(),
        Some((chain, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(chain.as_bytes())
                    .map(|c| c.expect("client chain"))
                    .collect(),
                rustls_pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key"),
            )
            .expect("client auth"),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(broker.tls_addr())
        .await
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from("127.0.0.1").unwrap().to_owned();
    let attempt = async {
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut buf = Vec::new();
        tls.read_to_end(&mut buf)
            .await
            .map_err(|e| format!("read: {e}"))?;
        let text = String::from_utf8_lossy(&buf).into_owned();
        text.lines()
            .next()
            .filter(|l| l.starts_with("HTTP/1.1 "))
            .map(str::to_owned)
            .ok_or_else(|| format!("no HTTP response: {text:?}"))
    };
    tokio::time::timeout(Duration::from_secs(10), attempt)
        .await
        .map_err(|_| "no answer within 10 s".to_string())?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_certificate_is_served_without_a_restart_and_a_bad_one_is_not() {
    let old = test_pki("Riffle CA before rotation");
    let new = test_pki("Riffle CA after rotation");
    let broker = tls_broker(&old, "").await;
    let pid = broker.pid();
    request_over_tls(&broker, &old.ca_pem, None)
        .await
        .expect("the first certificate is served");
    assert!(request_over_tls(&broker, &new.ca_pem, None).await.is_err());

    // Rotate both files, as cert-manager renewing a Secret does.
    let (cert_file, key_file) = broker.tls_files();
    std::fs::write(&key_file, &new.key_pem).unwrap();
    std::fs::write(&cert_file, &new.chain_pem).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while request_over_tls(&broker, &new.ca_pem, None).await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the rotated certificate was not served within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let err = request_over_tls(&broker, &old.ca_pem, None)
        .await
        .expect_err("the old certificate is no longer served");
    assert!(err.contains("handshake"), "{err}");
    assert_eq!(broker.pid(), pid, "same process, no restart");
    // The SDK over HTTP/2 trusts the new CA too.
    h2_client(&broker.tls_endpoint(), &new.ca_pem)
        .list_streams()
        .send()
        .await
        .expect("ListStreams over https after the rotation");

    // A key that does not match the certificate is refused; the current one stays.
    std::fs::write(&key_file, &old.key_pem).unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let still = request_over_tls(&broker, &new.ca_pem, None).await;
    assert!(
        still.as_ref().is_ok_and(|l| l.starts_with("HTTP/1.1 ")),
        "a bad pair does not replace the certificate in use: {still:?}"
    );
    let log = broker.stderr_text();
    assert!(log.contains("TLS certificate reloaded"), "{log}");
    assert!(log.contains("TLS certificate not reloaded"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_client_ca_only_clients_with_its_certificates_get_in() {
    let server = test_pki("Riffle server CA");
    // A client CA and a client certificate it signed.
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "Riffle client CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(Vec::<String>::new()).unwrap();
    leaf.distinguished_name.push(DnType::CommonName, "checkout");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let client_cert = leaf.signed_by(&key, &issuer).unwrap();
    // A certificate from a CA the broker does not know.
    let stranger = test_pki("Some other CA");

    let broker = TestBroker::builder()
        .config_toml(config(
            "status_delay = \"50ms\"",
            "fsync = \"never\"",
            LIMITS_OFF,
        ))
        .tls(server.chain_pem.clone(), server.key_pem.clone())
        .tls_client_ca(ca_cert.pem())
        .start()
        .await;
    let chain = client_cert.pem();
    let key_pem = key.serialize_pem();
    let ok = request_over_tls(&broker, &server.ca_pem, Some((&chain, &key_pem))).await;
    assert!(
        ok.as_ref().is_ok_and(|l| l.starts_with("HTTP/1.1 ")),
        "a certificate from the client CA is accepted: {ok:?}"
    );
    let err = request_over_tls(&broker, &server.ca_pem, None)
        .await
        .expect_err("no client certificate, no service");
    assert!(!err.contains("HTTP/1.1"), "{err}");
    let err = request_over_tls(
        &broker,
        &server.ca_pem,
        Some((&stranger.chain_pem, &stranger.key_pem)),
    )
    .await
    .expect_err("a certificate from another CA is refused");
    assert!(!err.contains("HTTP/1.1"), "{err}");
    // The plaintext port is not affected.
    broker
        .client()
        .list_streams()
        .send()
        .await
        .expect("plaintext API");
}
