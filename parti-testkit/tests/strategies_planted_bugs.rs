//! The contract checker catches deliberately broken strategies.

// Test code: unwrap, expect and panic are how it asserts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use parti_core::strategy::validate_input;
use parti_core::{AssignmentInput, AssignmentStrategy, Placement, StrategyError};
use parti_strategies::{RoundRobin, Sticky};
use parti_testkit::strategy_contract::{Balance, Contract, FixedPoint, Movement, check_strategy};
use std::sync::atomic::{AtomicU32, Ordering};

fn quick(contract: Contract) -> Contract {
    Contract {
        cases: 16,
        ..contract
    }
}

fn violation<S: AssignmentStrategy>(strategy: &S, contract: Contract) -> &'static str {
    match check_strategy(strategy, &quick(contract)) {
        Ok(()) => panic!("{strategy:?} passed the contract"),
        Err(v) => {
            eprintln!("{v}");
            v.check
        }
    }
}

/// Deals partitions by input position: depends on input order.
#[derive(Debug)]
struct ByPosition;

impl AssignmentStrategy for ByPosition {
    fn name(&self) -> &str {
        "by-position"
    }
    fn assign(&self, input: &AssignmentInput<'_>) -> Result<Placement, StrategyError> {
        validate_input(input)?;
        let w = input.workers.len() as u32;
        Ok(Placement {
            owners: (0..input.partitions.len() as u32).map(|i| i % w).collect(),
        })
    }
}

/// Sticky, but the last partition is dropped.
#[derive(Debug)]
struct DropsOne;

impl AssignmentStrategy for DropsOne {
    fn name(&self) -> &str {
        "drops-one"
    }
    fn assign(&self, input: &AssignmentInput<'_>) -> Result<Placement, StrategyError> {
        let mut p = Sticky::default().assign(input)?;
        p.owners.pop();
        Ok(p)
    }
}

/// Sticky, but sometimes names a worker that does not exist.
#[derive(Debug)]
struct OutOfRange;

impl AssignmentStrategy for OutOfRange {
    fn name(&self) -> &str {
        "out-of-range"
    }
    fn assign(&self, input: &AssignmentInput<'_>) -> Result<Placement, StrategyError> {
        let mut p = Sticky::default().assign(input)?;
        if let Some(o) = p.owners.last_mut() {
            *o = input.workers.len() as u32;
        }
        Ok(p)
    }
}

/// Skips validation: accepts duplicate keys.
#[derive(Debug)]
struct NoValidation;

impl AssignmentStrategy for NoValidation {
    fn name(&self) -> &str {
        "no-validation"
    }
    fn assign(&self, input: &AssignmentInput<'_>) -> Result<Placement, StrategyError> {
        if input.workers.is_empty() {
            return Err(StrategyError::NoWorkers);
        }
        Ok(Placement {
            owners: vec![0; input.partitions.len()],
        })
    }
}

/// Panics when there is nothing to place.
#[derive(Debug)]
struct PanicsOnEmpty;

impl AssignmentStrategy for PanicsOnEmpty {
    fn name(&self) -> &str {
        "panics-on-empty"
    }
    fn assign(&self, input: &AssignmentInput<'_>) -> Result<Placement, StrategyError> {
        assert!(!input.partitions.is_empty(), "nothing to place");
        Sticky::default().assign(input)
    }
}

/// Changes its answer from call to call.
#[derive(Debug, Default)]
struct Moody(AtomicU32);

impl AssignmentStrategy for Moody {
    fn name(&self) -> &str {
        "moody"
    }
    fn assign(&self, input: &AssignmentInput<'_>) -> Result<Placement, StrategyError> {
        let mut p = Sticky::default().assign(input)?;
        let calls = self.0.fetch_add(1, Ordering::Relaxed);
        let w = input.workers.len() as u32;
        if let Some(o) = p.owners.first_mut() {
            *o = (*o + calls) % w;
        }
        Ok(p)
    }
}

/// Puts everything on the smallest worker index.
#[derive(Debug)]
struct AllOnOne;

impl AssignmentStrategy for AllOnOne {
    fn name(&self) -> &str {
        "all-on-one"
    }
    fn assign(&self, input: &AssignmentInput<'_>) -> Result<Placement, StrategyError> {
        validate_input(input)?;
        let first = (0..input.workers.len())
            .min_by_key(|&i| &input.workers[i].id)
            .unwrap_or(0) as u32;
        Ok(Placement {
            owners: vec![first; input.partitions.len()],
        })
    }
}

/// Sticky, but it moves one partition whenever it is given a previous
/// assignment.
#[derive(Debug)]
struct Restless;

impl AssignmentStrategy for Restless {
    fn name(&self) -> &str {
        "restless"
    }
    fn assign(&self, input: &AssignmentInput<'_>) -> Result<Placement, StrategyError> {
        let mut p = Sticky::default().assign(input)?;
        if input.has_previous() && input.workers.len() > 1 {
            // The partition with the smallest keys goes to the next worker by ID.
            if let Some(i) = (0..input.partitions.len()).min_by_key(|&i| &input.partitions[i].keys)
            {
                let mut by_id: Vec<usize> = (0..input.workers.len()).collect();
                by_id.sort_by_key(|&w| &input.workers[w].id);
                let pos = by_id
                    .iter()
                    .position(|&w| w as u32 == p.owners[i])
                    .unwrap_or(0);
                p.owners[i] = by_id[(pos + 1) % by_id.len()] as u32;
            }
        }
        Ok(p)
    }
}

#[test]
fn catches_input_order_dependence() {
    assert_eq!(
        violation(&ByPosition, Contract::default()),
        "order independence"
    );
}

#[test]
fn catches_a_dropped_partition() {
    assert_eq!(violation(&DropsOne, Contract::default()), "completeness");
}

#[test]
fn catches_an_owner_out_of_range() {
    assert_eq!(violation(&OutOfRange, Contract::default()), "completeness");
}

#[test]
fn catches_missing_validation() {
    assert_eq!(
        violation(&NoValidation, Contract::default()),
        "input validation"
    );
}

#[test]
fn catches_a_panic() {
    assert_eq!(violation(&PanicsOnEmpty, Contract::default()), "no panic");
}

#[test]
fn catches_nondeterminism() {
    assert_eq!(
        violation(&Moody::default(), Contract::default()),
        "determinism"
    );
}

#[test]
fn catches_imbalance() {
    let contract = Contract {
        balance: Balance::Weighted { epsilon: 0.05 },
        ..Contract::default()
    };
    assert_eq!(violation(&AllOnOne, contract), "balance");
}

#[test]
fn catches_excess_movement() {
    let contract = Contract {
        movement: Movement::Consistent,
        ..Contract::default()
    };
    assert_eq!(violation(&RoundRobin, contract), "movement");
    let contract = Contract {
        movement: Movement::Bounded {
            factor: 1.5,
            slack: 2.0,
            fine_grained: 0.05,
        },
        ..Contract::default()
    };
    assert_eq!(violation(&RoundRobin, contract), "movement");
}

#[test]
fn catches_a_strategy_that_is_not_a_fixed_point() {
    let contract = Contract {
        fixed_point: FixedPoint::Always,
        ..Contract::default()
    };
    assert_eq!(violation(&Restless, contract), "fixed point");
}

#[test]
fn a_failure_names_a_reproducible_case() {
    let v = check_strategy(&ByPosition, &quick(Contract::default())).unwrap_err();
    assert!(v.case.starts_with("CaseSpec {"), "{v}");
    assert!(v.to_string().contains("order independence violated"), "{v}");
}
