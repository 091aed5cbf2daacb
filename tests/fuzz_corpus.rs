//! The fuzz targets on the stable toolchain: every committed corpus input
//! under `fuzz/corpus/<target>/`, then a seeded run of mutations of them
//! (bit flips, byte inserts and deletes, splices between inputs, runs of
//! interesting bytes). Coverage-guided fuzzing is `cargo fuzz` (fuzz/,
//! nightly); this keeps every target and every corpus input checked on each
//! test run, where nightly may be missing.
//!
//! `STEPGATE_FUZZ_MUTATIONS` sets the mutations per target (default 3000).
//! A panicking input is written to `target/fuzz-failures/<target>/` and
//! printed in hex, ready to become a unit test.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

const DEFAULT_MUTATIONS: usize = 3000;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Bytes that parsers of paths, JSON, forms and YAML treat specially.
const INTERESTING: [&[u8]; 14] = [
    b"%", b"%2f", b"%25", b"..", b"/", b";", b"\\", b"\x00", b"\xff", b"{", b"\"", b"&", b"=", b"\n",
];

fn mutate(input: &[u8], corpus: &[Vec<u8>], rng: &mut Rng) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(out.len() + 1);
        match rng.below(6) {
            0 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] ^= 1 << rng.below(8);
            }
            1 => out.insert(at, rng.next() as u8),
            2 if at < out.len() => {
                let n = 1 + rng.below(out.len() - at);
                out.drain(at..at + n.min(8));
            }
            3 => {
                let piece = INTERESTING[rng.below(INTERESTING.len())];
                out.splice(at..at, piece.iter().copied());
            }
            4 if !corpus.is_empty() => {
                let other = &corpus[rng.below(corpus.len())];
                let from = rng.below(other.len() + 1);
                out.truncate(at);
                out.extend_from_slice(&other[from..]);
            }
            _ if !out.is_empty() => {
                // Repeat a slice: deep nesting, long runs.
                let i = rng.below(out.len());
                let piece: Vec<u8> = out[i..(i + 1 + rng.below(4)).min(out.len())].to_vec();
                for _ in 0..rng.below(64) {
                    out.splice(i..i, piece.iter().copied());
                }
            }
            _ => out.push(rng.next() as u8),
        }
    }
    out.truncate(64 << 10);
    out
}

fn corpus_of(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e} (every target has a committed corpus)", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    files.iter().map(|p| std::fs::read(p).expect("corpus file")).collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn every_target_survives_its_corpus_and_mutations() {
    let mutations = std::env::var("STEPGATE_FUZZ_MUTATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_MUTATIONS);
    // The panics are collected and reported below, one line each.
    std::panic::set_hook(Box::new(|_| {}));
    let mut failures = Vec::new();
    let mut runs = 0usize;
    for (name, target) in stepgate::fuzzing::TARGETS {
        let corpus = corpus_of(name);
        assert!(!corpus.is_empty(), "fuzz/corpus/{name} is empty");
        let mut rng = Rng(0x00f0_22ed ^ name.len() as u64);
        let generated = (0..mutations).map(|i| mutate(&corpus[i % corpus.len()], &corpus, &mut rng));
        for input in corpus.iter().cloned().chain(generated) {
            runs += 1;
            if let Err(e) = catch_unwind(AssertUnwindSafe(|| target(&input))) {
                let why = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                    .join("target/fuzz-failures")
                    .join(name);
                let _ = std::fs::create_dir_all(&dir);
                let _ = std::fs::write(dir.join(hex(&input[..input.len().min(32)])), &input);
                failures.push(format!("{name}: {why}\n    input (hex): {}", hex(&input)));
            }
        }
    }
    let _ = std::panic::take_hook();
    println!(
        "fuzz corpus replay: {runs} inputs over {} targets",
        stepgate::fuzzing::TARGETS.len()
    );
    assert!(
        failures.is_empty(),
        "{} failing input(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Every target has its libFuzzer entry point and a corpus directory, so
/// the stable replay above and `cargo fuzz` run the same set.
#[test]
fn every_target_has_a_fuzz_binary() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("fuzz/Cargo.toml");
    for (name, _) in stepgate::fuzzing::TARGETS {
        let src = std::fs::read_to_string(root.join(format!("fuzz_targets/{name}.rs")))
            .unwrap_or_else(|e| panic!("fuzz_targets/{name}.rs: {e}"));
        assert!(src.contains(&format!("stepgate::fuzzing::{name}(data)")), "{name}");
        assert!(
            manifest.contains(&format!("name = \"{name}\"")),
            "{name} not in fuzz/Cargo.toml"
        );
    }
}
