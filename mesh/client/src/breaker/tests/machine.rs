//! The state machine, outcome by outcome.

use std::time::Duration;

use tokio::time::advance;
use tonic::Code;

use super::{Harness, config, trailers_only, with_trailers};
use crate::breaker::{BreakerConfig, State, Transitions, WindowType};

#[tokio::test(start_paused = true)]
async fn does_not_open_before_the_minimum_number_of_calls() {
    let mut h = Harness::new(BreakerConfig {
        minimum_calls: 5,
        ..config()
    });
    for _ in 0..4 {
        h.fail().await;
        assert_eq!(h.state(), State::Closed, "100 % failures, but fewer than 5 calls");
    }
    h.fail().await;
    assert_eq!(h.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn opens_exactly_when_the_failure_rate_reaches_the_threshold() {
    let mut h = Harness::new(config());
    for _ in 0..3 {
        h.succeed().await;
        assert_eq!(h.state(), State::Closed);
    }
    h.fail().await; // 1 of 4: 25 %
    assert_eq!(h.state(), State::Closed);
    h.fail().await; // 2 of 5: 40 %
    assert_eq!(h.state(), State::Closed);
    let metrics = h.breaker.metrics();
    assert_eq!((metrics.buffered_calls, metrics.failed_calls), (5, 2));
    assert_eq!(metrics.failure_rate, 40.0);
    h.fail().await; // 3 of 6: 50 %
    assert_eq!(h.state(), State::Open);
    assert_eq!(
        h.breaker.metrics().failure_rate,
        50.0,
        "open shows the figures that opened it"
    );
    assert_eq!(h.breaker.transitions().to_open, 1);
}

#[tokio::test(start_paused = true)]
async fn slow_calls_count_toward_the_slow_call_rate_threshold() {
    let mut h = Harness::new(BreakerConfig {
        slow_call_rate_threshold: 50.0,
        ..config()
    });
    let ok = || with_trailers(Code::Ok);
    h.answer(ok(), Duration::ZERO).await;
    h.answer(ok(), Duration::from_secs(1)).await; // at the threshold: not slow
    h.answer(ok(), Duration::from_millis(1001)).await; // slow
    assert_eq!(h.state(), State::Closed, "1 slow of 3, below the minimum anyway");
    let metrics = h.breaker.metrics();
    assert_eq!((metrics.slow_calls, metrics.failed_calls), (1, 0));
    // A slow failure is slow too: 2 of 4 slow is 50 %, while 1 of 4 failed stays under 50 %.
    h.answer(trailers_only(Code::NotFound), Duration::from_secs(3)).await;
    assert_eq!(h.state(), State::Open);
    let metrics = h.breaker.metrics();
    assert_eq!((metrics.slow_calls, metrics.slow_call_rate), (2, 50.0));
}

#[tokio::test(start_paused = true)]
async fn an_open_circuit_fails_fast_with_unavailable_naming_the_dependency_without_calling_it() {
    let mut h = Harness::new(config());
    h.open().await;
    for _ in 0..3 {
        let status = h.refused().await;
        assert!(status.message().contains("payment circuit is open"), "{status:?}");
    }
    assert_eq!(h.breaker.metrics().not_permitted_calls, 3);
}

#[tokio::test(start_paused = true)]
async fn after_the_wait_half_open_admits_exactly_the_permitted_calls_and_refuses_the_next() {
    let mut h = Harness::new(config());
    h.open().await;
    advance(Duration::from_millis(9_999)).await;
    h.refused().await;
    assert_eq!(h.state(), State::Open, "still waiting");
    advance(Duration::from_millis(1)).await;

    let mut trials = Vec::new();
    for _ in 0..3 {
        trials.push(h.start().await);
        assert_eq!(h.state(), State::HalfOpen);
    }
    let status = h.refused().await;
    assert!(status.message().contains("half-open"), "{status:?}");
    assert_eq!(h.state(), State::HalfOpen);

    for (pending, respond) in trials {
        respond.send_response(with_trailers(Code::Ok));
        super::drain(pending.await.unwrap().into_body()).await.unwrap();
    }
    assert_eq!(h.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn one_half_open_failure_at_the_threshold_reopens_and_waits_again() {
    let mut h = Harness::new(BreakerConfig {
        half_open_calls: 2,
        ..config()
    });
    h.open().await;
    advance(Duration::from_secs(10)).await;
    h.succeed().await;
    assert_eq!(h.state(), State::HalfOpen);
    h.fail().await; // 1 of 2: 50 %
    assert_eq!(h.state(), State::Open);
    assert_eq!(
        h.breaker.transitions(),
        Transitions {
            to_closed: 0,
            to_open: 2,
            to_half_open: 1
        }
    );
    h.refused().await;
    advance(Duration::from_secs(10)).await;
    h.succeed().await;
    assert_eq!(h.state(), State::HalfOpen, "a new wait, then new trials");
}

#[tokio::test(start_paused = true)]
async fn half_open_closes_when_the_trial_failure_rate_stays_below_the_threshold() {
    let mut h = Harness::new(config());
    h.open().await;
    advance(Duration::from_secs(10)).await;
    h.succeed().await;
    h.fail().await;
    assert_eq!(h.state(), State::HalfOpen, "2 of 3 trials done");
    h.succeed().await; // 1 of 3 failed: 33 %
    assert_eq!(h.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn all_successful_trials_close_the_circuit_with_an_empty_window() {
    let mut h = Harness::new(config());
    h.open().await;
    advance(Duration::from_secs(10)).await;
    for _ in 0..3 {
        h.succeed().await;
    }
    assert_eq!(h.state(), State::Closed);
    assert_eq!(h.breaker.metrics().buffered_calls, 0, "the window starts afresh");
    for _ in 0..3 {
        h.fail().await;
        assert_eq!(h.state(), State::Closed, "the minimum applies again");
    }
    h.fail().await;
    assert_eq!(h.state(), State::Open);
    assert_eq!(
        h.breaker.transitions(),
        Transitions {
            to_closed: 1,
            to_open: 2,
            to_half_open: 1
        }
    );
}

#[tokio::test(start_paused = true)]
async fn the_count_window_slides_so_recent_failures_open_it_after_many_successes() {
    let mut h = Harness::new(BreakerConfig {
        minimum_calls: 10,
        ..config()
    });
    for _ in 0..1_000 {
        h.succeed().await;
    }
    for _ in 0..4 {
        h.fail().await;
        assert_eq!(h.state(), State::Closed, "at most 4 failures in the last 10 calls");
    }
    h.fail().await;
    assert_eq!(h.state(), State::Open, "5 failures in the last 10 calls");
}

#[tokio::test(start_paused = true)]
async fn the_time_window_forgets_calls_older_than_the_window() {
    let mut h = Harness::new(BreakerConfig {
        window_type: WindowType::Time,
        window_size: 10,
        failure_rate_threshold: 80.0,
        ..config()
    });
    for _ in 0..3 {
        h.fail().await; // t = 0 s
    }
    advance(Duration::from_secs(5)).await;
    h.succeed().await; // 3 of 4 failed: 75 %
    assert_eq!(h.state(), State::Closed);
    advance(Duration::from_secs(5)).await; // t = 10 s: the failures of t = 0 fall out
    let metrics = h.breaker.metrics();
    assert_eq!((metrics.buffered_calls, metrics.failed_calls), (1, 0));
    h.fail().await; // counting the forgotten ones this would be 4 of 5: 80 %
    assert_eq!(h.state(), State::Closed);
    h.fail().await;
    h.fail().await; // 3 of 4
    assert_eq!(h.state(), State::Closed);
    h.fail().await; // 4 of 5: 80 %
    assert_eq!(h.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn a_call_dropped_before_it_ends_gives_its_half_open_slot_back() {
    let mut h = Harness::new(BreakerConfig {
        half_open_calls: 1,
        ..config()
    });
    h.open().await;
    advance(Duration::from_secs(10)).await;
    let (pending, _respond) = h.start().await;
    h.refused().await;
    drop(pending); // cancelled by the caller
    let (pending, respond) = h.start().await;
    respond.send_response(with_trailers(Code::Ok));
    let response = pending.await.unwrap();
    drop(response); // the body is dropped before its trailers: no outcome either
    assert_eq!(h.state(), State::HalfOpen);
    h.succeed().await;
    assert_eq!(h.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_call_dropped_after_running_longer_than_the_slow_duration_counts_as_slow() {
    let mut h = Harness::new(BreakerConfig {
        minimum_calls: 1,
        ..config()
    });
    let (pending, _respond) = h.start().await;
    advance(Duration::from_secs(2)).await;
    drop(pending); // an outer timeout gave up on it
    assert_eq!(h.state(), State::Open, "1 of 1 slow");
    assert_eq!(h.breaker.metrics().failed_calls, 0);
}

#[tokio::test(start_paused = true)]
async fn outcomes_of_calls_granted_before_the_circuit_opened_do_not_count_afterwards() {
    let mut h = Harness::new(BreakerConfig {
        half_open_calls: 1,
        ..config()
    });
    let (late, late_respond) = h.start().await;
    h.open().await;
    advance(Duration::from_secs(10)).await;
    let (trial, trial_respond) = h.start().await;
    late_respond.send_response(trailers_only(Code::Unavailable));
    assert!(late.await.is_ok());
    assert_eq!(h.state(), State::HalfOpen);
    assert_eq!(h.breaker.metrics().buffered_calls, 0, "the late failure is not a trial");
    trial_respond.send_response(with_trailers(Code::Ok));
    super::drain(trial.await.unwrap().into_body()).await.unwrap();
    assert_eq!(h.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn half_open_opens_again_when_the_trials_outstay_the_max_wait() {
    let mut h = Harness::new(BreakerConfig {
        half_open_calls: 1,
        half_open_max_wait: Some(Duration::from_secs(5)),
        ..config()
    });
    h.open().await;
    advance(Duration::from_secs(10)).await;
    let (_stuck, _respond) = h.start().await;
    advance(Duration::from_millis(4_999)).await;
    h.refused().await;
    assert_eq!(h.state(), State::HalfOpen);
    advance(Duration::from_millis(1)).await;
    h.refused().await;
    assert_eq!(h.state(), State::Open);
    assert_eq!(h.breaker.transitions().entries_into(State::Open), 2);
}
