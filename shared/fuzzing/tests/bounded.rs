//! The fuzz targets on stable Rust, bounded, in CI: seeds (the same files cargo-fuzz starts
//! from, in `fuzz/seeds/<target>/`) mutated by a seeded generator. `TALLY_FUZZ_RUNS` sets the
//! inputs per target (default 20,000); a failure prints the seed and input to replay.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::Path;

fn runs() -> usize {
    std::env::var("TALLY_FUZZ_RUNS").ok().and_then(|r| r.parse().ok()).unwrap_or(20_000)
}

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds").join(target);
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|entry| std::fs::read(entry.ok()?.path()).ok())
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    seeds
}

/// Bytes that make JSON and expressions interesting.
const TOKENS: &[&[u8]] = &[
    b"(",
    b")",
    b"-",
    b"+",
    b"*",
    b"/",
    b"'",
    b"\"",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"\\u0000",
    b"round(",
    b"event.properties.gb",
    b"79228162514264337593543950335",
    b"1e400",
    b"-0.0",
    b"null",
    b"%FF",
    b"?per_page=-1",
    b"&page=99999999999999999999",
    b"\xff",
    b"\0",
];

fn mutate(rng: &mut StdRng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut input = seeds[rng.random_range(0..seeds.len())].clone();
    for _ in 0..rng.random_range(1..6) {
        let at = rng.random_range(0..=input.len());
        match rng.random_range(0..6) {
            0 if !input.is_empty() => {
                let i = rng.random_range(0..input.len());
                input[i] = rng.random();
            }
            1 => {
                let token = TOKENS[rng.random_range(0..TOKENS.len())];
                input.splice(at..at, token.iter().copied());
            }
            2 if !input.is_empty() => {
                // Repeat a slice many times: deep nesting, long sums, huge ids.
                let start = rng.random_range(0..input.len());
                let end = (start + rng.random_range(1..8)).min(input.len());
                let slice = input[start..end].to_vec();
                let times = rng.random_range(2..3000);
                let repeated: Vec<u8> = slice.iter().copied().cycle().take(slice.len() * times).collect();
                input.splice(start..start, repeated);
            }
            3 => {
                let other = &seeds[rng.random_range(0..seeds.len())];
                let cut = rng.random_range(0..=other.len());
                input.splice(at..at, other[..cut].iter().copied());
            }
            4 if !input.is_empty() => {
                let end = rng.random_range(at..=input.len());
                input.drain(at..end);
            }
            _ => input.insert(at, rng.random()),
        }
    }
    input
}

fn run(target: &str, runs: usize, body: impl Fn(&[u8])) {
    let seeds = seeds(target);
    for seed in &seeds {
        body(seed);
    }
    let mut rng = StdRng::seed_from_u64(0x7a11);
    for run in 0..runs {
        let input = mutate(&mut rng, &seeds);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(&input)));
        assert!(outcome.is_ok(), "{target}: input {run} panicked: {:?}", String::from_utf8_lossy(&input));
    }
}

#[test]
fn expression() {
    run("expression", runs(), tally_fuzzing::expression);
}

#[test]
fn event_batch() {
    run("event_batch", runs(), tally_fuzzing::event_batch);
}

#[test]
fn catalog() {
    run("catalog", runs(), tally_fuzzing::catalog);
}

#[test]
fn api_read() {
    let api = tally_fuzzing::Api::new();
    run("api_read", runs() / 4, |data| api.read(data));
}
