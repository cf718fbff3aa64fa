//! What a service start does to a stream that already exists: add what the services need, never lower
//! what an operator set. Every replica of every service ensures the streams at start; were that a plain
//! create-or-update with the services' defaults, settings an operator raised (replicas, duplicate window,
//! limits, retention) would drop back at the next rolling restart, and a NACK `Stream` object and the
//! services would fight over them.

use async_nats::jetstream::stream::Config;

/// The update that gives `existing` what `wanted` needs — its subjects, at least its replicas and its
/// duplicate window — keeping everything else as it is; `None` when it has all of it already.
pub fn reconcile(existing: &Config, wanted: &Config) -> Option<Config> {
    let mut update = existing.clone();
    for subject in &wanted.subjects {
        if !update.subjects.contains(subject) {
            update.subjects.push(subject.clone());
        }
    }
    update.num_replicas = update.num_replicas.max(wanted.num_replicas);
    update.duplicate_window = update.duplicate_window.max(wanted.duplicate_window);
    (update != *existing).then_some(update)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ours() -> Config {
        Config {
            name: "BAEMIN_EVENTS".into(),
            subjects: vec!["baemin.events.>".into()],
            num_replicas: 1,
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        }
    }

    #[test]
    fn what_an_operator_raised_stays_raised() {
        let raised = Config {
            num_replicas: 3,
            duplicate_window: Duration::from_secs(600),
            max_messages: 10_000_000,
            max_age: Duration::from_secs(30 * 86_400),
            subjects: vec!["baemin.events.>".into(), "ops.audit.>".into()],
            ..ours()
        };
        assert_eq!(reconcile(&raised, &ours()), None, "nothing to do, nothing lowered");
    }

    #[test]
    fn what_the_services_need_is_added_and_nothing_else_changes() {
        let operator = Config {
            subjects: vec!["ops.audit.>".into()],
            max_messages: 10_000_000,
            ..ours()
        };
        let wanted = Config {
            num_replicas: 3,
            duplicate_window: Duration::from_secs(300),
            ..ours()
        };
        let update = reconcile(&operator, &wanted).unwrap();
        assert_eq!(update.subjects, ["ops.audit.>", "baemin.events.>"]);
        assert_eq!(
            (update.num_replicas, update.duplicate_window),
            (3, Duration::from_secs(300))
        );
        assert_eq!(update.max_messages, 10_000_000, "the operator's limit is kept");
    }
}
