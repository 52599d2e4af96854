//! The fixed edge cases every strategy must survive without panicking.

use super::checker::Checker;
use super::measures::*;
use super::*;
use parti_core::{
    AssignmentInput, AssignmentStrategy, Partition, StrategyError, WorkerId, WorkerSpec,
};

fn worker(name: &str, capacity: u32) -> WorkerSpec {
    WorkerSpec {
        id: WorkerId::from_name(name),
        capacity,
    }
}

fn parts(n: usize, weight: impl Fn(usize) -> u64) -> Vec<Partition> {
    (0..n)
        .map(|i| Partition::new(["edge".to_string(), i.to_string()]).with_weight(weight(i)))
        .collect()
}

/// Checks the edge cases listed in the module docs.
pub fn check_edge_cases<S: AssignmentStrategy + ?Sized>(
    strategy: &S,
    contract: &Contract,
) -> Result<(), ContractViolation> {
    let three: Vec<WorkerSpec> = (0..3).map(|i| worker(&format!("w-{i}"), 1)).collect();
    let ten = parts(10, |_| 1);
    let expect_err =
        |name: &str, input: &AssignmentInput<'_>, want: &dyn Fn(&StrategyError) -> bool| {
            let checker = Checker {
                strategy,
                contract,
                case: name.to_string(),
            };
            match call(strategy, input) {
                Err(panic) => Err(checker.fail("no panic", panic)),
                Ok(Err(e)) if want(&e) => Ok(()),
                Ok(other) => Err(checker.fail("input validation", format!("got {other:?}"))),
            }
        };
    expect_err(
        "no workers",
        &AssignmentInput {
            workers: &[],
            partitions: &ten,
            previous: &[],
        },
        &|e| matches!(e, StrategyError::NoWorkers),
    )?;
    expect_err(
        "no workers, no partitions",
        &AssignmentInput {
            workers: &[],
            partitions: &[],
            previous: &[],
        },
        &|e| matches!(e, StrategyError::NoWorkers),
    )?;
    let mut dup = ten.clone();
    dup.push(ten[3].clone().with_weight(7));
    expect_err(
        "duplicate partition keys",
        &AssignmentInput {
            workers: &three,
            partitions: &dup,
            previous: &[],
        },
        &|e| matches!(e, StrategyError::DuplicatePartition(k) if *k == ten[3].keys),
    )?;
    let dup_workers = vec![three[0].clone(), three[1].clone(), three[0].clone()];
    expect_err(
        "duplicate worker IDs",
        &AssignmentInput {
            workers: &dup_workers,
            partitions: &ten,
            previous: &[],
        },
        &|e| matches!(e, StrategyError::DuplicateWorker(_)),
    )?;
    if contract.validates_previous {
        expect_err(
            "previous of the wrong length",
            &AssignmentInput {
                workers: &three,
                partitions: &ten,
                previous: &[Some(0)],
            },
            &|e| matches!(e, StrategyError::BadPrevious(_)),
        )?;
        let out_of_range = vec![Some(3u32); 10];
        expect_err(
            "previous naming a worker out of range",
            &AssignmentInput {
                workers: &three,
                partitions: &ten,
                previous: &out_of_range,
            },
            &|e| matches!(e, StrategyError::BadPrevious(_)),
        )?;
    }

    let huge = u64::MAX >> 20;
    let one = vec![worker("only", 1)];
    let many: Vec<WorkerSpec> = (0..25).map(|i| worker(&format!("many-{i}"), 1)).collect();
    let odd_caps = vec![worker("zero", 0), worker("max", u32::MAX), worker("one", 1)];
    let cases: Vec<(&str, Vec<WorkerSpec>, Vec<Partition>)> = vec![
        ("no partitions", three.clone(), Vec::new()),
        ("one worker", one.clone(), parts(50, |i| i as u64)),
        ("one worker, one partition", one, parts(1, |_| 5)),
        (
            "more workers than partitions",
            many,
            parts(7, |i| 1 + i as u64),
        ),
        ("all weights zero", three.clone(), parts(40, |_| 0)),
        (
            "some weights zero",
            three.clone(),
            parts(40, |i| if i % 2 == 0 { 0 } else { 10 }),
        ),
        (
            "huge weights",
            three.clone(),
            parts(40, |i| huge - i as u64),
        ),
        (
            "huge and tiny weights",
            three.clone(),
            parts(40, |i| if i < 3 { huge } else { 1 }),
        ),
        (
            "one partition heavier than everything else",
            three.clone(),
            parts(30, |i| if i == 0 { 1000 } else { 1 }),
        ),
        (
            "capacities 0 and u32::MAX",
            odd_caps,
            parts(60, |i| 1 + (i as u64 % 5)),
        ),
    ];
    for (name, workers, partitions) in cases {
        let checker = Checker {
            strategy,
            contract,
            case: name.to_string(),
        };
        let input = AssignmentInput {
            workers: &workers,
            partitions: &partitions,
            previous: &[],
        };
        let placement = checker.assign(&input)?;
        if workers.len() == 1 && placement.owners.iter().any(|&o| o != 0) {
            return Err(checker.fail("completeness", "a single worker does not own everything"));
        }
        // With itself as previous (all owners alive) and with no owner alive.
        let previous: Vec<Option<u32>> = placement.owners.iter().map(|&o| Some(o)).collect();
        checker.assign(&AssignmentInput {
            workers: &workers,
            partitions: &partitions,
            previous: &previous,
        })?;
        let orphans = vec![None; partitions.len()];
        checker.assign(&AssignmentInput {
            workers: &workers,
            partitions: &partitions,
            previous: &orphans,
        })?;
    }
    Ok(())
}
