//! Many tasks calling through clones on a multi-thread runtime: every outcome counted once, and a
//! half-open circuit lets exactly its permitted trials through.

use std::{
    convert::Infallible,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::sync::{Semaphore, mpsc};
use tonic::Code;
use tower::{Layer, Service, ServiceExt};

use super::{config, trailers_only};
use crate::breaker::{BreakerConfig, CircuitBreakerLayer, GrpcClassifier, State};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_callers_through_clones_are_each_counted_once() {
    let layer = CircuitBreakerLayer::new(
        "payment",
        BreakerConfig {
            window_size: 10_000,
            minimum_calls: 10_000,
            ..config()
        },
        GrpcClassifier,
    )
    .unwrap();
    let inner = tower::service_fn(|request: http::Request<()>| async move {
        let code = if request.headers().contains_key("x-fail") {
            Code::Unavailable
        } else {
            Code::Ok
        };
        Ok::<_, Infallible>(trailers_only(code))
    });
    let svc = layer.layer(inner);
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let mut svc = svc.clone();
            tokio::spawn(async move {
                for i in 0..256 {
                    let mut request = http::Request::new(());
                    if i % 4 == 0 {
                        request
                            .headers_mut()
                            .insert("x-fail", http::HeaderValue::from_static("1"));
                    }
                    svc.ready().await.unwrap().call(request).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let metrics = layer.handle().metrics();
    assert_eq!(metrics.state, State::Closed);
    assert_eq!((metrics.buffered_calls, metrics.failed_calls), (2_048, 512));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_half_open_trials_admit_exactly_the_permitted_number() {
    const CALLERS: usize = 32;
    let layer = CircuitBreakerLayer::new(
        "payment",
        BreakerConfig {
            open_wait: Duration::from_millis(20),
            half_open_calls: 5,
            ..config()
        },
        GrpcClassifier,
    )
    .unwrap();
    let failing = Arc::new(AtomicBool::new(true));
    let reached = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Semaphore::new(0));
    let inner = {
        let (failing, reached, gate) = (failing.clone(), reached.clone(), gate.clone());
        tower::service_fn(move |_: http::Request<()>| {
            let failing = failing.load(Ordering::SeqCst);
            if !failing {
                reached.fetch_add(1, Ordering::SeqCst);
            }
            let gate = gate.clone();
            async move {
                if failing {
                    return Ok::<_, Infallible>(trailers_only(Code::Unavailable));
                }
                let _open = gate.acquire().await;
                Ok(trailers_only(Code::Ok))
            }
        })
    };
    let mut svc = layer.layer(inner);
    while layer.handle().state() == State::Closed {
        svc.ready().await.unwrap().call(http::Request::new(())).await.unwrap();
    }
    failing.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(30)).await;

    let (called, mut all_called) = mpsc::unbounded_channel();
    let tasks: Vec<_> = (0..CALLERS)
        .map(|_| {
            let (mut svc, called) = (svc.clone(), called.clone());
            tokio::spawn(async move {
                let pending = svc.ready().await.unwrap().call(http::Request::new(()));
                let _ = called.send(());
                pending.await.map(|_: http::Response<_>| ())
            })
        })
        .collect();
    for _ in 0..CALLERS {
        all_called.recv().await.unwrap();
    }
    assert_eq!(
        reached.load(Ordering::SeqCst),
        5,
        "exactly the permitted trials reached payment"
    );
    assert_eq!(layer.handle().state(), State::HalfOpen);
    gate.add_permits(CALLERS);

    let mut admitted = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => admitted += 1,
            Err(error) => assert_eq!(error.downcast::<tonic::Status>().unwrap().code(), Code::Unavailable),
        }
    }
    assert_eq!(admitted, 5);
    let handle = layer.handle();
    assert_eq!(handle.state(), State::Closed);
    assert_eq!(handle.metrics().not_permitted_calls, (CALLERS - 5) as u64);
}
