//! Hostile directory names, generated deterministically (a fixed seed, a small xorshift generator: the same
//! names on every run and machine): shell syntax (quotes, `$()`, backticks, `;`, `&&`, pipes, globs),
//! control characters (newline, tab, carriage return, escape), bytes that are not UTF-8, Slurm's filename
//! patterns (`%j`, `%x`, `%%`), a leading `-` (an option to a careless tool), Unicode direction overrides,
//! and lengths up to the 255-byte limit of a name. Every name is a legal directory name that the scanner
//! takes (no `/`, no NUL, not hidden). A job that runs a name instead of receiving it creates a file
//! called `pwned`.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

/// Pieces names are made of; each is hostile on its own somewhere.
const PIECES: &[&[u8]] = &[
    b"'",
    b"\"",
    b"$(touch pwned)",
    b"`touch pwned`",
    b";touch pwned;",
    b"&& touch pwned",
    b"| touch pwned",
    b"$((1+1))",
    b"${IFS}",
    b"$HOME",
    b"\\",
    b"\\'",
    b"*",
    b"?",
    b"[a-z]",
    b"{a,b}",
    b"~",
    b"!",
    b"#",
    b" ",
    b"  ",
    b"\n",
    b"\t",
    b"\r",
    b"\x1b[31m",
    b"\x7f",
    b"%j",
    b"%x",
    b"%%",
    b"%N",
    b"%A",
    b"=",
    b",",
    b":",
    b"<",
    b">",
    b">&2",
    b"\xe9",
    b"\xff\xfe",
    b"\xc3\x28",
    b"\xe2\x80\xae",
    "é".as_bytes(),
    "日本".as_bytes(),
    "🙂".as_bytes(),
    b"a",
    b"run",
    b"-",
    b"--help",
    b"_READY",
];

/// xorshift64*: small, fixed, good enough to mix pieces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// True for a name the scanner takes as a directory of its own.
fn acceptable(name: &[u8]) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.contains(&b'/')
        && !name.contains(&0)
        && !name.starts_with(b".")
}

/// `n` distinct hostile names, the same for the same `seed`. The first ones are fixed: each piece alone
/// after a word, a name of exactly 255 bytes, names starting with `-`; the rest mix pieces at random.
pub fn names(n: usize, seed: u64) -> Vec<OsString> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut seen = BTreeSet::new();
    let mut push = |v: Vec<u8>, out: &mut Vec<Vec<u8>>| {
        if acceptable(&v) && seen.insert(v.clone()) {
            out.push(v);
        }
    };
    let mut longest = b"x$(touch pwned)".to_vec();
    longest.resize(255, b'y');
    push(longest, &mut out);
    push(b"-rf".to_vec(), &mut out);
    push(b"--output=pwned".to_vec(), &mut out);
    for p in PIECES {
        push([b"d-".as_slice(), p].concat(), &mut out);
    }
    let mut rng = Rng(seed | 1);
    while out.len() < n {
        let mut v = Vec::new();
        for _ in 0..1 + rng.below(6) {
            v.extend_from_slice(PIECES[rng.below(PIECES.len())]);
        }
        if rng.below(8) == 0 {
            // Long ones too, up to the limit.
            let fill = rng.below(256);
            v.resize(fill.max(v.len()), b'z');
        }
        v.truncate(255);
        push(v, &mut out);
    }
    out.truncate(n);
    out.into_iter().map(OsString::from_vec).collect()
}

#[test]
fn the_generator_is_deterministic_and_gives_legal_distinct_names() {
    let a = names(1_080, 9);
    assert_eq!(a, names(1_080, 9));
    assert_eq!(a.len(), 1_080);
    let distinct: BTreeSet<_> = a.iter().collect();
    assert_eq!(distinct.len(), a.len());
    assert!(a.iter().all(|n| acceptable(n.as_encoded_bytes())));
    assert!(a.iter().any(|n| n.len() == 255));
    assert!(a.iter().any(|n| n.as_encoded_bytes().starts_with(b"-")));
    assert!(
        a.iter().any(|n| n.to_str().is_none()),
        "no name that is not UTF-8"
    );
    assert!(a.iter().any(|n| n.as_encoded_bytes().contains(&b'\n')));
}
