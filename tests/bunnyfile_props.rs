//! Property: no input makes the parser panic or hang, and every diagnostic
//! points at a line that exists in the input.

use bunny::bunnyfile::{self, BunnyFileError};
use proptest::prelude::*;

const VALID: &[&str] = &[
    include_str!("fixtures/bunnyfiles/go-bunny/redis-rumprun.bunnyfile"),
    include_str!("fixtures/bunnyfiles/go-bunny/chttp-unikraft.bunnyfile"),
    include_str!("fixtures/bunnyfiles/go-bunny/nginx-unikraft.bunnyfile"),
    include_str!("fixtures/bunnyfiles/go-bunny/rumprun-app.bunnyfile"),
    include_str!("fixtures/bunnyfiles/valid/include-mappings.bunnyfile"),
];

/// Pieces that tend to reach deep into the parser and validator.
const SPLICES: &[&str] = &[
    ":",
    "- ",
    "[",
    "]",
    "{",
    "}",
    "&a ",
    "*a",
    "!!str ",
    "!x ",
    "'",
    "\"",
    "\n",
    "\t",
    "  ",
    "---\n",
    "#",
    "?",
    "|",
    ">",
    "\u{feff}",
    "é",
    "null",
    "~",
    "<<: ",
    "raw",
    "block",
    "initrd",
    "firecracker",
    "local",
    "scratch",
    "../",
    "=",
    "FROM x\n",
];

/// Checks the contract on one input and returns nothing; panics fail the case.
fn check(bytes: &[u8]) {
    let lines = bytes.iter().filter(|&&b| b == b'\n').count() + 1;
    match bunnyfile::parse_bytes("prop", bytes) {
        Ok(parsed) => {
            for w in &parsed.warnings {
                assert!(
                    w.pos.line >= 1 && w.pos.line <= lines,
                    "{w} beyond {lines} lines"
                );
            }
        }
        Err(BunnyFileError::Invalid(diags)) => {
            assert!(!diags.is_empty());
            for d in &diags {
                assert!(
                    d.pos.line >= 1 && d.pos.line <= lines && d.pos.col >= 1,
                    "{d} beyond {lines} lines"
                );
            }
        }
        Err(other) => panic!("unexpected error kind: {other}"),
    }
}

#[derive(Debug, Clone)]
enum Edit {
    Delete(usize, usize),
    Insert(usize, usize),
    Duplicate(usize, usize),
}

fn mutate(base: &str, edits: &[Edit]) -> Vec<u8> {
    let mut text: Vec<u8> = base.as_bytes().to_vec();
    for edit in edits {
        let len = text.len().max(1);
        match *edit {
            Edit::Delete(at, n) => {
                let at = at % len;
                let end = (at + n % 16).min(text.len());
                if at < end {
                    text.drain(at..end);
                }
            }
            Edit::Insert(at, which) => {
                let at = (at % len).min(text.len());
                let piece = SPLICES[which % SPLICES.len()].as_bytes();
                text.splice(at..at, piece.iter().copied());
            }
            Edit::Duplicate(at, n) => {
                let at = at % len;
                let end = (at + n % 64).min(text.len());
                if at < end {
                    let chunk: Vec<u8> = text[at..end].to_vec();
                    text.splice(end..end, chunk);
                }
            }
        }
    }
    text
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), any::<usize>()).prop_map(|(a, n)| Edit::Delete(a, n)),
        (any::<usize>(), any::<usize>()).prop_map(|(a, w)| Edit::Insert(a, w)),
        (any::<usize>(), any::<usize>()).prop_map(|(a, n)| Edit::Duplicate(a, n)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        check(&bytes);
    }

    #[test]
    fn random_text_never_panics(text in "[ -~\n\t]{0,400}") {
        check(text.as_bytes());
    }

    #[test]
    fn mutated_valid_files_never_panic(
        which in 0..VALID.len(),
        edits in proptest::collection::vec(edit(), 1..8),
    ) {
        check(&mutate(VALID[which], &edits));
    }
}

#[test]
fn the_unmutated_bases_are_valid() {
    for (i, text) in VALID.iter().enumerate() {
        assert!(bunnyfile::parse("base", text).is_ok(), "base {i}");
    }
}

#[test]
fn hostile_inputs_end_in_clear_errors() {
    let cap = bunnyfile::MAX_FILE_BYTES;
    let cases: Vec<(String, &str)> = vec![
        ("- x\n".repeat(cap / 4 - 8), "more than 100000 YAML nodes"),
        (format!("a: {}\n", "x".repeat(cap - 8)), "unknown key `a`"),
        (
            (0..80).map(|i| format!("{}a:\n", " ".repeat(i))).collect(),
            "nesting deeper than 64",
        ),
        ("{".repeat(cap - 1), "nesting deeper than 64"),
        ("&a [".repeat(1000), "nesting deeper than 64"),
        ("#".repeat(cap + 1), "may be at most"),
    ];
    for (text, want) in cases {
        let start = std::time::Instant::now();
        let err = bunnyfile::parse("hostile", &text).unwrap_err();
        assert!(err.to_string().contains(want), "{want}: {err}");
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "{want}: took {:?}",
            start.elapsed()
        );
    }
}
