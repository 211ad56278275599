//! IAM-style authorization: policies attached to users and roles, evaluated as AWS does
//! (an explicit Deny anywhere wins, then any Allow, else an implicit deny).
//!
//! Evaluation is [`iam_rs`] (pinned: it gets Allow-then-Deny within one document and
//! case-insensitive actions right, where other crates did not) behind [`PolicySet`], so
//! another engine can take its place without touching callers.
//!
//! Policies are written in the credentials file either as IAM JSON documents or as one of
//! four templates scoped to stream name patterns:
//!
//! | template | actions |
//! |---|---|
//! | `administrator` | every `kinesis:` action |
//! | `resharding` | SplitShard, MergeShards, UpdateShardCount, and describing the stream |
//! | `producer` | PutRecord, PutRecords, DescribeStream(Summary), ListShards |
//! | `consumer` | GetRecords, GetShardIterator, SubscribeToShard, DescribeStream(Summary), ListShards, and registering / describing / listing consumers |
//!
//! Every template also allows the account-level reads (ListStreams, DescribeLimits,
//! DescribeAccountSettings), whose resource is the account.

use serde::Deserialize;

/// A policy attached to a user or role.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum PolicyRef {
    /// A template for every stream of the account: `"producer"`.
    Template(String),
    /// A template for some streams: `{ template = "producer", streams = ["orders", "clicks-*"] }`.
    Scoped {
        /// The template's name.
        template: String,
        /// Stream name patterns (`*` and `?` wildcards).
        streams: Vec<String>,
    },
    /// An IAM policy document (JSON text).
    Document {
        /// The document.
        document: String,
    },
}

const READ_STREAM: &[&str] = &["DescribeStream", "DescribeStreamSummary", "ListShards"];
const ACCOUNT_READS: &[&str] = &["ListStreams", "DescribeLimits", "DescribeAccountSettings"];

/// The actions of a template on streams, and on consumers of those streams.
fn template_actions(name: &str) -> Option<(Vec<&'static str>, Vec<&'static str>)> {
    Some(match name {
        "administrator" => (vec!["*"], vec!["*"]),
        "resharding" => (
            [
                &["SplitShard", "MergeShards", "UpdateShardCount"][..],
                READ_STREAM,
            ]
            .concat(),
            vec![],
        ),
        "producer" => (
            [&["PutRecord", "PutRecords"][..], READ_STREAM].concat(),
            vec![],
        ),
        "consumer" => (
            [
                &[
                    "GetRecords",
                    "GetShardIterator",
                    "RegisterStreamConsumer",
                    "ListStreamConsumers",
                    "DescribeStreamConsumer",
                ][..],
                READ_STREAM,
            ]
            .concat(),
            vec![
                "SubscribeToShard",
                "DescribeStreamConsumer",
                "DeregisterStreamConsumer",
            ],
        ),
        _ => return None,
    })
}

/// The template names.
pub const TEMPLATES: &[&str] = &["administrator", "resharding", "producer", "consumer"];

impl PolicyRef {
    /// Checks the reference can be compiled (a known template, a valid document).
    pub fn check(&self) -> Result<(), String> {
        self.document("us-east-1", "000000000000").map(drop)
    }

    /// The IAM policy document this stands for, for resources in `region` / `account`.
    pub fn document(&self, region: &str, account: &str) -> Result<String, String> {
        let (template, streams) = match self {
            PolicyRef::Document { document } => {
                iam_rs::IAMPolicy::from_json(document)
                    .map_err(|e| format!("invalid policy document: {e}"))?;
                return Ok(document.clone());
            }
            PolicyRef::Template(t) => (t.as_str(), vec!["*".to_owned()]),
            PolicyRef::Scoped { template, streams } => (template.as_str(), streams.clone()),
        };
        let (stream_actions, consumer_actions) = template_actions(template).ok_or_else(|| {
            format!(
                "unknown policy template {template:?} (known: {})",
                TEMPLATES.join(", ")
            )
        })?;
        if streams.is_empty() {
            return Err(format!("template {template:?} names no streams"));
        }
        let action = |names: &[&str]| -> Vec<String> {
            names.iter().map(|a| format!("kinesis:{a}")).collect()
        };
        // An unscoped template covers every resource of the account, consumers included.
        let stream_arns: Vec<String> = if streams == ["*"] {
            vec!["*".to_owned()]
        } else {
            streams
                .iter()
                .map(|s| format!("arn:aws:kinesis:{region}:{account}:stream/{s}"))
                .collect()
        };
        let consumer_arns: Vec<String> = stream_arns
            .iter()
            .map(|a| {
                if a == "*" {
                    a.clone()
                } else {
                    format!("{a}/consumer/*")
                }
            })
            .collect();
        let mut statements = vec![
            serde_json::json!({
                "Sid": format!("{template}Streams"),
                "Effect": "Allow",
                "Action": action(&stream_actions),
                "Resource": stream_arns,
            }),
            serde_json::json!({
                "Sid": "AccountReads",
                "Effect": "Allow",
                "Action": action(ACCOUNT_READS),
                "Resource": "*",
            }),
        ];
        if !consumer_actions.is_empty() {
            statements.push(serde_json::json!({
                "Sid": format!("{template}Consumers"),
                "Effect": "Allow",
                "Action": action(&consumer_actions),
                "Resource": consumer_arns,
            }));
        }
        Ok(serde_json::json!({ "Version": "2012-10-17", "Statement": statements }).to_string())
    }
}

/// The outcome of evaluating a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// An Allow statement matched and no Deny did.
    Allow,
    /// A Deny statement matched.
    ExplicitDeny,
    /// Nothing matched.
    ImplicitDeny,
}

/// Compiled policies of one principal (or of one resource).
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    evaluator: Option<iam_rs::PolicyEvaluator>,
}

