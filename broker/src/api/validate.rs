//! ValidationException messages in AWS's format.
//!
//! Fields are checked in the order of the operation's members in the service model; each
//! failure adds `Value <v> at '<path>' failed to satisfy constraint: <constraint>`; at most
//! ten are reported, joined by `; ` after `N validation error(s) detected: `.

use super::error::ApiError;

/// The name-like pattern of stream, consumer and shard-id members.
pub const NAME_PATTERN: &str = "[a-zA-Z0-9_.-]+";
/// The pattern of hash keys.
pub const HASH_KEY_PATTERN: &str = "0|([1-9]\\d{0,38})";
/// The pattern of sequence numbers.
pub const SEQUENCE_PATTERN: &str = "0|([1-9]\\d{0,128})";
/// The pattern of stream ARNs.
pub const STREAM_ARN_PATTERN: &str = "arn:aws.*:kinesis:.*:\\d{12}:stream/\\S+";

/// Renders a collection member's value as AWS prints it, `[a, b]` or `{k=v}`: the kept
/// items, then `...` when the list went past the decoding cap (so a message stays bounded
/// however many items a body lists).
pub fn shown(
    open: char,
    items: impl Iterator<Item = String>,
    truncated: bool,
    close: char,
) -> String {
    let mut all: Vec<String> = items.collect();
    if truncated {
        all.push("...".to_owned());
    }
    format!("{open}{}{close}", all.join(", "))
}

/// Whether `s` matches [`NAME_PATTERN`].
pub fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Whether `s` matches the hash-key pattern.
pub fn is_hash_key(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 39
        && b.iter().all(u8::is_ascii_digit)
        && (b[0] != b'0' || b.len() == 1)
}

/// Length as Java counts it (UTF-16 code units).
pub fn java_len(s: &str) -> usize {
    s.encode_utf16().count()
}

/// A regular-expression constraint: the pattern as AWS prints it, and its check.
pub type Pattern<'a> = (&'a str, fn(&str) -> bool);

/// Collects constraint failures.
#[derive(Debug, Default)]
pub struct Validator {
    errors: Vec<String>,
}

impl Validator {
    /// A validator with no failures yet.
    pub fn new() -> Validator {
        Validator::default()
    }

    /// Records one failure.
    pub fn fail(&mut self, value: &str, path: &str, constraint: &str) {
        self.errors.push(format!(
            "Value {value} at '{path}' failed to satisfy constraint: {constraint}"
        ));
    }

    /// Requires a member; returns whether it is present.
    pub fn required<T>(&mut self, path: &str, v: Option<&T>) -> bool {
        if v.is_none() {
            self.fail("null", path, "Member must not be null");
        }
        v.is_some()
    }

    /// Checks a string member: optional pattern, then length bounds.
    pub fn string(
        &mut self,
        path: &str,
        v: Option<&str>,
        required: bool,
        pattern: Option<Pattern<'_>>,
        min: usize,
        max: usize,
    ) {
        let Some(s) = v else {
            if required {
                self.fail("null", path, "Member must not be null");
            }
            return;
        };
        let shown = format!("'{s}'");
        if let Some((p, check)) = pattern {
            if !check(s) {
                self.fail(
                    &shown,
                    path,
                    &format!("Member must satisfy regular expression pattern: {p}"),
                );
            }
        }
        let len = java_len(s);
        if len < min {
            self.fail(
                &shown,
                path,
                &format!("Member must have length greater than or equal to {min}"),
            );
        }
        if len > max {
            self.fail(
                &shown,
                path,
                &format!("Member must have length less than or equal to {max}"),
            );
        }
    }

    /// Checks a name-like member (stream, consumer or shard id).
    pub fn name(&mut self, path: &str, v: Option<&str>, required: bool) {
        self.string(path, v, required, Some((NAME_PATTERN, is_name)), 1, 128);
    }

    /// Checks a stream ARN member.
    pub fn stream_arn(&mut self, path: &str, v: Option<&str>, required: bool) {
        self.string(
            path,
            v,
            required,
            Some((STREAM_ARN_PATTERN, |s| {
                riffle_core::StreamArn::parse(s).is_some()
            })),
            1,
            2048,
        );
    }

    /// Checks an integer member.
    pub fn int(&mut self, path: &str, v: Option<i64>, required: bool, min: i64, max: i64) {
        let Some(n) = v else {
            if required {
                self.fail("null", path, "Member must not be null");
            }
            return;
        };
        if n < min {
            self.fail(
                &format!("'{n}'"),
                path,
                &format!("Member must have value greater than or equal to {min}"),
            );
        }
        if n > max {
            self.fail(
                &format!("'{n}'"),
                path,
                &format!("Member must have value less than or equal to {max}"),
            );
        }
    }

    /// Checks an enum member.
    pub fn one_of(&mut self, path: &str, v: Option<&str>, required: bool, allowed: &[&str]) {
        match v {
            None if required => self.fail("null", path, "Member must not be null"),
            Some(s) if !allowed.contains(&s) => self.fail(
                &format!("'{s}'"),
                path,
                &format!(
                    "Member must satisfy enum value set: [{}]",
                    allowed.join(", ")
                ),
            ),
            _ => {}
        }
    }

    /// Checks a blob's length.
    pub fn blob(&mut self, path: &str, v: Option<&[u8]>, required: bool, max: usize) {
        match v {
            None if required => self.fail("null", path, "Member must not be null"),
            Some(b) if b.len() > max => self.fail(
                &format!("'java.nio.HeapByteBuffer[pos=0 lim={0} cap={0}]'", b.len()),
                path,
                &format!("Member must have length less than or equal to {max}"),
            ),
            _ => {}
        }
    }

    /// Checks a collection's size; `shown` renders the value.
    pub fn size(
        &mut self,
        path: &str,
        len: Option<usize>,
        shown: impl FnOnce() -> String,
        required: bool,
        min: usize,
        max: usize,
    ) {
        let Some(n) = len else {
            if required {
                self.fail("null", path, "Member must not be null");
            }
            return;
        };
        if n < min || n > max {
            let c = if n < min {
                format!("Member must have length greater than or equal to {min}")
            } else {
                format!("Member must have length less than or equal to {max}")
            };
            self.fail(&format!("'{}'", shown()), path, &c);
        }
    }

    /// The ValidationException, if anything failed.
    pub fn finish(self) -> Result<(), ApiError> {
        if self.errors.is_empty() {
            return Ok(());
        }
        let n = self.errors.len().min(10);
        let head = if n == 1 {
            "1 validation error detected: ".to_owned()
        } else {
            format!("{n} validation errors detected: ")
        };
        Err(ApiError::validation(head + &self.errors[..n].join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_aws() {
        let mut v = Validator::new();
        v.int("shardCount", Some(0), true, 1, 100_000);
        v.name("streamName", Some(""), true);
        let ApiError::Wire { message, .. } = v.finish().unwrap_err() else {
            panic!()
        };
        assert_eq!(
            message.unwrap(),
            "3 validation errors detected: Value '0' at 'shardCount' failed to satisfy constraint: \
             Member must have value greater than or equal to 1; Value '' at 'streamName' failed to \
             satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+; \
             Value '' at 'streamName' failed to satisfy constraint: Member must have length greater \
             than or equal to 1"
        );
    }

    #[test]
    fn caps_at_ten() {
        let mut v = Validator::new();
        for i in 0..12 {
            v.required::<()>(&format!("f{i}"), None);
        }
        let ApiError::Wire { message, .. } = v.finish().unwrap_err() else {
            panic!()
        };
        assert!(message
            .unwrap()
            .starts_with("10 validation errors detected: "));
    }
}
