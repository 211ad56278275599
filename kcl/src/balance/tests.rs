use super::*;
use crate::checkpoint::Checkpoint;

const CFG: BalanceConfig = BalanceConfig {
    max_leases_for_worker: usize::MAX,
    max_leases_to_steal: 1,
};

fn view(key: &str, owner: Option<&str>, expired_for: Option<u64>) -> LeaseView {
    LeaseView {
        key: key.to_owned(),
        owner: owner.map(str::to_owned),
        expired_for: expired_for.map(Duration::from_secs),
        finished: false,
    }
}

/// `n` live leases of `owner`, keys `owner-0..`.
fn held(owner: &str, n: usize) -> Vec<LeaseView> {
    (0..n)
        .map(|i| view(&format!("{owner}-{i}"), Some(owner), None))
        .collect()
}

fn by_preference(me: &str, mut keys: Vec<String>) -> Vec<String> {
    keys.sort_by_key(|k| preference(me, k));
    keys
}

#[test]
fn a_lone_worker_takes_every_unowned_lease() {
    let leases: Vec<_> = (0..4)
        .map(|i| LeaseView {
            expired_for: Some(Duration::MAX),
            ..view(&format!("s{i}"), None, None)
        })
        .collect();
    let expected: Vec<_> = by_preference("me", (0..4).map(|i| format!("s{i}")).collect())
        .into_iter()
        .map(|key| Action::Take { key })
        .collect();
    assert_eq!(balance("me", &leases, CFG), expected);
}

#[test]
fn an_even_assignment_is_left_alone() {
    let mut leases = held("me", 4);
    for w in ["a", "b", "c"] {
        leases.extend(held(w, 4));
    }
    assert_eq!(balance("me", &leases, CFG), vec![]);
}

#[test]
fn within_one_of_each_other_nobody_steals() {
    // 16 leases over 3 workers: 6, 5, 5. Target 6; the 5s need one more but the gap is 1.
    let mut leases = held("me", 5);
    leases.extend(held("a", 6));
    leases.extend(held("b", 5));
    assert_eq!(balance("me", &leases, CFG), vec![]);
    let mut leases = held("me", 3);
    leases.extend(held("a", 4));
    leases.extend(held("b", 4));
    leases.extend(held("c", 4));
    // 15 leases, 4 workers: target 4, me 3, most loaded 4: gap 1.
    assert_eq!(balance("me", &leases, CFG), vec![]);
}

#[test]
fn a_gap_of_two_steals_one_from_the_most_loaded() {
    let mut leases = held("me", 3);
    leases.extend(held("a", 5));
    leases.extend(held("b", 4));
    leases.extend(held("c", 4));
    let key = by_preference("me", (0..5).map(|i| format!("a-{i}")).collect())[0].clone();
    assert_eq!(
        balance("me", &leases, CFG),
        vec![Action::Steal {
            key,
            from: "a".into()
        }]
    );
}

#[test]
fn a_new_worker_steals_one_per_run() {
    let mut leases = held("a", 6);
    leases.extend(held("b", 5));
    leases.extend(held("c", 5));
    let key = by_preference("me", (0..6).map(|i| format!("a-{i}")).collect())[0].clone();
    assert_eq!(
        balance("me", &leases, CFG),
        vec![Action::Steal {
            key,
            from: "a".into()
        }]
    );
    let many = BalanceConfig {
        max_leases_to_steal: 10,
        ..CFG
    };
    // Target 4, needed 4, but never more than half the gap (6 - 0) / 2 = 3.
    let keys = by_preference("me", (0..6).map(|i| format!("a-{i}")).collect());
    let expected: Vec<_> = keys[..3]
        .iter()
        .map(|k| Action::Steal {
            key: k.clone(),
            from: "a".into(),
        })
        .collect();
    assert_eq!(balance("me", &leases, many), expected);
}

#[test]
fn expired_leases_are_taken_longest_expired_first_and_never_stolen_meanwhile() {
    let mut leases = held("me", 2);
    leases.extend(held("a", 2));
    leases.push(view("dead-0", Some("dead"), Some(11)));
    leases.push(view("dead-1", Some("dead"), Some(30)));
    leases.push(view("dead-2", Some("dead"), Some(12)));
    leases.push(view("dead-3", Some("dead"), Some(20)));
    // Workers: me and a (dead owns no live lease): target 4, so two to take.
    assert_eq!(
        balance("me", &leases, CFG),
        vec![
            Action::Take {
                key: "dead-1".into()
            },
            Action::Take {
                key: "dead-3".into()
            },
        ]
    );
}

