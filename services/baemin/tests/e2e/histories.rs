//! Histories for the randomized checker (`checker.rs`): what clients and faults do, generated from a
//! seed. Pure: no I/O, so a seed always gives the same history.

use std::fmt;

/// A service the checker kills and restarts (payment is the payment faults').
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Victim {
    Call,
    Rider,
    Report,
}

/// One step of a history. Calls are named by slot: the n-th `Place` of the history creates slot n,
/// and later steps act on the call id its PlaceCall got (a step on a slot that has none is skipped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// PlaceCall of slot `slot` with its own idempotency key (a retry sends the same key and body).
    Place {
        slot: usize,
    },
    /// `copies` PlaceCalls of slot `slot` with its key at once (a client retrying before an answer).
    PlaceConcurrently {
        slot: usize,
        copies: u8,
    },
    /// AcceptCall by each of `riders` at once (a race).
    Accept {
        slot: usize,
        riders: Vec<u8>,
    },
    /// As rider `r-<rider>`, or (`None`) as the rider who took the call.
    PickUp {
        slot: usize,
        rider: Option<u8>,
    },
    Complete {
        slot: usize,
        rider: Option<u8>,
    },
    Cancel {
        slot: usize,
    },
    /// A pick-up and a cancellation sent at once: the race payment decides.
    PickUpWhileCancelling {
        slot: usize,
        rider: Option<u8>,
    },
    /// Payment SIGKILLed, or started again.
    PaymentDown,
    PaymentUp,
    /// Payment answering slowly (beyond the breaker's slow-call threshold, within the deadline), or at
    /// full speed again.
    PaymentSlow,
    PaymentFast,
    /// A service SIGKILLed, or started again.
    Kill(Victim),
    Restart(Victim),
    NatsDown,
    NatsUp,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Place { slot } => write!(f, "place #{slot}"),
            Self::PlaceConcurrently { slot, copies } => write!(f, "place #{slot} {copies} times at once"),
            Self::Accept { slot, riders } => write!(f, "accept #{slot} by {riders:?} at once"),
            Self::PickUp { slot, rider } => write!(f, "pick up #{slot} as {}", who(*rider)),
            Self::Complete { slot, rider } => write!(f, "complete #{slot} as {}", who(*rider)),
            Self::Cancel { slot } => write!(f, "cancel #{slot}"),
            Self::PickUpWhileCancelling { slot, rider } => {
                write!(f, "pick up #{slot} as {} while cancelling it", who(*rider))
            }
            Self::PaymentDown => f.write_str("payment killed"),
            Self::PaymentUp => f.write_str("payment started"),
            Self::PaymentSlow => f.write_str("payment slow"),
            Self::PaymentFast => f.write_str("payment fast"),
            Self::Kill(v) => write!(f, "{v:?} killed"),
            Self::Restart(v) => write!(f, "{v:?} started"),
            Self::NatsDown => f.write_str("NATS stopped"),
            Self::NatsUp => f.write_str("NATS started"),
        }
    }
}

fn who(rider: Option<u8>) -> String {
    rider.map_or_else(|| "its rider".to_owned(), |r| format!("r-{r}"))
}

/// SplitMix64: a small, well-mixed generator, enough to draw histories from a seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// The history of `len` steps drawn from `seed`. Most steps move a recent call on through its lifecycle
/// (accept, pick up, complete; a cancellation or a pick-up racing one at any point; retries); some start a
/// fault, whose end comes a few steps later (faults overlap; one still on at the end is ended by the
/// checker before it checks).
pub fn generate(seed: u64, len: usize) -> Vec<Op> {
    let mut rng = Rng::new(seed);
    let mut ops = Vec::with_capacity(len);
    // Per slot, the next lifecycle step: 0 accept, 1 pick up, 2 complete, 3 done (retries).
    let mut stages: Vec<u8> = Vec::new();
    let mut ends: Vec<(usize, Op)> = Vec::new();
    let mut on = Faults::default();
    while ops.len() < len {
        if let Some(i) = ends.iter().position(|(due, _)| *due <= ops.len()) {
            let (_, end) = ends.remove(i);
            on.end(&end);
            ops.push(end);
            continue;
        }
        let roll = rng.below(100);
        let op = match roll {
            0..=16 => {
                stages.push(0);
                Op::Place { slot: stages.len() - 1 }
            }
            17..=19 => {
                stages.push(0);
                Op::PlaceConcurrently {
                    slot: stages.len() - 1,
                    copies: 2 + rng.below(3) as u8,
                }
            }
            // A retry of a PlaceCall with its key (after a lost answer).
            20..=23 if !stages.is_empty() => Op::Place {
                slot: rng.below(stages.len()),
            },
            24..=87 if !stages.is_empty() => {
                let slot = recent(&mut rng, stages.len());
                let rider = (rng.chance(15)).then(|| rng.below(3) as u8);
                match rng.below(100) {
                    0..=9 => Op::Cancel { slot },
                    10..=16 => Op::PickUpWhileCancelling { slot, rider },
                    _ => {
                        let stage = &mut stages[slot];
                        let op = match *stage {
                            0 => Op::Accept {
                                slot,
                                riders: (0..1 + rng.below(3)).map(|_| rng.below(3) as u8).collect(),
                            },
                            1 => Op::PickUp { slot, rider },
                            _ => Op::Complete { slot, rider },
                        };
                        *stage = (*stage + 1).min(3);
                        op
                    }
                }
            }
            88..=99 => {
                let (start, end) = match rng.below(5) {
                    0 => (Op::PaymentDown, Op::PaymentUp),
                    1 => (Op::PaymentSlow, Op::PaymentFast),
                    2 => (Op::NatsDown, Op::NatsUp),
                    n => {
                        let victim = [Victim::Call, Victim::Rider, Victim::Report][(n - 3 + rng.below(2)) % 3];
                        (Op::Kill(victim), Op::Restart(victim))
                    }
                };
                if on.is_on(&start) {
                    continue;
                }
                on.start(&start);
                ends.push((ops.len() + 2 + rng.below(8), end));
                start
            }
            _ => continue,
        };
        ops.push(op);
    }
    ops
}

