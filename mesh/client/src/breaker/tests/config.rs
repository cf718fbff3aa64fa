//! Validation of the settings, and reading them from the environment.

use std::time::Duration;

use crate::breaker::{BreakerConfig, BreakerField, CircuitBreakerLayer, GrpcClassifier, WindowType};
use baemin_mesh_server::config::Settings;

#[test]
fn the_defaults_are_resilience4js() {
    let c = BreakerConfig::default();
    assert_eq!(
        (c.window_type, c.window_size, c.minimum_calls),
        (WindowType::Count, 100, 100)
    );
    assert_eq!((c.failure_rate_threshold, c.slow_call_rate_threshold), (50.0, 100.0));
    assert_eq!(
        (c.slow_call_duration, c.open_wait),
        (Duration::from_secs(60), Duration::from_secs(60))
    );
    assert_eq!((c.half_open_calls, c.half_open_max_wait), (10, None));
    assert_eq!(c.validate(), Ok(()));
}

#[test]
fn validation_names_the_first_bad_field() {
    let d = BreakerConfig::default;
    let cases = [
        (BreakerConfig { window_size: 0, ..d() }, BreakerField::WindowSize),
        (
            BreakerConfig {
                window_size: 100_001,
                ..d()
            },
            BreakerField::WindowSize,
        ),
        (
            BreakerConfig {
                window_type: WindowType::Time,
                window_size: 86_401,
                ..d()
            },
            BreakerField::WindowSize,
        ),
        (
            BreakerConfig {
                minimum_calls: 0,
                ..d()
            },
            BreakerField::MinimumCalls,
        ),
        (
            BreakerConfig {
                failure_rate_threshold: 0.0,
                ..d()
            },
            BreakerField::FailureRateThreshold,
        ),
        (
            BreakerConfig {
                failure_rate_threshold: 100.5,
                ..d()
            },
            BreakerField::FailureRateThreshold,
        ),
        (
            BreakerConfig {
                failure_rate_threshold: f64::NAN,
                ..d()
            },
            BreakerField::FailureRateThreshold,
        ),
        (
            BreakerConfig {
                slow_call_duration: Duration::ZERO,
                ..d()
            },
            BreakerField::SlowCallDuration,
        ),
        (
            BreakerConfig {
                slow_call_rate_threshold: -1.0,
                ..d()
            },
            BreakerField::SlowCallRateThreshold,
        ),
        (
            BreakerConfig {
                open_wait: Duration::ZERO,
                ..d()
            },
            BreakerField::OpenWait,
        ),
        (
            BreakerConfig {
                half_open_calls: 0,
                ..d()
            },
            BreakerField::HalfOpenCalls,
        ),
        (
            BreakerConfig {
                half_open_max_wait: Some(Duration::ZERO),
                ..d()
            },
            BreakerField::HalfOpenMaxWait,
        ),
    ];
    for (config, field) in cases {
        let err = config.validate().unwrap_err();
        assert_eq!(err.field, field, "{config:?}");
        assert!(err.to_string().contains(field.name()), "{err}");
    }
}

#[test]
fn the_layer_refuses_a_bad_config() {
    let config = BreakerConfig {
        half_open_calls: 0,
        ..BreakerConfig::default()
    };
    let err = CircuitBreakerLayer::new("payment", config, GrpcClassifier).unwrap_err();
    assert_eq!(err.field, BreakerField::HalfOpenCalls);
}

#[test]
fn a_count_window_never_waits_for_more_calls_than_it_holds() {
    let config = BreakerConfig {
        window_size: 10,
        minimum_calls: 100,
        ..BreakerConfig::default()
    };
    assert_eq!(config.effective_minimum_calls(), 10);
    let time = BreakerConfig {
        window_type: WindowType::Time,
        ..config
    };
    assert_eq!(time.effective_minimum_calls(), 100);
}

#[test]
fn settings_default_when_unset_and_read_every_key() {
    let env: [(&str, &str); 0] = [];
    assert_eq!(
        BreakerConfig::from_settings("PAYMENT", &Settings::new(&env)),
        Ok(BreakerConfig::default())
    );
    let env = [
        ("PAYMENT_BREAKER_WINDOW_TYPE", "time"),
        ("PAYMENT_BREAKER_WINDOW_SIZE", "30"),
        ("PAYMENT_BREAKER_MINIMUM_CALLS", "20"),
        ("PAYMENT_BREAKER_FAILURE_RATE", "40%"),
        ("PAYMENT_BREAKER_SLOW_CALL_DURATION", "800ms"),
        ("PAYMENT_BREAKER_SLOW_CALL_RATE", "75.5"),
        ("PAYMENT_BREAKER_OPEN_WAIT", "5s"),
        ("PAYMENT_BREAKER_HALF_OPEN_CALLS", "4"),
        ("PAYMENT_BREAKER_HALF_OPEN_MAX_WAIT", "30s"),
    ];
    let c = BreakerConfig::from_settings("PAYMENT", &Settings::new(&env)).unwrap();
    assert_eq!(
        c,
        BreakerConfig {
            window_type: WindowType::Time,
            window_size: 30,
            minimum_calls: 20,
            failure_rate_threshold: 40.0,
            slow_call_duration: Duration::from_millis(800),
            slow_call_rate_threshold: 75.5,
            open_wait: Duration::from_secs(5),
            half_open_calls: 4,
            half_open_max_wait: Some(Duration::from_secs(30)),
        }
    );
}

#[test]
fn a_bad_setting_names_its_key() {
    let cases = [
        ("PAYMENT_BREAKER_WINDOW_TYPE", "sliding"),
        ("PAYMENT_BREAKER_WINDOW_SIZE", "ten"),
        ("PAYMENT_BREAKER_WINDOW_SIZE", "0"),
        ("PAYMENT_BREAKER_WINDOW_SIZE", "1000000"),
        ("PAYMENT_BREAKER_MINIMUM_CALLS", "-1"),
        ("PAYMENT_BREAKER_MINIMUM_CALLS", "0"),
        ("PAYMENT_BREAKER_FAILURE_RATE", "half"),
        ("PAYMENT_BREAKER_FAILURE_RATE", "150"),
        ("PAYMENT_BREAKER_FAILURE_RATE", "NaN"),
        ("PAYMENT_BREAKER_SLOW_CALL_DURATION", "0s"),
        ("PAYMENT_BREAKER_SLOW_CALL_DURATION", "slow"),
        ("PAYMENT_BREAKER_SLOW_CALL_RATE", "0"),
        ("PAYMENT_BREAKER_OPEN_WAIT", "1m"),
        ("PAYMENT_BREAKER_HALF_OPEN_CALLS", "0"),
        ("PAYMENT_BREAKER_HALF_OPEN_MAX_WAIT", "0ms"),
    ];
    for (key, value) in cases {
        let env = [(key, value)];
        let err = BreakerConfig::from_settings("PAYMENT", &Settings::new(&env)).unwrap_err();
        assert_eq!((err.key.as_str(), err.value.as_str()), (key, value), "{err}");
    }
}