impl PolicySet {
    /// Compiles policy references for resources in `region` / `account`.
    pub fn compile(refs: &[PolicyRef], region: &str, account: &str) -> Result<PolicySet, String> {
        let mut policies = Vec::new();
        for r in refs {
            let doc = r.document(region, account)?;
            policies.push(
                iam_rs::IAMPolicy::from_json(&doc).map_err(|e| format!("invalid policy: {e}"))?,
            );
        }
        Ok(PolicySet::of(policies))
    }

    fn of(policies: Vec<iam_rs::IAMPolicy>) -> PolicySet {
        PolicySet {
            evaluator: (!policies.is_empty())
                .then(|| iam_rs::PolicyEvaluator::with_policies(policies)),
        }
    }

    /// Parses one IAM policy document (a resource policy).
    pub fn from_document(doc: &str) -> Result<PolicySet, String> {
        let p = iam_rs::IAMPolicy::from_json(doc).map_err(|e| e.to_string())?;
        Ok(PolicySet::of(vec![p]))
    }

    /// Whether there are no policies at all.
    pub fn is_empty(&self) -> bool {
        self.evaluator.is_none()
    }

    /// Evaluates `principal` (an ARN) doing `action` (`kinesis:PutRecord`) on `resource`.
    pub fn evaluate(&self, principal: &str, action: &str, resource: &str) -> Decision {
        let Some(evaluator) = &self.evaluator else {
            return Decision::ImplicitDeny;
        };
        let Ok(resource) = iam_rs::Arn::parse(resource) else {
            return Decision::ImplicitDeny;
        };
        let request = iam_rs::IAMRequest::new(
            iam_rs::Principal::Aws(iam_rs::PrincipalId::String(principal.to_owned())),
            action,
            resource,
        );
        match evaluator.evaluate(&request).map(|r| r.decision) {
            Ok(iam_rs::Decision::Allow) => Decision::Allow,
            Ok(iam_rs::Decision::Deny) => Decision::ExplicitDeny,
            // An evaluation error grants nothing.
            Ok(iam_rs::Decision::NotApplicable) | Err(_) => Decision::ImplicitDeny,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str = "arn:aws:kinesis:us-east-1:123456789012:stream/orders";
    const OTHER: &str = "arn:aws:kinesis:us-east-1:123456789012:stream/clicks";
    const ME: &str = "arn:aws:iam::123456789012:user/me";

    fn set(refs: &[PolicyRef]) -> PolicySet {
        PolicySet::compile(refs, "us-east-1", "123456789012").unwrap()
    }

    #[test]
    fn allow_then_deny_in_one_document_is_a_deny() {
        let doc = r#"{"Version":"2012-10-17","Statement":[
            {"Effect":"Allow","Action":"kinesis:*","Resource":"*"},
            {"Effect":"Deny","Action":"kinesis:DeleteStream","Resource":"*"}]}"#;
        let p = set(&[PolicyRef::Document {
            document: doc.into(),
        }]);
        assert_eq!(p.evaluate(ME, "kinesis:PutRecord", STREAM), Decision::Allow);
        assert_eq!(
            p.evaluate(ME, "kinesis:DeleteStream", STREAM),
            Decision::ExplicitDeny
        );
        // Actions are case-insensitive.
        assert_eq!(
            p.evaluate(ME, "KINESIS:deletestream", STREAM),
            Decision::ExplicitDeny
        );
    }

    #[test]
    fn templates_grant_their_actions_on_their_streams_only() {
        let producer = set(&[PolicyRef::Scoped {
            template: "producer".into(),
            streams: vec!["ord*".into()],
        }]);
        assert_eq!(
            producer.evaluate(ME, "kinesis:PutRecords", STREAM),
            Decision::Allow
        );
        assert_eq!(
            producer.evaluate(ME, "kinesis:PutRecords", OTHER),
            Decision::ImplicitDeny
        );
        assert_eq!(
            producer.evaluate(ME, "kinesis:GetRecords", STREAM),
            Decision::ImplicitDeny
        );
        assert_eq!(
            producer.evaluate(
                ME,
                "kinesis:ListStreams",
                "arn:aws:kinesis:us-east-1:123456789012:*"
            ),
            Decision::Allow
        );
        let consumer = set(&[PolicyRef::Template("consumer".into())]);
        let c = format!("{STREAM}/consumer/app:1700000000");
        assert_eq!(
            consumer.evaluate(ME, "kinesis:SubscribeToShard", &c),
            Decision::Allow
        );
        assert_eq!(
            consumer.evaluate(ME, "kinesis:GetRecords", OTHER),
            Decision::Allow
        );
        assert_eq!(
            consumer.evaluate(ME, "kinesis:PutRecord", STREAM),
            Decision::ImplicitDeny
        );
        let reshard = set(&[PolicyRef::Template("resharding".into())]);
        assert_eq!(
            reshard.evaluate(ME, "kinesis:SplitShard", STREAM),
            Decision::Allow
        );
        assert_eq!(
            reshard.evaluate(ME, "kinesis:DeleteStream", STREAM),
            Decision::ImplicitDeny
        );
        let admin = set(&[PolicyRef::Template("administrator".into())]);
        assert_eq!(
            admin.evaluate(ME, "kinesis:DeleteStream", STREAM),
            Decision::Allow
        );
    }

    #[test]
    fn unknown_templates_and_bad_documents_are_refused() {
        assert!(PolicyRef::Template("root".into()).check().is_err());
        assert!(PolicyRef::Document {
            document: "{".into()
        }
        .check()
        .is_err());
        assert_eq!(
            PolicySet::default().evaluate(ME, "kinesis:PutRecord", STREAM),
            Decision::ImplicitDeny
        );
    }
}