/// Which faults are on while a history is generated (one of each kind at a time).
#[derive(Default)]
struct Faults {
    payment_down: bool,
    payment_slow: bool,
    nats_down: bool,
    killed: Vec<Victim>,
}

impl Faults {
    fn is_on(&self, start: &Op) -> bool {
        match start {
            Op::PaymentDown => self.payment_down,
            Op::PaymentSlow => self.payment_slow,
            Op::NatsDown => self.nats_down,
            Op::Kill(v) => self.killed.contains(v),
            _ => false,
        }
    }

    fn start(&mut self, start: &Op) {
        match start {
            Op::PaymentDown => self.payment_down = true,
            Op::PaymentSlow => self.payment_slow = true,
            Op::NatsDown => self.nats_down = true,
            Op::Kill(v) => self.killed.push(*v),
            _ => {}
        }
    }

    fn end(&mut self, end: &Op) {
        match end {
            Op::PaymentUp => self.payment_down = false,
            Op::PaymentFast => self.payment_slow = false,
            Op::NatsUp => self.nats_down = false,
            Op::Restart(v) => self.killed.retain(|k| k != v),
            _ => {}
        }
    }
}

/// A slot, most often one of the last few (so a call goes through its lifecycle while it is fresh).
fn recent(rng: &mut Rng, slots: usize) -> usize {
    if rng.chance(75) {
        slots - 1 - rng.below(slots.min(4))
    } else {
        rng.below(slots)
    }
}

/// Candidates for a smaller failing history: `ops` with one chunk of `size` steps left out, for every
/// chunk (delta debugging's complements).
pub fn without_chunks(ops: &[Op], size: usize) -> Vec<Vec<Op>> {
    (0..ops.len())
        .step_by(size.max(1))
        .map(|start| {
            let mut smaller = ops[..start].to_vec();
            smaller.extend_from_slice(&ops[(start + size).min(ops.len())..]);
            smaller
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_always_gives_the_same_history_and_another_seed_another() {
        assert_eq!(generate(7, 80), generate(7, 80));
        assert_ne!(generate(7, 80), generate(8, 80));
        assert_eq!(generate(7, 80).len(), 80);
    }

    #[test]
    fn histories_exercise_every_kind_of_step() {
        let ops: Vec<Op> = (0..20).flat_map(|seed| generate(seed, 80)).collect();
        let has = |f: fn(&Op) -> bool| ops.iter().any(f);
        assert!(has(|o| matches!(o, Op::Place { .. })));
        assert!(has(|o| matches!(o, Op::PlaceConcurrently { .. })));
        assert!(has(|o| matches!(o, Op::Accept { riders, .. } if riders.len() > 1)));
        assert!(has(|o| matches!(o, Op::PickUp { .. })));
        assert!(has(|o| matches!(o, Op::Complete { .. })));
        assert!(has(|o| matches!(o, Op::Cancel { .. })));
        assert!(has(|o| matches!(o, Op::PickUpWhileCancelling { .. })));
        assert!(has(|o| matches!(o, Op::PaymentDown)));
        assert!(has(|o| matches!(o, Op::PaymentSlow)));
        assert!(has(|o| matches!(o, Op::PaymentUp)));
        assert!(has(|o| matches!(o, Op::Kill(_))));
        assert!(has(|o| matches!(o, Op::NatsDown)));
    }

    #[test]
    fn every_fault_ends_a_few_steps_after_it_starts() {
        for seed in 0..50 {
            let ops = generate(seed, 200);
            for (n, op) in ops.iter().enumerate() {
                let end = match op {
                    Op::PaymentDown => Op::PaymentUp,
                    Op::PaymentSlow => Op::PaymentFast,
                    Op::NatsDown => Op::NatsUp,
                    Op::Kill(v) => Op::Restart(*v),
                    _ => continue,
                };
                if n + 10 < ops.len() {
                    assert!(
                        ops[n + 1..=n + 10].contains(&end),
                        "seed {seed}: {op} at {n} never ends"
                    );
                }
            }
        }
    }

    #[test]
    fn shrinking_leaves_out_each_chunk_once() {
        let ops = generate(1, 10);
        let smaller = without_chunks(&ops, 4);
        assert_eq!(smaller.iter().map(Vec::len).collect::<Vec<_>>(), [6, 6, 8]);
        assert_eq!(smaller[0], ops[4..]);
    }
}
