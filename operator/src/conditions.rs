//! Setting `metav1.Condition`s: `lastTransitionTime` changes only when the status flips,
//! and every condition carries the generation it was computed from.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Sets condition `type_` in `conditions` (adding it if missing).
pub fn set(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
    now: Timestamp,
) {
    let status = if status { "True" } else { "False" }.to_string();
    let message = message.into();
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != status {
                c.last_transition_time = Time(now);
            }
            c.status = status;
            c.reason = reason.to_string();
            c.message = message;
            c.observed_generation = generation;
        }
        None => conditions.push(Condition {
            type_: type_.to_string(),
            status,
            reason: reason.to_string(),
            message,
            observed_generation: generation,
            last_transition_time: Time(now),
        }),
    }
}

/// Whether condition `type_` is `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_moves_only_on_a_flip() {
        let t0 = Timestamp::from_second(1_800_000_000).unwrap();
        let t1 = Timestamp::from_second(1_800_000_100).unwrap();
        let mut c = Vec::new();
        set(&mut c, "Ready", false, "Creating", "", Some(1), t0);
        set(&mut c, "Ready", false, "Creating", "still", Some(2), t1);
        assert_eq!(
            (c[0].last_transition_time.0, c[0].message.as_str()),
            (t0, "still")
        );
        assert_eq!(c[0].observed_generation, Some(2));
        set(&mut c, "Ready", true, "Active", "", Some(2), t1);
        assert_eq!(c[0].last_transition_time.0, t1);
        assert!(is_true(&c, "Ready"));
        assert_eq!(c.len(), 1);
    }
}