#[test]
fn finished_leases_are_not_counted_or_taken() {
    let mut leases = held("me", 1);
    leases.push(LeaseView {
        finished: true,
        ..view("done", None, Some(100))
    });
    leases.push(LeaseView {
        finished: true,
        ..view("done-2", Some("a"), None)
    });
    assert_eq!(balance("me", &leases, CFG), vec![]);
}

#[test]
fn above_the_cap_a_worker_releases() {
    let leases = held("me", 3);
    let cfg = BalanceConfig {
        max_leases_for_worker: 2,
        max_leases_to_steal: 1,
    };
    let mut keys: Vec<String> = (0..3).map(|i| format!("me-{i}")).collect();
    keys.sort_by_key(|k| std::cmp::Reverse(preference("me", k)));
    assert_eq!(
        balance("me", &leases, cfg),
        vec![Action::Release {
            key: keys[0].clone()
        }]
    );
}

/// Four workers starting one after another on 16 leases converge to 4 each, and then nobody
/// moves a lease again (no stealing storm).
#[test]
fn workers_converge_to_an_even_split_and_stay_there() {
    let workers = ["w1", "w2", "w3", "w4"];
    let mut owner: BTreeMap<String, Option<String>> = (0..16)
        .map(|i| (format!("shardId-{i:012}"), None))
        .collect();
    let mut moves_after_even = 0;
    for round in 0..40 {
        for w in workers.iter().take(1 + round / 2) {
            let views: Vec<LeaseView> = owner
                .iter()
                .map(|(k, o)| LeaseView {
                    key: k.clone(),
                    owner: o.clone(),
                    expired_for: o.is_none().then_some(Duration::MAX),
                    finished: false,
                })
                .collect();
            let even = {
                let mut c: BTreeMap<&str, usize> = BTreeMap::new();
                for o in owner.values().flatten() {
                    *c.entry(o.as_str()).or_default() += 1;
                }
                c.len() == 4 && c.values().all(|&n| n == 4)
            };
            for a in balance(w, &views, CFG) {
                if even {
                    moves_after_even += 1;
                }
                match a {
                    Action::Take { key } | Action::Steal { key, .. } => {
                        owner.insert(key, Some((*w).to_owned()));
                    }
                    Action::Release { key } => {
                        owner.insert(key, None);
                    }
                }
            }
        }
    }
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for o in owner.values() {
        *counts
            .entry(o.as_deref().expect("every lease owned"))
            .or_default() += 1;
    }
    assert_eq!(
        counts,
        BTreeMap::from([("w1", 4), ("w2", 4), ("w3", 4), ("w4", 4)])
    );
    assert_eq!(moves_after_even, 0);
}

fn lease(key: &str, owner: Option<&str>, counter: u64) -> Lease {
    let mut l = Lease::new(key, vec![], None, Checkpoint::TrimHorizon);
    l.owner = owner.map(str::to_owned);
    l.counter = counter;
    l
}

#[test]
fn expiry_is_an_unchanged_counter_for_longer_than_the_failover_time() {
    let failover = Duration::from_secs(10);
    let mut t = ExpiryTracker::new(failover);
    let t0 = Instant::now();
    let none = HashSet::new();
    let leases = vec![lease("a", Some("w"), 1), lease("b", None, 1)];
    let v = t.observe(&leases, "me", &none, t0);
    assert_eq!(v[0].expired_for, None);
    assert_eq!(v[1].expired_for, Some(Duration::MAX));
    // 10 s later: not yet (strictly more than failover).
    let v = t.observe(&leases, "me", &none, t0 + failover);
    assert_eq!(v[0].expired_for, None);
    let v = t.observe(&leases, "me", &none, t0 + Duration::from_secs(11));
    assert_eq!(v[0].expired_for, Some(Duration::from_secs(11)));
    // A renewal (counter change) resets the clock.
    let renewed = vec![lease("a", Some("w"), 2), lease("b", None, 1)];
    let v = t.observe(&renewed, "me", &none, t0 + Duration::from_secs(12));
    assert_eq!(v[0].expired_for, None);
    let v = t.observe(&renewed, "me", &none, t0 + Duration::from_secs(22));
    assert_eq!(v[0].expired_for, None);
    let v = t.observe(&renewed, "me", &none, t0 + Duration::from_secs(23));
    assert_eq!(v[0].expired_for, Some(Duration::from_secs(11)));
}

#[test]
fn my_own_lease_that_i_do_not_hold_is_expired_at_once() {
    let mut t = ExpiryTracker::new(Duration::from_secs(10));
    let now = Instant::now();
    let leases = vec![lease("a", Some("me"), 5), lease("b", Some("me"), 5)];
    let held = HashSet::from(["b".to_owned()]);
    let v = t.observe(&leases, "me", &held, now);
    assert_eq!(v[0].expired_for, Some(Duration::MAX));
    assert_eq!(v[1].expired_for, None);
}
